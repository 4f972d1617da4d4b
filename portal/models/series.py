"""Weekly lessons: a series is a student's same time and room every week; each week is its own booking."""
from __future__ import annotations

from datetime import time

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Time
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import TenantMixin, TimestampMixin


class BookingSeries(TenantMixin, TimestampMixin, db.Model):
    """What the student asked for: `package` on `resource` every week at `local_time` (studio-local wall clock,
    kept across DST changes), starting on the week of `first_start`. Its occurrences are `bookings` rows with
    `series_id`; each has its own status, payment share and policy snapshot, so a week can be moved or cancelled
    alone. `paid_with` is how the whole series is paid: `checkout` (one Checkout Session) or `credits`."""

    __tablename__ = "booking_series"
    __table_args__ = (
        CheckConstraint("weeks > 0 AND weeks <= 52", name="weeks_range"),
        CheckConstraint("paid_with IN ('checkout', 'credits')", name="paid_with_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, index=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="RESTRICT"), nullable=False)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="RESTRICT"), nullable=False)
    local_time: Mapped[time] = mapped_column(Time, nullable=False)
    weeks: Mapped[int] = mapped_column(Integer, nullable=False)
    paid_with: Mapped[str] = mapped_column(String(16), nullable=False, default="checkout")

    student = relationship("User")
    package = relationship("Package")
    resource = relationship("Resource")
    bookings = relationship("Booking", back_populates="series", order_by="Booking.start_at")
