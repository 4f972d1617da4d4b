"""Bookings and the database-level guarantee that two live bookings never overlap on one resource."""
from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.clock import utcnow
from portal.extensions import db
from portal.models.base import TenantMixin, TimestampMixin, UTCDateTime, str_enum


class BookingStatus(str, enum.Enum):
    """A booking's life; `portal.services.states.booking` owns every change of it. A move keeps a booking
    `confirmed` (its history is in `reschedules`); money refunded is the payment's state, not the booking's.

    `held` and `confirmed` occupy their slot: the no-overlap constraint (an exclusion constraint on PostgreSQL,
    triggers on SQLite, both created by the migrations) covers exactly these two."""

    HELD = "held"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"   # by the student (under the policy) or the studio; refunds live on the payment
    NO_SHOW = "no_show"       # the lesson took place without the student (marked by the studio afterwards)
    EXPIRED = "expired"       # a hold that ended unpaid (timed out, given up, or its payment failed)


#: The statuses that occupy their slot, as SQL (the partial indexes' condition).
LIVE = "status IN ('held', 'confirmed')"


class Booking(TenantMixin, TimestampMixin, db.Model):
    """One lesson on one resource.

    `occupied_until` is `end_at` plus the studio's buffer at booking time: the database forbids overlapping
    `[start_at, occupied_until)` spans of live bookings on the same resource, so the buffer between lessons is
    guaranteed by the same constraint as the lesson itself.
    """

    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="time_order"),
        CheckConstraint("occupied_until >= end_at", name="occupied_covers_lesson"),
        CheckConstraint("price_minor >= 0", name="price_non_negative"),
        Index("ix_bookings_resource_span", "resource_id", "start_at", "occupied_until"),
        Index("ix_bookings_start_at", "start_at"),
        Index("ix_bookings_status_updated", "status", "updated_at"),
        # Live bookings by resource and start, with what the overlap check compares: its probes read this index
        # alone (PostgreSQL also holds the span's end and the id in it).
        Index("ix_bookings_live_span", "resource_id", "start_at", postgresql_include=["occupied_until", "id"],
              postgresql_where=text(LIVE), sqlite_where=text(LIVE)),
        # The held bookings, a few among millions (paid but unconfirmed starts from them).
        Index("ix_bookings_held", "id", postgresql_where=text("status = 'held'"),
              sqlite_where=text("status = 'held'")),
        # The held bookings by expiry: the unreleased-holds check (at every metrics scrape) finds the few long
        # expired ones without reading the others.
        Index("ix_bookings_hold_expiry", "hold_expires_at", postgresql_where=text("status = 'held'"),
              sqlite_where=text("status = 'held'")),
        # Covers the metrics' live bookings starting soon (holds, lessons not over), so a scrape reads no rows.
        Index("ix_bookings_status_start", "status", "start_at",
              postgresql_include=["resource_id", "end_at", "hold_expires_at"]),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, index=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="RESTRICT"), nullable=False)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="RESTRICT"), nullable=False)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    occupied_until: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[BookingStatus] = mapped_column(
        str_enum(BookingStatus, 16),
        nullable=False, default=BookingStatus.HELD, index=True)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    price_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    policy: Mapped[dict | None] = mapped_column(JSON)  # the studio's policy when the booking was paid
    reschedule_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    penalty_reason: Mapped[str | None] = mapped_column(String(32))  # "late_cancel"
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by: Mapped[str | None] = mapped_column(String(16))  # "student" or "studio"
    cancel_reason: Mapped[str | None] = mapped_column(String(200))  # what the student is told (a studio cancel)
    ical_sequence: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The weekly series this lesson is one week of (see `portal.models.series`), if any.
    series_id: Mapped[int | None] = mapped_column(ForeignKey("booking_series.id", ondelete="RESTRICT"), index=True)

    student = relationship("User")
    package = relationship("Package")
    resource = relationship("Resource")
    studio = relationship("Studio")
    series = relationship("BookingSeries", back_populates="bookings")

    @property
    def duration_minutes(self) -> int:
        return int((self.end_at - self.start_at).total_seconds() // 60)

    def is_live(self, now: datetime) -> bool:
        """Does this booking occupy its slot at `now`? A hold past its expiry no longer does."""
        if self.status == BookingStatus.CONFIRMED:
            return True
        return self.status == BookingStatus.HELD and self.hold_expires_at is not None and self.hold_expires_at > now


class Reschedule(TenantMixin, TimestampMixin, db.Model):
    """One move of a booking: from where and when, to where and when, and how long before the lesson it was asked."""

    __tablename__ = "reschedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"), nullable=False, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    from_resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="RESTRICT"), nullable=False)
    from_start_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    to_resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="RESTRICT"), nullable=False)
    to_start_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    lead_minutes: Mapped[int] = mapped_column(Integer, nullable=False)


class MakeupCredit(TenantMixin, TimestampMixin, db.Model):
    """A make-up lesson owed after a late cancellation (when the studio's policy grants one)."""

    __tablename__ = "makeup_credits"

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"), unique=True, nullable=False)
    minutes: Mapped[int] = mapped_column(Integer, nullable=False)


class ResourceBookingTotal(TenantMixin, db.Model):
    """Bookings confirmed now and cancelled late, all time, per resource and package.

    Kept by the booking state machine (`portal.services.states.booking`) in the transaction that changes a booking,
    so the metrics read a row per resource and package instead of counting every booking ever made. Per package,
    because the confirmed minutes are the counts times each package's length.
    """

    __tablename__ = "resource_booking_totals"

    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True)
    confirmed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    late_cancels: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class ResourceBookingDay(TenantMixin, db.Model):
    """Bookings confirmed now per day of their start (UTC), resource and package, kept like `ResourceBookingTotal`:
    the metrics' coming week and lessons still to come, read as a few rows per resource and day."""

    __tablename__ = "resource_booking_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True)
    confirmed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
