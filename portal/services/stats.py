"""Booking figures for the metrics endpoint: one aggregate query per family, on indexed columns, across every studio.

Per-resource figures cover every active resource of every active studio (zero when it has no bookings), so each
series exists before its first event. Utilisation is confirmed lesson minutes starting in the seven days from
today's midnight (UTC) over the resource's capacity for those days (`capacity_minutes` a day × 7): how full the
coming week is, on a 0–1 scale (0 without capacity).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import and_, func, or_, select

from portal import tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, Package, Reschedule, Resource, Studio

#: Reschedule lead-time figures describe recent behaviour, not all history.
LEAD_TIME_WINDOW = timedelta(days=90)
UTILISATION_DAYS = 7
#: No lesson lasts longer than this, so a lesson still under way started within it (lets the start index serve).
LONGEST_LESSON = timedelta(days=1)


@dataclass(frozen=True)
class ResourceFigures:
    confirmed: int = 0
    confirmed_minutes: int = 0
    late_cancels: int = 0
    active: int = 0
    utilisation: float = 0.0


@dataclass(frozen=True)
class BookingStats:
    resources: dict[tuple[str, str], ResourceFigures]   # (studio slug, resource slug) -> figures
    reschedules_completed: int
    lead_hours_avg: float
    lead_hours_median: float

    def total(self, field: str) -> int:
        return sum(getattr(figures, field) for figures in self.resources.values())


def booking_stats(now: datetime) -> BookingStats:
    week_start = datetime.combine(now.astimezone(timezone.utc).date(), time.min, timezone.utc)
    confirmed = Booking.status == BookingStatus.CONFIRMED
    with tenancy.all_tenants():
        resources = db.session.execute(
            select(Studio.slug, Resource.id, Resource.slug, Resource.capacity_minutes)
            .join(Resource, Resource.studio_id == Studio.id)
            .where(Studio.active.is_(True), Resource.active.is_(True))).all()
        # Confirmed and late-cancelled bookings by package, in one pass over the covering status index, in its
        # order (an index-only scan bounded by the statuses, grouped as it reads, with no join): the minutes are
        # the counts times each package's duration, from the small packages table.
        counted = db.session.execute(
            select(Booking.resource_id, Booking.status, Booking.package_id, func.count())
            .where(Booking.status.in_((BookingStatus.CONFIRMED, BookingStatus.CANCELLED)),
                   or_(confirmed, Booking.penalty_reason == "late_cancel"))
            .group_by(Booking.status, Booking.resource_id, Booking.package_id)).all()
        durations = dict(db.session.execute(select(Package.id, Package.duration_minutes)).all())
        # Live bookings: unexpired holds and confirmed lessons not over yet (through the start index).
        active = db.session.execute(
            select(Booking.resource_id, func.count(Booking.id))
            .where(Booking.start_at >= now - LONGEST_LESSON,
                   or_(and_(Booking.status == BookingStatus.HELD, Booking.hold_expires_at > now),
                       and_(confirmed, Booking.end_at > now)))
            .group_by(Booking.resource_id)).all()
        # The coming week's confirmed minutes, for utilisation.
        week = db.session.execute(
            select(Booking.resource_id, func.sum(Package.duration_minutes))
            .join(Package, Package.id == Booking.package_id)
            .where(confirmed, Booking.start_at >= week_start,
                   Booking.start_at < week_start + timedelta(days=UTILISATION_DAYS))
            .group_by(Booking.resource_id)).all()
        completed = db.session.scalar(select(func.count(Reschedule.id))) or 0
        leads = db.session.scalars(select(Reschedule.lead_minutes)
                                   .where(Reschedule.created_at >= now - LEAD_TIME_WINDOW)).all()
    by_status: dict[tuple[int, BookingStatus], tuple[int, int]] = {}
    for resource_id, status, package_id, count in counted:
        so_far, minutes = by_status.get((resource_id, status), (0, 0))
        by_status[(resource_id, status)] = (so_far + count, minutes + count * durations.get(package_id, 0))
    live = dict(active)
    week_minutes = {resource_id: int(minutes or 0) for resource_id, minutes in week}
    figures = {}
    for studio, resource_id, slug, capacity in resources:
        count, minutes = by_status.get((resource_id, BookingStatus.CONFIRMED), (0, 0))
        week_capacity = capacity * UTILISATION_DAYS
        figures[(studio, slug)] = ResourceFigures(
            confirmed=count, confirmed_minutes=minutes,
            late_cancels=by_status.get((resource_id, BookingStatus.CANCELLED), (0, 0))[0],
            active=live.get(resource_id, 0),
            utilisation=round(week_minutes.get(resource_id, 0) / week_capacity, 4) if week_capacity > 0 else 0.0)
    hours = [minutes / 60 for minutes in leads]
    return BookingStats(
        resources=figures,
        reschedules_completed=completed,
        lead_hours_avg=round(statistics.fmean(hours), 3) if hours else 0.0,
        lead_hours_median=round(statistics.median(hours), 3) if hours else 0.0,
    )
