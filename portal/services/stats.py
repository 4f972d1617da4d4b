"""Booking figures for the metrics endpoint, across every studio, each read without counting the bookings table:
the all-time and coming figures from the running totals the booking state machine keeps
(`portal.services.booking_totals`), the live bookings starting before tomorrow from a covering index.

Per-resource figures cover every active resource of every active studio (zero when it has no bookings), so each
series exists before its first event. Utilisation is confirmed lesson minutes starting in the seven days from
today's midnight (UTC) over the resource's capacity for those days (`capacity_minutes` a day × 7): how full the
coming week is, on a 0–1 scale (0 without capacity).
"""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import case, func, select, union_all

from portal import tenancy
from portal.extensions import db
from portal.models import (
    Booking,
    BookingStatus,
    Package,
    Reschedule,
    Resource,
    ResourceBookingDay,
    ResourceBookingTotal,
    Studio,
)

#: Reschedule lead-time figures describe recent behaviour, not all history.
LEAD_TIME_WINDOW = timedelta(days=90)
UTILISATION_DAYS = 7
#: No lesson lasts longer than this, so a lesson still under way started within it (bounds the start index range).
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
    today, tomorrow = week_start.date(), week_start + timedelta(days=1)
    with tenancy.all_tenants():
        resources = db.session.execute(
            select(Studio.slug, Resource.id, Resource.slug, Resource.capacity_minutes)
            .join(Resource, Resource.studio_id == Studio.id)
            .where(Studio.active.is_(True), Resource.active.is_(True))).all()
        durations = dict(db.session.execute(select(Package.id, Package.duration_minutes)).all())
        # All time, from the running totals the booking state machine keeps (`services.booking_totals`): the
        # minutes are the counts times each package's length.
        totals = db.session.execute(select(ResourceBookingTotal.resource_id, ResourceBookingTotal.package_id,
                                           ResourceBookingTotal.confirmed, ResourceBookingTotal.late_cancels)).all()
        # Confirmed lessons by day of their start from today on: the coming week, and those starting tomorrow or
        # later (not over yet, however long).
        days = ResourceBookingDay
        ahead = db.session.execute(
            select(days.resource_id, days.package_id,
                   func.sum(case((days.day < today + timedelta(days=UTILISATION_DAYS), days.confirmed), else_=0)),
                   func.sum(case((days.day > today, days.confirmed), else_=0)))
            .where(days.day >= today).group_by(days.resource_id, days.package_id)).all()
        # The other live bookings, starting before tomorrow: unexpired holds and lessons not over yet (through the
        # covering status/start index; a lesson still under way started less than `LONGEST_LESSON` ago).
        soon = union_all(
            select(Booking.resource_id).where(Booking.status == BookingStatus.HELD,
                                              Booking.start_at >= now - LONGEST_LESSON, Booking.hold_expires_at > now),
            select(Booking.resource_id).where(Booking.status == BookingStatus.CONFIRMED,
                                              Booking.start_at >= now - LONGEST_LESSON, Booking.start_at < tomorrow,
                                              Booking.end_at > now)).subquery()
        live_soon = db.session.execute(select(soon.c.resource_id, func.count()).group_by(soon.c.resource_id)).all()
        completed = db.session.scalar(select(func.count(Reschedule.id))) or 0
        leads = db.session.scalars(select(Reschedule.lead_minutes)
                                   .where(Reschedule.created_at >= now - LEAD_TIME_WINDOW)).all()
    confirmed, confirmed_minutes, late = Counter(), Counter(), Counter()
    for resource_id, package_id, count, late_cancels in totals:
        confirmed[resource_id] += count
        confirmed_minutes[resource_id] += count * durations.get(package_id, 0)
        late[resource_id] += late_cancels
    week_minutes, live = Counter(), Counter(dict(live_soon))
    for resource_id, package_id, week, later in ahead:
        week_minutes[resource_id] += int(week or 0) * durations.get(package_id, 0)
        live[resource_id] += int(later or 0)
    figures = {}
    for studio, resource_id, slug, capacity in resources:
        week_capacity = capacity * UTILISATION_DAYS
        figures[(studio, slug)] = ResourceFigures(
            confirmed=confirmed[resource_id], confirmed_minutes=confirmed_minutes[resource_id],
            late_cancels=late[resource_id], active=live[resource_id],
            utilisation=round(week_minutes[resource_id] / week_capacity, 4) if week_capacity > 0 else 0.0)
    hours = [minutes / 60 for minutes in leads]
    return BookingStats(
        resources=figures,
        reschedules_completed=completed,
        lead_hours_avg=round(statistics.fmean(hours), 3) if hours else 0.0,
        lead_hours_median=round(statistics.median(hours), 3) if hours else 0.0,
    )
