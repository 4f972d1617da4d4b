"""Periodic clean-up that keeps state moving when a message was lost: expired holds, stuck events, old digests."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select

from portal import dispatch, tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, EventStatus, Payment, PaymentStatus, WebhookEvent, WebhookSignature
from portal.payments import PaymentProvider
from portal.services import audit
from portal.services.checkout import expire_session_quietly
from portal.services.fulfilment import PROCESSING_LEASE
from portal.services.states import booking as booking_states
from portal.services.states import webhook_event as events
from portal.services.states.machine import IllegalTransition

log = logging.getLogger(__name__)

#: Events still received/queued/retry after this long were lost by the queue (e.g. Redis was down).
STUCK_AFTER = timedelta(minutes=10)


def release_expired_holds(*, provider: PaymentProvider, now: datetime, limit: int = 500) -> int:
    """Expire holds past their time whose payment is not under way, and expire their Checkout Sessions."""
    with tenancy.all_tenants():
        rows = db.session.execute(
            select(Booking.id, Payment.checkout_session_id)
            .outerjoin(Payment, or_(Payment.booking_id == Booking.id,  # a series' weeks share one Checkout
                                    and_(Booking.series_id.is_not(None), Payment.series_id == Booking.series_id)))
            .where(Booking.status == BookingStatus.HELD, Booking.hold_expires_at <= now,
                   or_(Payment.id.is_(None), Payment.status.in_((PaymentStatus.PENDING, PaymentStatus.FAILED))))
            .order_by(Booking.hold_expires_at).limit(limit)).all()
        db.session.rollback()
        released, done, sessions = 0, set(), []
        for booking_id, session_id in rows:
            if booking_id in done:  # released with the rest of its weekly series
                continue
            try:
                ids = booking_states.release(booking_id, now=now, actor=audit.SYSTEM,
                                             note="The hold expired before it was paid.")
                db.session.commit()
            except IllegalTransition:  # paid, or released by someone else, meanwhile
                db.session.rollback()
                continue
            released += len(ids)
            done.update(ids)
            if session_id and session_id not in sessions:
                sessions.append(session_id)
        for session_id in sessions:
            expire_session_quietly(provider, session_id)
    if released:
        log.info("released %d expired holds", released)
    return released


def requeue_stuck_events(*, now: datetime, stuck_after: timedelta = STUCK_AFTER,
                         lease: timedelta = PROCESSING_LEASE, limit: int = 500) -> int:
    """Queue again events that were stored but never processed (queue outage, killed worker). An event held by a
    worker whose lease ran out is queued without a change: the next claim takes it over."""
    stuck = db.session.execute(
        select(WebhookEvent.id, WebhookEvent.status).where(or_(
            WebhookEvent.status.in_((EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.RETRY))
            & (WebhookEvent.updated_at < now - stuck_after),
            (WebhookEvent.status == EventStatus.PROCESSING) & (WebhookEvent.updated_at < now - lease),
        )).order_by(WebhookEvent.id).limit(limit)).all()
    db.session.rollback()
    queued = 0
    for event_id, status in stuck:
        try:
            dispatch.enqueue("process_webhook_event", event_id)
        except dispatch.DispatchError as error:
            log.warning("queue still unavailable, %d events wait: %s", len(stuck) - queued, error)
            break
        if status != EventStatus.PROCESSING:
            try:
                events.queue(event_id, now=now)
                db.session.commit()
            except IllegalTransition:  # a worker claimed it meanwhile
                db.session.rollback()
        queued += 1
    if queued:
        log.info("re-queued %d stuck webhook events", queued)
    return queued


def prune_webhook_signatures(*, now: datetime, replay_window: timedelta) -> int:
    result = db.session.execute(delete(WebhookSignature).where(WebhookSignature.received_at < now - replay_window))
    db.session.commit()
    return result.rowcount or 0
