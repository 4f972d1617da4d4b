"""Holding slots: the service's answers, and the database's no-overlap guarantee under real concurrency."""
from __future__ import annotations

import threading
from datetime import datetime, time, timedelta
from itertools import pairwise

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, Role, Studio, User
from portal.services import bookings
from portal.services.errors import InvalidInput, SlotUnavailable
from tests.conftest import BOTH
from tests.factories import make_studio, make_user, next_weekday


def _start(day, hh_mm: str, tz="America/New_York") -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.combine(day, time.fromisoformat(hh_mm), ZoneInfo(tz))


def _hold(studio, student, package, start, resource="piano", now=None):
    with tenancy.scoped(studio.id):
        return bookings.hold_slot(studio=studio, student=student, package_slug=package, resource_slug=resource,
                                  start_raw=start.isoformat(), now=now or utcnow())


@pytest.fixture
def setup(app_ctx):
    studio = make_studio(buffer_minutes=0)
    students = [make_user(f"s{i}@example.com", roles=[(studio, Role.STUDENT)]) for i in range(3)]
    return studio, students


@BOTH
def test_hold_creates_held_booking_with_price_snapshot_and_expiry(setup):
    studio, (alice, *_) = setup
    day = next_weekday(2)
    now = utcnow()
    booking = _hold(studio, alice, "lesson-60", _start(day, "16:00"), now=now)
    assert booking.status == BookingStatus.HELD
    assert booking.price_minor == 6500 and booking.currency == "usd"
    assert booking.end_at - booking.start_at == timedelta(minutes=60)
    assert booking.hold_expires_at == now + timedelta(minutes=31)  # Stripe's 30-minute minimum plus margin
    assert booking.start_at.astimezone(studio.tz).hour == 16


@BOTH
def test_second_hold_on_same_slot_is_refused(setup):
    studio, (alice, bob, _) = setup
    start = _start(next_weekday(2), "10:00")
    _hold(studio, alice, "lesson-60", start)
    with pytest.raises(SlotUnavailable):
        _hold(studio, bob, "lesson-60", start)


@BOTH
def test_overlap_with_different_durations_is_refused_but_adjacent_is_fine(setup):
    studio, (alice, bob, carol) = setup
    day = next_weekday(2)
    _hold(studio, alice, "lesson-60", _start(day, "10:00"))  # 10:00-11:00
    with pytest.raises(SlotUnavailable):
        _hold(studio, bob, "lesson-30", _start(day, "10:30"))
    with pytest.raises(SlotUnavailable):
        _hold(studio, bob, "lesson-60", _start(day, "09:30"))
    assert _hold(studio, bob, "lesson-30", _start(day, "11:00")).status == BookingStatus.HELD
    assert _hold(studio, carol, "lesson-30", _start(day, "09:30")).status == BookingStatus.HELD


@BOTH
def test_same_time_on_another_resource_is_fine(setup):
    studio, (alice, bob, _) = setup
    start = _start(next_weekday(2), "10:00")
    _hold(studio, alice, "lesson-60", start, resource="piano")
    assert _hold(studio, bob, "lesson-60", start, resource="drums").resource.slug == "drums"


@BOTH
def test_buffer_is_guaranteed_by_the_database(app_ctx):
    studio = make_studio(buffer_minutes=15, slot_interval_minutes=15)
    alice, bob = (make_user(f"{n}@example.com", roles=[(studio, Role.STUDENT)]) for n in ("alice", "bob"))
    day = next_weekday(3)
    _hold(studio, alice, "lesson-60", _start(day, "10:00"))  # occupies 10:00-11:15
    with pytest.raises(SlotUnavailable):
        _hold(studio, bob, "lesson-30", _start(day, "11:00"))
    assert _hold(studio, bob, "lesson-30", _start(day, "11:15")).status == BookingStatus.HELD


@BOTH
def test_expired_hold_frees_the_slot(setup):
    studio, (alice, bob, _) = setup
    start = _start(next_weekday(2), "13:00")
    now = utcnow()
    first = _hold(studio, alice, "lesson-60", start, now=now)
    later = now + timedelta(minutes=32)
    second = _hold(studio, bob, "lesson-60", start, now=later)
    with tenancy.scoped(studio.id):
        assert db.session.get(Booking, first.id).status == BookingStatus.EXPIRED
        assert second.status == BookingStatus.HELD


@BOTH
def test_database_refuses_overlap_even_without_the_service(setup):
    """The guarantee is the database's: a raw insert that bypasses the service still fails."""
    studio, (alice, bob, _) = setup
    first = _hold(studio, alice, "lesson-60", _start(next_weekday(2), "15:00"))
    with tenancy.scoped(studio.id):
        clash = Booking(studio_id=studio.id, student_id=bob.id, package_id=first.package_id,
                        resource_id=first.resource_id, start_at=first.start_at + timedelta(minutes=15),
                        end_at=first.end_at, occupied_until=first.end_at, status=BookingStatus.CONFIRMED,
                        price_minor=1, currency="usd")
        db.session.add(clash)
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
        # Moving an existing booking onto another is refused too (reschedules go through the same guard).
        other = _hold(studio, bob, "lesson-60", _start(next_weekday(2), "17:00"))
        move = (update(Booking.__table__).where(Booking.__table__.c.id == other.id)
                .values(start_at=first.start_at, end_at=first.end_at, occupied_until=first.end_at))
        with pytest.raises(IntegrityError):
            db.session.execute(move)
            db.session.commit()
        db.session.rollback()


