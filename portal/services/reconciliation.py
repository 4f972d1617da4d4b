"""Where money and bookings disagree (the ops console and the health gauges read these)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from portal import tenancy
from portal.extensions import db
from portal.models import (
    Booking,
    BookingStatus,
    EventStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    WebhookEvent,
)

BACKLOG_STATUSES = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING, EventStatus.RETRY,
                    EventStatus.DEAD)


def webhook_backlog() -> dict[str, int]:
    """Events per unfinished status, every status present (zero when none)."""
    rows = db.session.execute(select(WebhookEvent.status, func.count(WebhookEvent.id))
                              .where(WebhookEvent.status.in_(BACKLOG_STATUSES)).group_by(WebhookEvent.status))
    counts = {status.value: 0 for status in BACKLOG_STATUSES}
    counts.update({status.value: count for status, count in rows})
    return counts


def paid_unconfirmed_count() -> int:
    with tenancy.all_tenants():
        return db.session.scalar(
            select(func.count(Payment.id)).join(Booking, Booking.id == Payment.booking_id)
            .where(Payment.status == PaymentStatus.PAID,
                   Booking.status.in_((BookingStatus.HELD, BookingStatus.EXPIRED)))) or 0


def needs_attention(now: datetime, limit: int = 100) -> dict[str, list]:
    """What a person must look at: flagged payments (amount mismatch, paid after expiry, failed refunds), refunds
    still pending after an hour, and webhook events that ran out of retries."""
    with tenancy.all_tenants():
        slow_refunds = db.session.scalars(
            select(Refund).where(Refund.status == RefundStatus.PENDING, Refund.created_at < now - timedelta(hours=1))
            .order_by(Refund.created_at).limit(limit)).all()
        flagged = db.session.scalars(
            select(Payment).where(Payment.flag.is_not(None)).order_by(Payment.updated_at.desc()).limit(limit)).all()
        dead = db.session.scalars(
            select(WebhookEvent).where(WebhookEvent.status == EventStatus.DEAD)
            .order_by(WebhookEvent.updated_at.desc()).limit(limit)).all()
    return {"payments": flagged, "events": dead, "refunds": slow_refunds}
