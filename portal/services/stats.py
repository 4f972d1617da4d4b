"""Booking figures for the metrics endpoint: a few aggregate queries on indexed columns."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from portal import tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, Reschedule, Resource, Studio

#: Reschedule lead-time figures describe recent behaviour, not all history.
LEAD_TIME_WINDOW = timedelta(days=90)


@dataclass(frozen=True)
class BookingStats:
    late_cancels: dict[tuple[str, str], int]   # (studio slug, resource slug) -> count; every resource present
    reschedules_completed: int
    lead_hours_avg: float
    lead_hours_median: float


def booking_stats(now: datetime) -> BookingStats:
    with tenancy.all_tenants():
        resources = db.session.execute(
            select(Studio.slug, Resource.id, Resource.slug).join(Resource, Resource.studio_id == Studio.id)).all()
        late = dict(db.session.execute(
            select(Booking.resource_id, func.count(Booking.id))
            .where(Booking.status == BookingStatus.CANCELLED, Booking.penalty_reason == "late_cancel")
            .group_by(Booking.resource_id)).all())
        completed = db.session.scalar(select(func.count(Reschedule.id))) or 0
        leads = db.session.scalars(select(Reschedule.lead_minutes)
                                   .where(Reschedule.created_at >= now - LEAD_TIME_WINDOW)).all()
    hours = [minutes / 60 for minutes in leads]
    return BookingStats(
        late_cancels={(studio, slug): late.get(resource_id, 0) for studio, resource_id, slug in resources},
        reschedules_completed=completed,
        lead_hours_avg=round(statistics.fmean(hours), 3) if hours else 0.0,
        lead_hours_median=round(statistics.median(hours), 3) if hours else 0.0,
    )
