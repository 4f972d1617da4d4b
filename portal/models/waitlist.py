"""A student waiting for a time to free up on a resource, and the time-limited offer they get when one does."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.clock import utcnow
from portal.extensions import db
from portal.models.base import TenantMixin, TimestampMixin, UTCDateTime, str_enum


class WaitlistStatus(str, enum.Enum):
    """`portal.services.states.waitlist` owns every change."""

    WAITING = "waiting"      # in the queue for a time in its window
    OFFERED = "offered"      # a freed time is held for the student until `offer_expires_at`
    CLAIMED = "claimed"      # the student took the offer (and went on to pay for it)
    EXPIRED = "expired"      # the offer lapsed unclaimed; the time passed to the next student
    CANCELLED = "cancelled"  # the student left the queue


class WaitlistEntry(TenantMixin, TimestampMixin, db.Model):
    __tablename__ = "waitlist_entries"
    __table_args__ = (
        CheckConstraint("window_end > window_start", name="window_order"),
        Index("ix_waitlist_entries_queue", "status", "resource_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), nullable=False)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), nullable=False)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[WaitlistStatus] = mapped_column(str_enum(WaitlistStatus, 16), nullable=False,
                                                   default=WaitlistStatus.WAITING)
    offer_booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id", ondelete="SET NULL"))
    offer_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    student = relationship("User")
    package = relationship("Package")
    resource = relationship("Resource")
    offer_booking = relationship("Booking")
