"""Processing stored Stripe events: the payload is only a signal; the truth is re-fetched from Stripe.

Every handler is idempotent: running an event twice, or two events about one session in either order, leaves the
same state. A worker claims an event with a conditional update (a lease, so a killed worker's event is taken over
later); confirmation of the booking and the payment record happen in one transaction.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from portal import metrics, tenancy
from portal.extensions import db
from portal.models import BookingStatus, EventStatus, Payment, PaymentFlag, PaymentStatus, WebhookEvent
from portal.payments import CheckoutSession, PaymentProvider, PaymentProviderError, TransientProviderError
from portal.services import notifications, refunds

log = logging.getLogger(__name__)

#: A claimed event whose worker has not finished after this long is taken over by the next attempt.
PROCESSING_LEASE = timedelta(minutes=5)
SESSION_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded",
                  "checkout.session.async_payment_failed", "checkout.session.expired"}
#: Stripe reports refund progress on the charge and on the refund itself; either is a signal to re-fetch.
REFUND_EVENTS = {"charge.refunded", "charge.refund.updated", "refund.updated", "refund.failed"}
HANDLED = SESSION_EVENTS | REFUND_EVENTS | {"payment_intent.payment_failed"}


class RetryLater(Exception):
    """Processing failed for a reason that may pass (network, provider, database); the job is retried."""


def claim(event_id: int, now: datetime, max_attempts: int, lease: timedelta = PROCESSING_LEASE) -> bool:
    """Take the event for processing. An event whose lease ran out after its last attempt (its worker died every
    time) is marked dead instead of being tried forever."""
    stale = (WebhookEvent.status == EventStatus.PROCESSING) & (WebhookEvent.updated_at < now - lease)
    claimable = or_(WebhookEvent.status.in_((EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.RETRY)), stale)
    result = db.session.execute(
        update(WebhookEvent).where(WebhookEvent.id == event_id, claimable, WebhookEvent.attempts < max_attempts)
        .values(status=EventStatus.PROCESSING, attempts=WebhookEvent.attempts + 1, updated_at=now))
    if result.rowcount != 1:
        buried = db.session.execute(
            update(WebhookEvent).where(WebhookEvent.id == event_id, stale, WebhookEvent.attempts >= max_attempts)
            .values(status=EventStatus.DEAD, updated_at=now,
                    last_error="the worker processing it stopped before finishing, on every attempt"))
        if buried.rowcount:
            metrics.webhook_events.labels("dead").inc()
    db.session.commit()
    return result.rowcount == 1


def process_event(event_id: int, *, provider: PaymentProvider, now: datetime, max_attempts: int,
                  lease: timedelta = PROCESSING_LEASE) -> str:
    """Process one stored event. Returns the outcome; raises `RetryLater` when another attempt should follow."""
    if not claim(event_id, now, max_attempts, lease):
        return "skipped"
    event = db.session.get(WebhookEvent, event_id)
    try:
        with tenancy.all_tenants():
            outcome = _dispatch(event, provider, now)
    except Exception as error:
        db.session.rollback()
        # A refusal from the provider (unknown object, bad request) will not change on retry: dead at once.
        permanent = isinstance(error, PaymentProviderError) and not isinstance(error, TransientProviderError)
        if not isinstance(error, (PaymentProviderError, OperationalError)):
            log.exception("unexpected error processing event %s", event_id)
        return _failed(event_id, f"{type(error).__name__}: {error}", now, 1 if permanent else max_attempts)
    event = db.session.get(WebhookEvent, event_id)
    event.status = EventStatus.IGNORED if outcome == "ignored" else EventStatus.PROCESSED
    event.processed_at = event.updated_at = now
    event.last_error = ""
    db.session.commit()
    metrics.webhook_events.labels(event.status.value).inc()
    return outcome


def _failed(event_id: int, error: str, now: datetime, max_attempts: int) -> str:
    event = db.session.get(WebhookEvent, event_id)
    event.last_error = error[:2000]
    event.updated_at = now
    metrics.webhook_events.labels("error").inc()
    if event.attempts >= max_attempts:
        event.status = EventStatus.DEAD
        db.session.commit()
        metrics.webhook_events.labels("dead").inc()
        log.error("event %s is dead after %d attempts: %s", event.provider_event_id, event.attempts, error)
        return "dead"
    event.status = EventStatus.RETRY
    db.session.commit()
    metrics.webhook_events.labels("retry").inc()
    raise RetryLater(error)


def _dispatch(event: WebhookEvent, provider: PaymentProvider, now: datetime) -> str:
    obj = (event.payload.get("data") or {}).get("object") or {}
    if event.type in SESSION_EVENTS:
        payment = _payment_for_session(obj.get("id"))
        if payment is None:
            return "ignored"  # not one of ours (another integration on the same Stripe account)
        event.studio_id = payment.studio_id
        payment_id, session_id = payment.id, payment.checkout_session_id
        db.session.commit()  # never hold a transaction (on SQLite: the write lock) across a call to Stripe
        session = provider.retrieve_checkout_session(session_id)
        return _apply_session(event.type, db.session.get(Payment, payment_id), session, provider, now)
    if event.type == "payment_intent.payment_failed":
        return _payment_failed(obj, now)
    if event.type in REFUND_EVENTS:
        return _refund_changed(obj, provider, now)
    return "ignored"


def _payment_for_session(session_id) -> Payment | None:
    if not session_id:
        return None
    return db.session.scalar(select(Payment).where(Payment.checkout_session_id == session_id))


def _apply_session(event_type: str, payment: Payment, session: CheckoutSession, provider: PaymentProvider,
                   now: datetime) -> str:
    if session.payment_status in ("paid", "no_payment_required"):
        return _settle(payment, session, provider, now)
    booking = payment.booking
    if event_type == "checkout.session.async_payment_failed" or session.status == "expired":
        if payment.status in (PaymentStatus.PENDING, PaymentStatus.PROCESSING):
            payment.status = (PaymentStatus.FAILED if event_type == "checkout.session.async_payment_failed"
                              else PaymentStatus.EXPIRED)
            if booking.status == BookingStatus.HELD:
                booking.status = BookingStatus.EXPIRED
                booking.updated_at = now
            db.session.commit()
        return "processed"
    if session.status == "complete" and payment.status == PaymentStatus.PENDING:
        payment.status = PaymentStatus.PROCESSING  # a delayed payment method: wait for async_payment_*
        db.session.commit()
    return "processed"


def _settle(payment: Payment, session: CheckoutSession, provider: PaymentProvider, now: datetime) -> str:
    """Money arrived: confirm the booking with the payment in one transaction, or refund if the slot is gone."""
    if payment.status in (PaymentStatus.PAID, PaymentStatus.MISMATCH, PaymentStatus.REFUNDED,
                          PaymentStatus.PARTIALLY_REFUNDED):
        return "processed"  # already settled: a redelivery or a second event about the same session
    payment.payment_intent_id = session.payment_intent_id
    payment.amount_received_minor = session.amount_total
    payment.received_currency = (session.currency or "").lower() or None
    if session.amount_total != payment.amount_minor or payment.received_currency != payment.currency.lower():
        payment.status = PaymentStatus.MISMATCH
        payment.raise_flag(PaymentFlag.AMOUNT_MISMATCH,
                           f"expected {payment.amount_minor} {payment.currency}, "
                           f"Stripe reports {session.amount_total} {session.currency}")
        db.session.commit()
        log.error("amount mismatch on payment %s: %s", payment.id, payment.flag_detail)
        return "processed"  # never retried: a person must look at it

    booking = payment.booking
    payment.status = PaymentStatus.PAID
    payment.paid_at = now
    if booking.status in (BookingStatus.HELD, BookingStatus.EXPIRED):
        # The policy in force when it was paid decides its fate (read before the change: no early autoflush).
        snapshot = booking.studio.policy_snapshot()
        booking.status = BookingStatus.CONFIRMED
        booking.policy = snapshot
        booking.updated_at = now
        try:
            db.session.commit()
            notifications.enqueue("confirmation", booking.id, key=notifications.confirmation_key(booking.id))
            return "processed"
        except IntegrityError:
            db.session.rollback()  # the expired hold's slot was taken meanwhile: refund
    else:
        db.session.commit()
        if booking.status == BookingStatus.CONFIRMED:
            return "processed"
    return _refund_unplaceable(payment.id, session, now)


def _refund_unplaceable(payment_id: int, session: CheckoutSession, now: datetime) -> str:
    """The money arrived but the slot is gone: record the full refund in the same transaction as the payment, so
    no retry or crash can leave a flagged-as-refunded payment without its refund, then queue it."""
    payment = db.session.get(Payment, payment_id)
    payment.payment_intent_id = session.payment_intent_id
    payment.amount_received_minor = session.amount_total
    payment.received_currency = (session.currency or "").lower() or None
    payment.status = PaymentStatus.PAID
    payment.paid_at = payment.paid_at or now
    payment.raise_flag(PaymentFlag.PAID_AFTER_EXPIRY,
                       "paid after the hold expired and the slot was taken: refunded in full")
    refund_id = refunds.record(payment=payment, amount_minor=payment.paid_minor, reason="slot_unavailable",
                               purpose_key=f"payment:{payment.id}:slot_unavailable").id
    db.session.commit()
    refunds.queue(refund_id)
    return "processed"


def _refund_changed(obj: dict, provider: PaymentProvider, now: datetime) -> str:
    intent = obj.get("payment_intent")
    payment = db.session.scalar(select(Payment).where(Payment.payment_intent_id == intent)) if intent else None
    if payment is None:
        return "ignored"
    payment_id = payment.id
    db.session.commit()
    refunds.refresh_pending(payment_id, provider)
    return "processed"


def _payment_failed(intent: dict, now: datetime) -> str:
    """A card was declined on the Checkout page. The student may try again there; the hold stays."""
    metadata = intent.get("metadata") or {}
    booking_id = metadata.get("booking_id")
    payment = db.session.scalar(select(Payment).where(Payment.booking_id == int(booking_id))) \
        if booking_id and str(booking_id).isdigit() else None
    if payment is None:
        return "ignored"
    error = intent.get("last_payment_error") or {}
    payment.last_error = (error.get("message") or "payment failed")[:2000]
    db.session.commit()
    return "processed"


def sync_from_provider(payment_id: int, session_id: str, provider: PaymentProvider, now: datetime) -> None:
    """The student is back from Checkout: ask Stripe directly instead of only waiting for the webhook.
    Safe alongside the webhook's own processing: settling is idempotent. The caller holds no transaction."""
    session = provider.retrieve_checkout_session(session_id)
    _apply_session("checkout.return", db.session.get(Payment, payment_id), session, provider, now)