@BOTH
def test_bad_input_is_rejected_with_reasons(setup):
    studio, (alice, *_) = setup
    day = next_weekday(2)
    with pytest.raises(InvalidInput) as naive:
        with tenancy.scoped(studio.id):
            bookings.hold_slot(studio=studio, student=alice, package_slug="lesson-60", resource_slug="piano",
                               start_raw=f"{day.isoformat()}T10:00:00", now=utcnow())
    assert naive.value.code == "start_invalid"
    with pytest.raises(InvalidInput) as off_grid:
        _hold(studio, alice, "lesson-60", _start(day, "10:07"))
    assert off_grid.value.code == "start_not_bookable"
    with pytest.raises(InvalidInput):
        _hold(studio, alice, "lesson-60", _start(day, "17:30"))  # would end after closing
    with pytest.raises(InvalidInput):
        _hold(studio, alice, "lesson-60", utcnow().replace(minute=0, second=0, microsecond=0)
              - timedelta(days=1))
    with pytest.raises(InvalidInput) as unknown:  # an unknown choice in a booking form is bad input (422)
        _hold(studio, alice, "no-such-package", _start(day, "10:00"))
    assert unknown.value.code == "package_not_found"


def test_open_holds_per_student_are_capped(setup):
    studio, (alice, *_) = setup
    day = next_weekday(2)
    for hour in range(10, 10 + bookings.MAX_OPEN_HOLDS):
        _hold(studio, alice, "lesson-30", _start(day, f"{hour}:00"))
    with pytest.raises(InvalidInput) as too_many:
        _hold(studio, alice, "lesson-30", _start(day, "15:00"))
    assert too_many.value.code == "too_many_holds"


def _race(app, studio_id, attempts):
    """Run `attempts` (student_id, package, start) at once, each in its own thread, app context and connection."""
    barrier = threading.Barrier(len(attempts))
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(student_id, package, start):
        with app.app_context(), tenancy.scoped(studio_id):
            studio = db.session.get(Studio, studio_id)
            student = db.session.get(User, student_id)
            db.session.commit()  # release the read so every thread starts its write together
            barrier.wait(timeout=30)
            try:
                bookings.hold_slot(studio=studio, student=student, package_slug=package, resource_slug="piano",
                                   start_raw=start.isoformat(), now=utcnow())
                result = "held"
            except SlotUnavailable:
                result = "taken"
            except Exception as error:  # recorded so the assertion shows it
                result = f"error: {error!r}"
            finally:
                db.session.remove()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=a) for a in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def _live_spans(studio_id):
    with tenancy.scoped(studio_id):
        rows = db.session.execute(select(Booking.start_at, Booking.occupied_until).where(
            Booking.status == BookingStatus.HELD).order_by(Booking.start_at)).all()
    return rows


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
@pytest.mark.parametrize("app_overrides", [{"SQLALCHEMY_ENGINE_OPTIONS": {
    "pool_size": 60, "max_overflow": 0, "pool_timeout": 60}}])
def test_fifty_threads_racing_for_one_slot_leave_exactly_one_hold(app, app_ctx, backend):
    studio = make_studio(buffer_minutes=0)
    students = [make_user(f"racer{i}@example.com", roles=[(studio, Role.STUDENT)]) for i in range(50)]
    start = _start(next_weekday(4), "16:00")
    studio_id, attempts = studio.id, [(s.id, "lesson-60", start) for s in students]
    db.session.commit()  # end this thread's transaction: SQLite's writers queue behind it otherwise
    outcomes = _race(app, studio_id, attempts)
    assert sorted(set(outcomes)) == ["held", "taken"], outcomes
    assert outcomes.count("held") == 1
    with tenancy.scoped(studio.id):
        assert db.session.scalar(select(func.count()).select_from(Booking)
                                 .where(Booking.status == BookingStatus.HELD)) == 1
        db.session.commit()


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
@pytest.mark.parametrize("app_overrides", [{"SQLALCHEMY_ENGINE_OPTIONS": {
    "pool_size": 60, "max_overflow": 0, "pool_timeout": 60}}])
def test_mixed_durations_racing_never_overlap(app, app_ctx, backend):
    studio = make_studio(buffer_minutes=0, slot_interval_minutes=15)
    students = [make_user(f"mixer{i}@example.com", roles=[(studio, Role.STUDENT)]) for i in range(40)]
    day = next_weekday(4)
    starts = ["14:00", "14:15", "14:30", "14:45", "15:00", "15:15", "15:30", "15:45"]
    attempts = []
    for i, student in enumerate(students):
        package = "lesson-30" if i % 2 else "lesson-60"
        attempts.append((student.id, package, _start(day, starts[i % len(starts)])))
    studio_id = studio.id
    db.session.commit()
    outcomes = _race(app, studio_id, attempts)
    assert all(o in ("held", "taken") for o in outcomes), outcomes
    spans = _live_spans(studio_id)
    assert len(spans) == outcomes.count("held") >= 2
    for (_, first_until), (second_start, _) in pairwise(spans):
        assert first_until <= second_start, f"overlap: {spans}"
