from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Boolean, CheckConstraint, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from portal.clock import utcnow
from portal.extensions import db
from portal.models.base import TimestampMixin, UTCDateTime


class Studio(TimestampMixin, db.Model):
    """A tenant.

    Its booking rules and policy columns are the published configuration's (`config_versions`), written only when a
    version is published (`portal.services.configuration`), so every request reads them straight from this row.
    `config_version` is the published version's number and `calendar_version` grows with every change of opening
    hours, blackouts or the catalogue: together they say when anything cached about the studio is stale.
    `changed_at` says when the row last changed, for `Last-Modified`.
    """

    __tablename__ = "studios"
    __table_args__ = (
        CheckConstraint("buffer_minutes >= 0", name="buffer_non_negative"),
        CheckConstraint("min_notice_minutes >= 0", name="notice_non_negative"),
        CheckConstraint("slot_interval_minutes > 0", name="interval_positive"),
        CheckConstraint("hold_minutes >= 30", name="hold_at_least_30"),
        CheckConstraint("reschedule_lead_hours >= 0", name="lead_non_negative"),
        CheckConstraint("max_reschedules >= 0", name="max_reschedules_non_negative"),
        CheckConstraint("cancel_window_hours >= 0", name="window_non_negative"),
        CheckConstraint("late_cancel_fee_percent >= 0 AND late_cancel_fee_percent <= 100", name="fee_percent_range"),
        CheckConstraint("series_max_weeks > 0 AND series_max_weeks <= 52", name="series_weeks_range"),
        CheckConstraint("waitlist_offer_minutes >= 15", name="offer_at_least_15"),
        CheckConstraint("makeup_valid_days > 0", name="makeup_days_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="usd")
    # How dates, times and money read on the studio's pages and emails (a CLDR locale such as en_US, en_GB).
    locale: Mapped[str] = mapped_column(String(16), nullable=False, default="en_US")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    buffer_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=10)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=120)
    slot_interval_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=30)
    booking_horizon_days: Mapped[int] = mapped_column(Integer, nullable=False, default=90)
    hold_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=30)
    # Policy: what students may change, and what a late cancellation costs. Bookings keep a snapshot.
    reschedule_lead_hours: Mapped[int] = mapped_column(Integer, nullable=False, default=24)
    max_reschedules: Mapped[int] = mapped_column(Integer, nullable=False, default=2)
    cancel_window_hours: Mapped[int] = mapped_column(Integer, nullable=False, default=24)
    late_cancel_fee_percent: Mapped[int] = mapped_column(Integer, nullable=False, default=50)
    late_cancel_makeup: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Weekly lessons and credits: the longest series a student may book (a term), how long a waitlist offer holds
    # its slot, and how long a make-up credit stays usable.
    series_max_weeks: Mapped[int] = mapped_column(Integer, nullable=False, default=16)
    waitlist_offer_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=120)
    makeup_valid_days: Mapped[int] = mapped_column(Integer, nullable=False, default=90)
    config_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    calendar_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # When anything of this row last changed (every UPDATE sets it, an ORM flush or a bulk `update(Studio)`): the
    # `Last-Modified` of the public answers that depend on the row alone.
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow,
                                                 server_default=func.now())

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    #: The columns of the policy a booking keeps a snapshot of when it is paid.
    POLICY_FIELDS = ("reschedule_lead_hours", "max_reschedules", "cancel_window_hours", "late_cancel_fee_percent",
                     "late_cancel_makeup")

    def policy_snapshot(self) -> dict:
        """The policy in force now, as stored on a booking when it is paid."""
        return {name: getattr(self, name) for name in self.POLICY_FIELDS}

    @property
    def buffer(self) -> timedelta:
        return timedelta(minutes=self.buffer_minutes)

    def __repr__(self) -> str:
        return f"<Studio {self.slug}>"
