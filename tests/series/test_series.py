"""Weekly series: the plan keeps local time across DST and names unavailable weeks; holding is all or nothing."""
from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingSeries, BookingStatus, Role, Studio, User
from portal.services import audit, availability, bookings, credits, series
from portal.services.errors import DomainError, InvalidInput
from tests.conftest import BOTH
from tests.credits.conftest import assert_ledger_matches_balances
from tests.factories import make_blackout, make_studio, make_user, next_weekday

NY = ZoneInfo("America/New_York")
ENGINE = {"SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 20, "max_overflow": 0, "pool_timeout": 60}}


@pytest.fixture
def setup(app_ctx):
    studio = make_studio(buffer_minutes=0, series_max_weeks=20)
    people = [make_user(f"s{i}@example.com", roles=[(studio, Role.STUDENT)]) for i in range(3)]
    return studio, people


def _dst_anchor(weeks_before: int = 6) -> date:
    """A Tuesday `weeks_before` weeks before the next US clock change that is far enough from today."""
    day = next_weekday(1, after_days=3)
    while True:
        later = day + timedelta(weeks=weeks_before)
        if datetime.combine(day, time(16), NY).utcoffset() != datetime.combine(later, time(16), NY).utcoffset():
            return day
        day += timedelta(weeks=1)


def _plan(studio, first, weeks, package="lesson-60", resource="piano"):
    with tenancy.scoped(studio.id):
        return series.plan_request(studio, package_slug=package, resource_slug=resource,
                                   start_raw=first.isoformat(), weeks_raw=str(weeks), now=utcnow())[1]


def _hold(studio, student, first, weeks, chosen=None, pay_with="checkout"):
    with tenancy.scoped(studio.id):
        return series.hold(studio=db.session.get(Studio, studio.id), student=student, package_slug="lesson-60",
                           resource_slug="piano", start_raw=first.isoformat(), weeks_raw=str(weeks),
                           chosen_raw=chosen, now=utcnow(), pay_with=pay_with)


@BOTH
def test_a_twelve_week_series_across_a_dst_change_keeps_its_local_time(setup):
    studio, (alice, *_) = setup
    first = datetime.combine(_dst_anchor(), time(16), NY)
    planned = _plan(studio, first, 12)
    assert len(planned) == 12 and all(o.free for o in planned)
    assert {o.start.astimezone(NY).time() for o in planned} == {time(16)}
    assert len({o.start.utcoffset() for o in planned}) == 2  # both sides of the change
    assert [o.start.date() for o in planned] == [first.date() + timedelta(weeks=k) for k in range(12)]
    held = _hold(studio, alice, first, 12)
    with tenancy.scoped(studio.id):
        rows = db.session.scalars(select(Booking).where(Booking.series_id == held.id)
                                  .order_by(Booking.start_at)).all()
        assert [b.start_at.astimezone(NY).time() for b in rows] == [time(16)] * 12
        assert all(b.status == BookingStatus.HELD and b.price_minor == 6500 for b in rows)


@BOTH
def test_unavailable_weeks_are_listed_with_their_reason(setup):
    studio, (alice, bob, _) = setup
    first = datetime.combine(next_weekday(2, after_days=3), time(10), NY)
    third = first + timedelta(weeks=2)
    make_blackout(studio, third.astimezone(NY).replace(hour=0), third.astimezone(NY).replace(hour=23))
    with tenancy.scoped(studio.id):
        bookings.hold_slot(studio=db.session.get(Studio, studio.id), student=bob, package_slug="lesson-30",
                           resource_slug="piano", start_raw=(first + timedelta(weeks=4, minutes=30)).isoformat(),
                           now=utcnow())
    planned = _plan(studio, first, 6)
    assert [(o.free, o.reason) for o in planned] == [
        (True, None), (True, None), (False, "blackout"), (True, None), (False, "booked"), (True, None)]
    late = _plan(studio, datetime.combine(first.date(), time(17, 30), NY), 2)  # a 60-minute lesson after closing
    assert [o.reason for o in late] == ["closed", "closed"]
    # By default only the free weeks are held.
    held = _hold(studio, alice, first, 6)
    with tenancy.scoped(studio.id):
        weeks = db.session.scalars(select(Booking.start_at).where(Booking.series_id == held.id)
                                   .order_by(Booking.start_at)).all()
        assert weeks == [planned[k].start for k in (0, 1, 3, 5)]


@BOTH
def test_a_week_can_be_skipped_or_moved_within_its_week(setup):
    studio, (alice, *_) = setup
    first = datetime.combine(next_weekday(2, after_days=3), time(10), NY)
    moved = first + timedelta(weeks=1, days=1, hours=3)  # Thursday 13:00 of the second week
    held = _hold(studio, alice, first, 4, chosen=[first.isoformat(), moved.isoformat(),
                                                  (first + timedelta(weeks=3)).isoformat()])
    with tenancy.scoped(studio.id):
        starts = db.session.scalars(select(Booking.start_at).where(Booking.series_id == held.id)
                                    .order_by(Booking.start_at)).all()
    assert [s.astimezone(NY) for s in starts] == [first, moved, first + timedelta(weeks=3)]
    with pytest.raises(InvalidInput) as twice:
        _hold(studio, alice, first, 4, chosen=[first.isoformat(), (first + timedelta(days=1)).isoformat()])
    assert twice.value.code == "occurrence_duplicate_week"
    with pytest.raises(InvalidInput) as outside:
        _hold(studio, alice, first, 2, chosen=[(first + timedelta(weeks=5)).isoformat()])
    assert outside.value.code == "occurrence_outside_series"


@BOTH
def test_the_series_length_is_capped_by_the_studio(setup):
    studio, (alice, *_) = setup
    first = datetime.combine(next_weekday(2), time(10), NY)
    for weeks in ("0", "21", "x", ""):
        with pytest.raises(InvalidInput) as refused:
            _plan(studio, first, weeks)
        assert refused.value.code == "weeks_out_of_range"
    assert len(_plan(studio, first, 20)) == 20


@BOTH
def test_a_week_taken_after_planning_holds_nothing_and_names_the_week(setup):
    studio, (alice, bob, _) = setup
    first = datetime.combine(next_weekday(3, after_days=3), time(11), NY)
    planned = _plan(studio, first, 8)
    assert all(o.free for o in planned)
    with tenancy.scoped(studio.id):
        bookings.hold_slot(studio=db.session.get(Studio, studio.id), student=bob, package_slug="lesson-60",
                           resource_slug="piano", start_raw=planned[4].start.isoformat(), now=utcnow())
    with pytest.raises(series.SeriesWeekTaken) as lost:
        _hold(studio, alice, first, 8, chosen=[o.start.isoformat() for o in planned])
    assert lost.value.status == 409 and lost.value.week == 5 and "week 5" in lost.value.message
    with tenancy.scoped(studio.id):
        assert db.session.scalar(select(func.count(Booking.id)).where(Booking.student_id == alice.id)) == 0
        assert db.session.scalar(select(func.count(BookingSeries.id))) == 0


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
@pytest.mark.parametrize("app_overrides", [ENGINE])
def test_two_series_racing_for_one_week_leave_one_whole_series(app, setup, backend):
    studio, people = setup
    first = datetime.combine(next_weekday(4, after_days=3), time(15), NY)
    # Both series share week 3 only: the second starts two weeks later.
    plans = [(people[0].id, first), (people[1].id, first + timedelta(weeks=2))]
    studio_id = studio.id
    db.session.commit()
    barrier, outcomes, lock = threading.Barrier(2), [], threading.Lock()

    def attempt(student_id, start):
        with app.app_context(), tenancy.scoped(studio_id):
            row, student = db.session.get(Studio, studio_id), db.session.get(User, student_id)
            db.session.commit()
            barrier.wait(timeout=30)
            try:
                weeks = [(start + timedelta(weeks=k)).isoformat() for k in range(3)]  # every week kept
                series.hold(studio=row, student=student, package_slug="lesson-60", resource_slug="piano",
                            start_raw=start.isoformat(), weeks_raw="3", chosen_raw=weeks, now=utcnow())
                result = "held"
            except DomainError as refused:
                result = refused.code
            finally:
                db.session.remove()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=p) for p in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes)[0] == "held" and outcomes.count("held") == 1, outcomes
    assert set(outcomes) - {"held"} <= {"series_week_taken", "slot_unavailable"}
    with tenancy.scoped(studio_id):
        per_student = db.session.execute(select(Booking.student_id, func.count(Booking.id))
                                         .group_by(Booking.student_id)).all()
        assert [count for _, count in per_student] == [3]  # one whole series, nothing of the other
        db.session.commit()


