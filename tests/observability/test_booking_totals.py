"""The metrics' running booking totals always equal a recount of the bookings table.

Bookings go through every change of the booking state machine (confirm, confirm after expiry, release, move to
another resource and day, cancel late, cancel by the studio, cancel in time, no-show); after each one the totals
the machine kept equal the bookings counted afresh, and every booking figure of the metrics equals the same figure
counted straight from the bookings by its definition, seen at several instants (a lesson under way, one starting
tomorrow, one past the coming week). A refused change and a rolled-back one leave the totals as they were.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import (
    Booking,
    BookingStatus,
    Package,
    Resource,
    ResourceBookingDay,
    ResourceBookingTotal,
    Role,
    Studio,
)
from portal.services import audit, booking_totals, stats
from portal.services.states import booking as booking_states
from portal.services.states.machine import IllegalTransition
from tests.conftest import BOTH
from tests.factories import make_studio, make_user

ACTOR = audit.SYSTEM


def stored_totals() -> tuple[dict, dict]:
    """The totals as kept, in `booking_totals.recount()`'s shape (rows counted down to nothing left out)."""
    with tenancy.all_tenants():
        totals = db.session.execute(select(ResourceBookingTotal.resource_id, ResourceBookingTotal.package_id,
                                           ResourceBookingTotal.confirmed, ResourceBookingTotal.late_cancels)).all()
        days = db.session.execute(select(ResourceBookingDay.day, ResourceBookingDay.resource_id,
                                         ResourceBookingDay.package_id, ResourceBookingDay.confirmed)).all()
    return ({(r, p): (c, lc) for r, p, c, lc in totals if c or lc}, {(d, r, p): c for d, r, p, c in days if c})


def figures_by_definition(now: datetime) -> dict:
    """Every booking figure per resource, counted from the bookings in Python, as README and the gauges define
    them."""
    with tenancy.all_tenants():
        bookings = db.session.scalars(select(Booking)).all()
        durations = dict(db.session.execute(select(Package.id, Package.duration_minutes)).all())
        resources = db.session.execute(select(Studio.slug, Resource.id, Resource.slug, Resource.capacity_minutes)
                                       .join(Resource, Resource.studio_id == Studio.id)).all()
    week_start = datetime.combine(now.date(), time.min, timezone.utc)
    figures = {}
    for studio, resource_id, slug, capacity in resources:
        mine = [b for b in bookings if b.resource_id == resource_id]
        confirmed = [b for b in mine if b.status == BookingStatus.CONFIRMED]
        active = [b for b in mine if b.start_at >= now - stats.LONGEST_LESSON and (
            (b.status == BookingStatus.HELD and b.hold_expires_at > now)
            or (b.status == BookingStatus.CONFIRMED and b.end_at > now))]
        week = sum(durations[b.package_id] for b in confirmed
                   if week_start <= b.start_at < week_start + timedelta(days=stats.UTILISATION_DAYS))
        figures[(studio, slug)] = stats.ResourceFigures(
            confirmed=len(confirmed), confirmed_minutes=sum(durations[b.package_id] for b in confirmed),
            late_cancels=sum(1 for b in mine if b.status == BookingStatus.CANCELLED
                             and b.penalty_reason == "late_cancel"),
            active=len(active), utilisation=round(week / (capacity * stats.UTILISATION_DAYS), 4))
    return figures


class Lessons:
    """Held bookings made as the product makes them (a hold is not counted), then changed by the state machine."""

    def __init__(self, now: datetime):
        self.now = now
        self.studio = make_studio(resources=("piano", "drums"))
        self.student = make_user("student@example.com", roles=[(self.studio, Role.STUDENT)])
        with tenancy.all_tenants():
            self.resources = dict(db.session.execute(select(Resource.slug, Resource.id)
                                                     .where(Resource.studio_id == self.studio.id)).all())
            self.packages = dict(db.session.execute(select(Package.duration_minutes, Package.id)
                                                    .where(Package.studio_id == self.studio.id)).all())

    def hold(self, start: datetime, *, resource: str = "piano", minutes: int = 60) -> int:
        booking = Booking(studio_id=self.studio.id, student_id=self.student.id, package_id=self.packages[minutes],
                          resource_id=self.resources[resource], start_at=start,
                          end_at=start + timedelta(minutes=minutes), occupied_until=start + timedelta(minutes=minutes),
                          status=BookingStatus.HELD, hold_expires_at=self.now + timedelta(minutes=15),
                          price_minor=6500, currency="usd")
        db.session.add(booking)
        db.session.commit()
        return booking.id

    def confirmed(self, start: datetime, **where) -> int:
        booking_id = self.hold(start, **where)
        booking_states.confirm(booking_id, now=self.now, policy={})
        db.session.commit()
        return booking_id


