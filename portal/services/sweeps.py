"""Periodic clean-up that keeps state moving when a message was lost: expired holds, stuck events, old digests."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update

from portal import dispatch, tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, EventStatus, Payment, PaymentStatus, WebhookEvent, WebhookSignature
from portal.payments import PaymentProvider
from portal.services.checkout import expire_session_quietly
from portal.services.fulfilment import PROCESSING_LEASE

log = logging.getLogger(__name__)

#: Events still received/queued/retry after this long were lost by the queue (e.g. Redis was down).
STUCK_AFTER = timedelta(minutes=10)


def release_expired_holds(*, provider: PaymentProvider, now: datetime, limit: int = 500) -> int:
    """Expire holds past their time whose payment is not under way, and expire their Checkout Sessions."""
    with tenancy.all_tenants():
        rows = db.session.execute(
            select(Booking.id, Payment.checkout_session_id)
            .outerjoin(Payment, Payment.booking_id == Booking.id)
            .where(Booking.status == BookingStatus.HELD, Booking.hold_expires_at <= now,
                   or_(Payment.id.is_(None), Payment.status.in_((PaymentStatus.PENDING, PaymentStatus.FAILED))))
            .order_by(Booking.hold_expires_at).limit(limit)).all()
        released = []
        for booking_id, session_id in rows:
            result = db.session.execute(
                update(Booking).where(Booking.id == booking_id, Booking.status == BookingStatus.HELD)
                .values(status=BookingStatus.EXPIRED, updated_at=now))
            db.session.execute(update(Payment).where(Payment.booking_id == booking_id,
                                                     Payment.status == PaymentStatus.PENDING)
                               .values(status=PaymentStatus.EXPIRED, updated_at=now))
            db.session.commit()
            if result.rowcount and session_id:
                released.append(session_id)
        for session_id in released:
            expire_session_quietly(provider, session_id)
    if rows:
        log.info("released %d expired holds", len(rows))
    return len(rows)


def requeue_stuck_events(*, now: datetime, stuck_after: timedelta = STUCK_AFTER,
                         lease: timedelta = PROCESSING_LEASE, limit: int = 500) -> int:
    """Queue again events that were stored but never processed (queue outage, killed worker)."""
    stuck = db.session.scalars(
        select(WebhookEvent.id).where(or_(
            WebhookEvent.status.in_((EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.RETRY))
            & (WebhookEvent.updated_at < now - stuck_after),
            (WebhookEvent.status == EventStatus.PROCESSING) & (WebhookEvent.updated_at < now - lease),
        )).order_by(WebhookEvent.id).limit(limit)).all()
    queued = 0
    for event_id in stuck:
        try:
            dispatch.enqueue("process_webhook_event", event_id)
        except dispatch.DispatchError as error:
            log.warning("queue still unavailable, %d events wait: %s", len(stuck) - queued, error)
            break
        db.session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id,
                                                      WebhookEvent.status != EventStatus.PROCESSING)
                           .values(status=EventStatus.QUEUED, updated_at=now))
        db.session.commit()
        queued += 1
    if queued:
        log.info("re-queued %d stuck webhook events", queued)
    return queued


def prune_webhook_signatures(*, now: datetime, replay_window: timedelta) -> int:
    result = db.session.execute(delete(WebhookSignature).where(WebhookSignature.received_at < now - replay_window))
    db.session.commit()
    return result.rowcount or 0
