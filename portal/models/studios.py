from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Boolean, CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import TimestampMixin


class Studio(TimestampMixin, db.Model):
    """A tenant. Its settings here are the booking defaults a studio admin can tune."""

    __tablename__ = "studios"
    __table_args__ = (
        CheckConstraint("buffer_minutes >= 0", name="buffer_non_negative"),
        CheckConstraint("min_notice_minutes >= 0", name="notice_non_negative"),
        CheckConstraint("slot_interval_minutes > 0", name="interval_positive"),
        CheckConstraint("hold_minutes >= 30", name="hold_at_least_30"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="usd")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    buffer_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=10)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=120)
    slot_interval_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=30)
    booking_horizon_days: Mapped[int] = mapped_column(Integer, nullable=False, default=90)
    hold_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=30)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def buffer(self) -> timedelta:
        return timedelta(minutes=self.buffer_minutes)

    def __repr__(self) -> str:
        return f"<Studio {self.slug}>"
