"""When resources can be booked: weekly rules in studio-local time, and blackouts in UTC."""
from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Time
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import TenantMixin, TimestampMixin, UTCDateTime


class AvailabilityRule(TenantMixin, TimestampMixin, db.Model):
    """Open hours of one resource on one weekday (0 = Monday), as studio-local wall times."""

    __tablename__ = "availability_rules"
    __table_args__ = (
        CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday_range"),
        CheckConstraint("end_time > start_time", name="window_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), nullable=False,
                                             index=True)
    weekday: Mapped[int] = mapped_column(Integer, nullable=False)
    start_time: Mapped[time] = mapped_column(Time, nullable=False)
    end_time: Mapped[time] = mapped_column(Time, nullable=False)

    resource = relationship("Resource")


class Blackout(TenantMixin, TimestampMixin, db.Model):
    """A closed period for the whole studio (`resource_id` NULL) or one resource."""

    __tablename__ = "blackouts"
    __table_args__ = (CheckConstraint("ends_at > starts_at", name="range_order"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    reason: Mapped[str] = mapped_column(String(200), nullable=False, default="")

    resource = relationship("Resource")