def check(now: datetime, *instants: datetime) -> None:
    db.session.expire_all()
    assert stored_totals() == booking_totals.recount()
    for instant in (now, *instants):
        assert stats.booking_stats(instant).resources == figures_by_definition(instant), instant


@BOTH
def test_every_change_of_a_booking_keeps_the_totals_equal_to_a_recount(app_ctx):
    now = utcnow()
    midnight = datetime.combine(now.date(), time.min, timezone.utc)
    lessons = Lessons(now)
    later = (now + timedelta(hours=5), midnight + timedelta(days=1, minutes=30), now + timedelta(days=9))
    with tenancy.all_tenants():
        under_way = lessons.confirmed(now - timedelta(minutes=20))  # started, not over
        check(now, *later)
        tomorrow = lessons.confirmed(midnight + timedelta(days=1, hours=2), minutes=30)
        next_week = lessons.confirmed(midnight + timedelta(days=8, hours=10), resource="drums")
        check(now, *later)

        lapsed = lessons.hold(midnight + timedelta(days=2, hours=9))
        booking_states.release(lapsed, now=now, actor=ACTOR, note="test")
        db.session.commit()
        check(now, *later)
        booking_states.confirm(lapsed, now=now, policy={})  # paid after its hold lapsed, its time still free
        db.session.commit()
        check(now, *later)

        booking = db.session.get(Booking, tomorrow)
        booking_states.move(booking, now=now, actor=ACTOR, resource_id=lessons.resources["drums"],
                            start=midnight + timedelta(days=3, hours=11), end=midnight + timedelta(days=3, hours=11,
                                                                                                   minutes=30),
                            until=midnight + timedelta(days=3, hours=11, minutes=30), expected_moves=0)
        db.session.commit()
        check(now, *later)
        booking = db.session.get(Booking, next_week)
        booking_states.move(booking, now=now, actor=ACTOR, resource_id=booking.resource_id,
                            start=midnight + timedelta(days=4, hours=10), end=midnight + timedelta(days=4, hours=11),
                            until=midnight + timedelta(days=4, hours=11), expected_moves=0)
        db.session.commit()
        check(now, *later)

        booking_states.cancel(next_week, now=now, actor=ACTOR, late=True)
        booking_states.cancel(tomorrow, now=now, actor=ACTOR, late=True, by_studio=True)  # never late for the student
        booking_states.cancel(lapsed, now=now, actor=ACTOR, late=False)
        db.session.commit()
        check(now, *later)
        booking_states.mark_no_show(under_way, now=now, actor=ACTOR, note="test")
        db.session.commit()
        check(now, *later)

        # nothing confirmed is left; the one late cancellation stays with the resource it was moved within
        assert stored_totals() == ({(lessons.resources["drums"], lessons.packages[60]): (0, 1)}, {})


@BOTH
def test_a_refused_or_rolled_back_change_leaves_the_totals_as_they_were(app_ctx):
    now = utcnow()
    lessons = Lessons(now)
    with tenancy.all_tenants():
        booking_id = lessons.confirmed(now + timedelta(days=2))
        before = stored_totals()
        assert before[0] == {(lessons.resources["piano"], lessons.packages[60]): (1, 0)}
        with pytest.raises(IllegalTransition):
            booking_states.confirm(booking_id, now=now, policy={})  # already confirmed
        db.session.rollback()
        assert stored_totals() == before
        booking_states.cancel(booking_id, now=now, actor=ACTOR, late=True)
        db.session.rollback()  # the change and its count go together
        assert stored_totals() == before == booking_totals.recount()


@BOTH
def test_a_rebuild_counts_bookings_written_around_the_state_machine(app_ctx):
    now = utcnow()
    lessons = Lessons(now)
    with tenancy.all_tenants():
        lessons.confirmed(now + timedelta(days=1))
        db.session.add(Booking(studio_id=lessons.studio.id, student_id=lessons.student.id,
                               package_id=lessons.packages[30], resource_id=lessons.resources["drums"],
                               start_at=now + timedelta(days=3), end_at=now + timedelta(days=3, minutes=30),
                               occupied_until=now + timedelta(days=3, minutes=30), status=BookingStatus.CONFIRMED,
                               price_minor=3500, currency="usd"))
        db.session.commit()
        assert stored_totals() != booking_totals.recount()  # written straight into the table: not counted
        booking_totals.rebuild()
        db.session.commit()
        check(now, now + timedelta(days=2))
        assert stored_totals()[0] == {(lessons.resources["piano"], lessons.packages[60]): (1, 0),
                                      (lessons.resources["drums"], lessons.packages[30]): (1, 0)}
