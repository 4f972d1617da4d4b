"""The availability service reading rules, blackouts and bookings from the database."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, Package, Resource, Role
from portal.services import availability
from tests.conftest import BOTH
from tests.factories import make_blackout, make_studio, make_user, next_weekday


@pytest.fixture
def studio(app_ctx):
    return make_studio(buffer_minutes=15, min_notice_minutes=120, slot_interval_minutes=15, hours=("09:00", "12:00"))


def _local(studio, day, hh_mm):
    return datetime.combine(day, time.fromisoformat(hh_mm), studio.tz)


def _slots(studio, resource="piano", package="lesson-60", day=None, now=None):
    with tenancy.scoped(studio.id):
        offer = availability.find_offer(studio, package, resource)
        return [s.strftime("%H:%M") for s in availability.free_slots_on(
            studio, offer, day, now or utcnow())]


def _book(studio, day, hh_mm, status=BookingStatus.CONFIRMED, hold_expires_at=None, minutes=60):
    student = make_user(f"b{hh_mm.replace(':', '')}{status.value}@example.com", roles=[(studio, Role.STUDENT)])
    with tenancy.scoped(studio.id):
        piano = db.session.scalar(db.select(Resource).where(Resource.slug == "piano"))
        package = db.session.scalar(db.select(Package).where(Package.duration_minutes == minutes))
        start = _local(studio, day, hh_mm)
        db.session.add(Booking(studio_id=studio.id, student_id=student.id, package_id=package.id,
                               resource_id=piano.id, start_at=start, end_at=start + timedelta(minutes=minutes),
                               occupied_until=start + timedelta(minutes=minutes) + studio.buffer, status=status,
                               hold_expires_at=hold_expires_at, price_minor=package.price_minor, currency="usd"))
        db.session.commit()


@BOTH
def test_confirmed_booking_blocks_its_span_plus_buffer_on_both_sides(studio):
    day = next_weekday(2)
    assert _slots(studio, package="lesson-30", day=day)[:2] == ["09:00", "09:15"]
    _book(studio, day, "10:00")  # 10:00-11:00, occupies until 11:15
    # A 30-minute lesson (occupying 45 minutes) fits before 10:00 only if it starts by 09:15, after from 11:15.
    assert _slots(studio, package="lesson-30", day=day) == ["09:00", "09:15", "11:15", "11:30"]
    assert _slots(studio, package="lesson-60", day=day) == []
    assert len(_slots(studio, resource="drums", package="lesson-60", day=day)) == 9  # other resource untouched


@BOTH
def test_live_holds_block_and_expired_holds_do_not(studio):
    day = next_weekday(2)
    now = utcnow()
    _book(studio, day, "09:00", status=BookingStatus.HELD, hold_expires_at=now + timedelta(minutes=20))
    _book(studio, day, "11:00", status=BookingStatus.HELD, hold_expires_at=now - timedelta(minutes=1))
    slots = _slots(studio, package="lesson-30", day=day, now=now)
    assert "09:00" not in slots and "10:15" in slots
    assert "11:00" in slots and "11:30" in slots


@BOTH
def test_blackouts_for_one_resource_or_the_whole_studio(studio):
    day = next_weekday(3)
    with tenancy.scoped(studio.id):
        piano = db.session.scalar(db.select(Resource).where(Resource.slug == "piano"))
    make_blackout(studio, _local(studio, day, "09:00"), _local(studio, day, "10:00"), resource=piano)
    assert _slots(studio, package="lesson-30", day=day)[0] == "10:00"
    assert _slots(studio, resource="drums", package="lesson-30", day=day)[0] == "09:00"
    make_blackout(studio, _local(studio, day, "00:00"), _local(studio, day + timedelta(days=1), "00:00"))
    assert _slots(studio, resource="drums", package="lesson-30", day=day) == []


def test_minimum_notice_and_booking_window(studio):
    day = next_weekday(2)
    now = _local(studio, day, "08:00").astimezone(timezone.utc)
    assert _slots(studio, package="lesson-30", day=day, now=now)[0] == "10:00"  # 2 h notice
    assert _slots(studio, package="lesson-30", day=day, now=now + timedelta(hours=4)) == []  # day has passed 12:00
    with tenancy.scoped(studio.id):
        offer = availability.find_offer(studio, "lesson-30", "piano")
        far = day + timedelta(days=studio.booking_horizon_days + 5)
        assert availability.free_slots(studio, offer, far, far, now) == {}
        month = availability.free_slots(studio, offer, day, day + timedelta(days=30), now)
    assert len(month) == 31 and all(len(v) == 11 for k, v in month.items() if k != day)