@BOTH
def test_a_series_paid_with_credits_is_confirmed_week_by_week_or_not_at_all(setup):
    studio, (alice, *_) = setup
    first = datetime.combine(next_weekday(2, after_days=3), time(9), NY)
    with tenancy.scoped(studio.id):
        credits.grant(studio=db.session.get(Studio, studio.id), student_id=alice.id, minutes=60, amount=5,
                      valid_days=365, note="term", actor=audit.SYSTEM, now=utcnow())
    with pytest.raises(credits.NoCredit):
        _hold(studio, alice, first, 6, pay_with="credits")
    with tenancy.scoped(studio.id):
        assert db.session.scalar(select(func.count(Booking.id))) == 0
        assert credits.usable(alice.id, 60) == 5
    held = _hold(studio, alice, first, 5, pay_with="credits")
    with tenancy.scoped(studio.id):
        rows = db.session.scalars(select(Booking).where(Booking.series_id == held.id)).all()
        assert len(rows) == 5 and all(b.status == BookingStatus.CONFIRMED and b.policy for b in rows)
        assert credits.usable(alice.id, 60) == 0
    assert_ledger_matches_balances(studio.id)


def test_series_availability_api(client, app_ctx):
    studio = make_studio(buffer_minutes=0)
    first = datetime.combine(_dst_anchor(), time(16), NY)
    answer = client.get("/s/melody-and-meter/api/series-availability",
                        query_string={"package": "lesson-60", "resource": "piano", "start": first.isoformat(),
                                      "weeks": 12})
    assert answer.status_code == 200
    occurrences = answer.get_json()["occurrences"]
    assert len(occurrences) == 12
    assert all(datetime.fromisoformat(o["start"]).astimezone(NY).time() == time(16) for o in occurrences)
    assert {o["free"] for o in occurrences} == {True} and {o["reason"] for o in occurrences} == {None}
    offsets = {datetime.fromisoformat(o["start"]).utcoffset() for o in occurrences}
    assert len(offsets) == 2
    for query, code in (({"weeks": 99}, "weeks_out_of_range"), ({"start": "tomorrow"}, "start_invalid"),
                        ({"package": "nope"}, "package_not_found")):
        bad = client.get("/s/melody-and-meter/api/series-availability", query_string={
            "package": "lesson-60", "resource": "piano", "start": first.isoformat(), "weeks": 4, **query})
        assert bad.status_code == 422 and bad.get_json()["error"] == code, bad.get_json()
    assert client.get("/s/melody-and-meter/api/series-availability?package=lesson-60").status_code == 422
    assert studio.series_max_weeks == 16 and availability is not None


@BOTH
def test_the_calendar_feed_lists_each_week_with_its_own_uid_and_a_cancel_changes_only_that_week(setup):
    from portal.services import calendars, lesson_changes
    from tests.calendar.test_calendars_service import events

    studio, (alice, *_) = setup
    first = datetime.combine(next_weekday(1, after_days=4), time(12), NY)
    with tenancy.scoped(studio.id):
        credits.grant(studio=db.session.get(Studio, studio.id), student_id=alice.id, minutes=60, amount=3,
                      valid_days=365, note="term", actor=audit.SYSTEM, now=utcnow())
    held = _hold(studio, alice, first, 3, pay_with="credits")
    with tenancy.scoped(studio.id):
        weeks = series.weeks_of(held.id)
        listed = events(calendars.student_feed(studio, alice.id, utcnow()))
        assert set(listed) == {calendars.event_uid(b) for b in weeks}
        lesson_changes.cancel(booking=weeks[1], actor=alice, now=utcnow())
        after = events(calendars.student_feed(studio, alice.id, utcnow()))
        assert set(after) == set(listed)
        changed = {uid for uid in after if str(after[uid]["status"]) != str(listed[uid]["status"])
                   or int(after[uid].get("sequence", 0)) != int(listed[uid].get("sequence", 0))}
        assert changed == {calendars.event_uid(weeks[1])}
        assert str(after[calendars.event_uid(weeks[1])]["status"]) == "CANCELLED"


@BOTH
def test_one_week_moves_alone_and_the_rest_of_a_credit_series_gives_its_credits_back(setup):
    from portal.services import lesson_changes

    studio, (alice, *_) = setup
    first = datetime.combine(next_weekday(0, after_days=4), time(13), NY)
    with tenancy.scoped(studio.id):
        credits.grant(studio=db.session.get(Studio, studio.id), student_id=alice.id, minutes=60, amount=4,
                      valid_days=365, note="term", actor=audit.SYSTEM, now=utcnow())
    held = _hold(studio, alice, first, 4, pay_with="credits")
    with tenancy.scoped(studio.id):
        weeks = series.weeks_of(held.id)
        moved_to = first + timedelta(weeks=1, hours=2)
        lesson_changes.reschedule(studio=db.session.get(Studio, studio.id), booking=weeks[1], actor=alice,
                                  resource_slug="drums", start_raw=moved_to.isoformat(), now=utcnow())
        weeks = series.weeks_of(held.id)
        assert [w.start_at for w in weeks] == [first, moved_to, first + timedelta(weeks=2),
                                               first + timedelta(weeks=3)]
        assert weeks[1].resource.slug == "drums" and weeks[1].series_id == held.id
        assert {w.resource.slug for w in (weeks[0], weeks[2], weeks[3])} == {"piano"}
        preview = series.cancel_rest_terms(db.session.get(BookingSeries, held.id), utcnow())
        assert [(w.credit, w.terms.late, w.terms.refund_minor) for w in preview] == [(True, False, 0)] * 4
        series.cancel_rest(series=db.session.get(BookingSeries, held.id), actor=alice, now=utcnow())
        assert credits.usable(alice.id, 60) == 4
        returned = [e for e in credits.history(alice.id) if e.kind.value == "returned"]
        assert sorted(e.booking_id for e in returned) == sorted(w.id for w in weeks)
    assert_ledger_matches_balances(studio.id)
