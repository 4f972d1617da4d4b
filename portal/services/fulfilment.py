"""Processing stored Stripe events: the payload is only a signal; the truth is re-fetched from Stripe.

Every handler is idempotent: running an event twice, or two events about one session in either order, leaves the
same state. A worker claims an event with a conditional update (a lease, so a killed worker's event is taken over
later); confirmation of the booking and the payment record happen in one transaction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from flask import current_app, has_app_context
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError, OperationalError

from portal import logs, metrics, tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, Payment, PaymentFlag, PaymentStatus, Studio
from portal.parsing import whole_number
from portal.payments import CheckoutSession, PaymentProvider, PaymentProviderError, TransientProviderError
from portal.services import audit, notifications, packs, refunds
from portal.services.errors import NotFound
from portal.services.states import booking as booking_states
from portal.services.states import payment as payments
from portal.services.states import webhook_event as events
from portal.services.states.machine import IllegalTransition

log = logging.getLogger(__name__)

#: A claimed event whose worker has not finished after this long is taken over by the next attempt.
PROCESSING_LEASE = timedelta(minutes=5)


def configured_lease() -> timedelta:
    """The lease of this deployment (`WEBHOOK_PROCESSING_LEASE_SEC`); `PROCESSING_LEASE` outside an app."""
    if not has_app_context():
        return PROCESSING_LEASE
    return timedelta(seconds=current_app.config["PORTAL_SETTINGS"].webhook_processing_lease_sec)
SESSION_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded",
                  "checkout.session.async_payment_failed", "checkout.session.expired"}
#: Stripe reports refund progress on the charge and on the refund itself; either is a signal to re-fetch.
REFUND_EVENTS = {"charge.refunded", "charge.refund.updated", "refund.updated", "refund.failed"}


class RetryLater(Exception):
    """Processing failed for a reason that may pass (network, provider, database); the job is retried."""


def claim(event_id: int, now: datetime, max_attempts: int, lease: timedelta = PROCESSING_LEASE) -> int | None:
    """Take the event for processing; returns the attempt's number, or None when it is not ours to process. An
    event whose lease ran out after its last attempt (its worker died every time) is marked dead instead of being
    tried forever."""
    taken = _take(event_id, now, max_attempts, lease)
    return taken[0].attempt if taken is not None else None


def _take(event_id: int, now: datetime, max_attempts: int,
          lease: timedelta) -> tuple[events.Claimed, Paying | None] | None:
    """Claim the event and, for a Checkout event, read the payment it is about in the same transaction (one commit
    for both). Returns None when the event is not ours to process."""
    try:
        taken = events.take(event_id, now=now, max_attempts=max_attempts, lease=lease)
        paying = _paying_for_session(event_object(taken.payload).get("id")) if taken.type in SESSION_EVENTS else None
        db.session.commit()
        return taken, paying
    except (IllegalTransition, NotFound):
        db.session.rollback()
    try:
        events.bury(event_id, now=now, abandoned_after=(lease, max_attempts),
                    error="the worker processing it stopped before finishing, on every attempt")
        db.session.commit()
        metrics.webhook_events.labels("dead").inc()
    except (IllegalTransition, NotFound):
        db.session.rollback()
    return None


@dataclass
class Event:
    """The claimed event as processing sees it; `studio_id` is learnt on the way and written with the outcome."""
    id: int
    type: str
    payload: dict
    received_at: datetime
    studio_id: int | None = None


def process_event(event_id: int, *, provider: PaymentProvider, now: datetime, max_attempts: int,
                  lease: timedelta = PROCESSING_LEASE) -> str:
    """Process one stored event. Returns the outcome; raises `RetryLater` when another attempt should follow.

    The claim returns what processing needs (type, payload), so the event row is written three times and never
    read: claimed, then (after the work, with the studio it turned out to be about) processed, retried or dead.
    The payment a Checkout event is about is read in the claim's transaction (see `Paying`)."""
    claimed = _take(event_id, now, max_attempts, lease)
    if claimed is None:
        return "skipped"
    taken, paying = claimed
    event = Event(event_id, taken.type, taken.payload or {}, taken.received_at)
    return run_attempt(event, taken.attempt, paying, provider, now, max_attempts)


def run_attempt(event: Event, attempt: int, paying: Paying | None, provider: PaymentProvider, now: datetime,
             max_attempts: int, fetched: CheckoutSession | Exception | None = None) -> str:
    """One attempt at a claimed event, to its recorded end: processed, ignored, retry (raises `RetryLater`) or dead.
    `fetched`: Stripe's answer about the payment's Checkout Session, when it was asked already (or what asking
    raised)."""
    try:
        with tenancy.all_tenants():
            outcome = _dispatch(event, paying, provider, now, fetched)
    except Exception as error:
        db.session.rollback()
        # A refusal from the provider (unknown object, bad request) will not change on retry: dead at once.
        permanent = isinstance(error, PaymentProviderError) and not isinstance(error, TransientProviderError)
        if not isinstance(error, (PaymentProviderError, OperationalError)):
            log.exception("unexpected error processing event %s", event.id)
        return _failed(event, attempt, f"{type(error).__name__}: {error}", now, 1 if permanent else max_attempts)
    try:
        events.finish(event.id, now=now, attempt=attempt, ignored=outcome == "ignored", studio_id=event.studio_id)
        db.session.commit()
    except IllegalTransition as superseded:  # our lease ran out and a newer attempt owns the event
        db.session.rollback()
        log.warning("event %s: %s", event.id, superseded.message)
        return "superseded"
    metrics.webhook_events.labels("ignored" if outcome == "ignored" else "processed").inc()
    return outcome


def _failed(event: Event, attempt: int, error: str, now: datetime, max_attempts: int) -> str:
    metrics.webhook_events.labels("error").inc()
    try:
        if attempt >= max_attempts:
            events.bury(event.id, now=now, attempt=attempt, error=error, studio_id=event.studio_id)
        else:
            events.retry(event.id, now=now, attempt=attempt, error=error, studio_id=event.studio_id)
        db.session.commit()
    except IllegalTransition as superseded:
        db.session.rollback()
        log.warning("event %s: %s", event.id, superseded.message)
        return "superseded"
    if attempt >= max_attempts:
        metrics.webhook_events.labels("dead").inc()
        log.error("event %s is dead after %d attempts: %s", event.id, attempt, error)
        return "dead"
    metrics.webhook_events.labels("retry").inc()
    raise RetryLater(error)


def event_object(payload: dict | None) -> dict:
    """The object a Stripe event is about (`data.object`), or {}."""
    return ((payload or {}).get("data") or {}).get("object") or {}


def _dispatch(event: Event, paying: Paying | None, provider: PaymentProvider, now: datetime,
              fetched: CheckoutSession | Exception | None = None) -> str:
    """`paying`: the payment a Checkout event is about, read when the event was claimed (None: not a payment);
    `fetched`: Stripe's answer about its session when asked already (an exception asking raised is raised here)."""
    obj = event_object(event.payload)
    if event.type in SESSION_EVENTS:
        if paying is None:
            purchase = packs.for_session(obj.get("id"))
            if purchase is None:
                return "ignored"  # not one of ours (another integration on the same Stripe account)
            event.studio_id = purchase.studio_id
            purchase_id, session_id = purchase.id, purchase.checkout_session_id
            db.session.commit()
            return packs.apply_session(purchase_id, provider.retrieve_checkout_session(session_id), now)
        event.studio_id = paying.studio_id
        logs.job_concerns(paying.studio_id, paying.studio_slug)
        # The claim's transaction is committed: none is held (on SQLite: the write lock) across a call to Stripe.
        if isinstance(fetched, Exception):
            raise fetched
        session = fetched or provider.retrieve_checkout_session(paying.checkout_session_id)
        return _apply_session_fresh(event.type, paying.id, session, provider, now, paid_at=stripe_time(event),
                                    known=paying)
    if event.type == "payment_intent.payment_failed":
        return _payment_failed(obj, now)
    if event.type in REFUND_EVENTS:
        return _refund_changed(obj, provider, now)
    return "ignored"


class Paying(NamedTuple):
    """A payment as settling sees it, with its booking and its studio's policy: one joined Core SELECT, plain values
    (no ORM objects to build, track and expire on every event).

    Processing reads it when it claims the event, before asking Stripe, and decides from it after the answer: every
    write that follows is a conditional update of the state machines, so if the payment or its booking moved
    meanwhile (the student's return page, a sweep) the write is refused and everything is read again, fresh."""
    id: int
    studio_id: int
    checkout_session_id: str
    status: PaymentStatus
    flag: PaymentFlag | None
    series_id: int | None
    amount_minor: int
    currency: str
    booking_id: int
    booking_status: BookingStatus
    booking_start_at: datetime
    booking_end_at: datetime
    booking_resource_id: int
    booking_package_id: int
    studio_slug: str
    policy: dict


def _paying_statements():
    """The SELECT of `Paying`, by Checkout Session and by payment id, built once. Core on the tables, without the
    tenant filter: a payment is named by its session (an event seen across tenants) or by the id its caller found."""
    p, b, s = Payment.__table__, Booking.__table__, Studio.__table__
    columns = (p.c.id, p.c.studio_id, p.c.checkout_session_id, p.c.status, p.c.flag, p.c.series_id, p.c.amount_minor,
               p.c.currency, p.c.booking_id, b.c.status, b.c.start_at, b.c.end_at, b.c.resource_id, b.c.package_id,
               s.c.slug, *(s.c[name] for name in Studio.POLICY_FIELDS))
    joined = select(*columns).select_from(p.join(b, b.c.id == p.c.booking_id).join(s, s.c.id == p.c.studio_id))
    session_type = p.c.checkout_session_id.type
    return (joined.where(p.c.checkout_session_id == bindparam("session_id", type_=session_type)),
            joined.where(p.c.id == bindparam("payment_id", type_=p.c.id.type)),
            joined.where(p.c.checkout_session_id.in_(bindparam("session_ids", type_=session_type, expanding=True))))


_PAYING_BY_SESSION, _PAYING_BY_ID, _PAYING_BY_SESSIONS = _paying_statements()
_POLICY_AT = len(Paying._fields) - 1


def _paying(statement, **params) -> Paying | None:
    row = db.session.connection().execute(statement, params).first()
    return _as_paying(row) if row is not None else None


def _as_paying(row) -> Paying:
    return Paying(*row[:_POLICY_AT], dict(zip(Studio.POLICY_FIELDS, row[_POLICY_AT:], strict=True)))


def paying_for_sessions(session_ids: list[str]) -> dict[str, Paying]:
    """`_paying_for_session` for many sessions in one SELECT: {session id: payment} (sessions not ours are absent)."""
    if not session_ids:
        return {}
    rows = db.session.connection().execute(_PAYING_BY_SESSIONS, {"session_ids": session_ids}).all()
    return {paying.checkout_session_id: paying for paying in map(_as_paying, rows)}


def _paying_for_session(session_id) -> Paying | None:
    return _paying(_PAYING_BY_SESSION, session_id=session_id) if isinstance(session_id, str) and session_id else None


def _apply_session_fresh(event_type: str, payment_id: int, session: CheckoutSession, provider: PaymentProvider,
                         now: datetime, paid_at: datetime | None = None, known: Paying | None = None) -> str:
    """Apply Stripe's view of a session to the payment as it is now. The webhook, the student's return page and
    the sweeps may act on one payment at once; a transition refused because another got there first is applied
    again against the fresh state (every step is idempotent), so the outcome does not depend on who won.
    `known`: the payment as read before asking Stripe, tried first (a refusal then reads it afresh)."""
    for attempt in range(3):
        try:
            payment = known if known is not None and attempt == 0 else _paying(_PAYING_BY_ID, payment_id=payment_id)
            if payment is None:
                raise NotFound("No such payment.")
            return _apply_session(event_type, payment, session, provider, now, paid_at)
        except IllegalTransition:
            db.session.rollback()
            db.session.expire_all()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _apply_session(event_type: str, payment: Paying, session: CheckoutSession, provider: PaymentProvider,
                   now: datetime, paid_at: datetime | None = None) -> str:
    if session.payment_status in ("paid", "no_payment_required"):
        return _settle(payment, session, provider, now, paid_at)
    async_failed = event_type == "checkout.session.async_payment_failed"
    if async_failed or session.status == "expired":
        if async_failed and payment.status in (PaymentStatus.PENDING, PaymentStatus.PROCESSING):
            payments.fail(payment.id, now=now, error="The delayed payment failed.")
        if payment.booking_status == BookingStatus.HELD:  # expires a pending payment (a series' weeks go together)
            booking_states.release(payment.booking_id, now=now, actor=audit.SYSTEM,
                                   note="The payment failed." if async_failed else "Checkout expired unpaid.")
        elif payment.status == PaymentStatus.PENDING:
            payments.expire(payment.id, now=now)
        db.session.commit()
        return "processed"
    if session.status == "complete" and payment.status == PaymentStatus.PENDING:
        payments.process(payment.id, now=now)  # a delayed payment method: wait for async_payment_*
        db.session.commit()
    return "processed"


def _settle(payment: Paying, session: CheckoutSession, provider: PaymentProvider, now: datetime,
            paid_at: datetime | None = None) -> str:
    """Money arrived: confirm the booking with the payment in one transaction, or refund if the slot is gone.
    `paid_at` (when Stripe recorded the payment, from the event) times the confirmation for the KPI histogram."""
    if (payment.status == PaymentStatus.PAID and payment.flag is None and payment.series_id is None
            and payment.booking_status in (BookingStatus.HELD, BookingStatus.EXPIRED)):
        return _place_paid(payment, now)
    if payment.status in (PaymentStatus.PAID, PaymentStatus.MISMATCH, PaymentStatus.REFUNDED,
                          PaymentStatus.PARTIALLY_REFUNDED):
        return "processed"  # already settled: a redelivery or a second event about the same session
    received = dict(amount_minor=session.amount_total, currency=session.currency,
                    intent_id=session.payment_intent_id)
    if session.amount_total != payment.amount_minor or (session.currency or "").lower() != payment.currency.lower():
        detail = (f"expected {payment.amount_minor} {payment.currency}, "
                  f"Stripe reports {session.amount_total} {session.currency}")
        payments.flag_mismatch(payment.id, now=now, detail=detail, **received)
        db.session.commit()
        log.error("amount mismatch on payment %s: %s", payment.id, detail)
        return "processed"  # never retried: a person must look at it

    payment_id, booking_id, booking_status = payment.id, payment.booking_id, payment.booking_status
    if payment.series_id is not None:
        return _settle_series(payment, received, session, now)
    booking_minutes = (payment.booking_end_at - payment.booking_start_at) / timedelta(minutes=1)
    if booking_status in (BookingStatus.HELD, BookingStatus.EXPIRED):
        try:
            payments.settle(payment_id, now=now, **received)
            # The policy in force when it was paid decides its fate.
            booking_states.confirm(booking_id, now=now, policy=payment.policy)
            db.session.commit()
        except IntegrityError:
            db.session.rollback()  # the expired hold's slot was taken meanwhile: refund
        else:
            count_confirmed(booking_minutes, now, paid_at)
            notifications.enqueue("confirmation", booking_id, key=notifications.confirmation_key(booking_id))
            return "processed"
    elif booking_status == BookingStatus.CONFIRMED:
        payments.settle(payment_id, now=now, **received)
        db.session.commit()
        return "processed"
    return _refund_unplaceable(payment_id, session, now)


def _place_paid(payment: Paying, now: datetime) -> str:
    """A payment recorded as paid whose booking was left unconfirmed (the ops console's "paid but not confirmed"):
    confirm the booking now, or refund in full if its time was taken meanwhile."""
    payment_id, booking_id = payment.id, payment.booking_id
    try:
        booking_states.confirm(booking_id, now=now, policy=payment.policy)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        payment = db.session.get(Payment, payment_id)
        payment.raise_flag(PaymentFlag.PAID_AFTER_EXPIRY, _UNPLACEABLE)
        return _record_full_refund(payment_id, now)
    notifications.enqueue("confirmation", booking_id, key=notifications.confirmation_key(booking_id))
    return "processed"


_UNPLACEABLE = "paid after the hold expired and the slot was taken: refunded in full"


def _settle_series(payment: Paying, received: dict, session: CheckoutSession, now: datetime) -> str:
    """A weekly series paid in one Checkout: every week it still holds is confirmed with the payment, in one
    transaction, each with the policy of now. If a week's time was taken after its hold expired, nothing is
    confirmed and the whole payment is refunded (the student is told and can book again)."""
    payment_id, series_id = payment.id, payment.series_id
    weeks = db.session.execute(select(Booking.id, Booking.status).where(Booking.series_id == series_id)
                               .order_by(Booking.start_at)).all()
    if payment.status not in (PaymentStatus.PENDING, PaymentStatus.PROCESSING, PaymentStatus.EXPIRED,
                              PaymentStatus.FAILED):
        return "processed"
    snapshot = payment.policy
    pending = [week_id for week_id, status in weeks if status in (BookingStatus.HELD, BookingStatus.EXPIRED)]
    try:
        payments.settle(payment_id, now=now, **received)
        for week_id in pending:
            booking_states.confirm(week_id, now=now, policy=snapshot)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a week's time was booked by someone else after the hold expired: refund
        return _refund_unplaceable(payment_id, session, now)
    for week_id in pending:
        notifications.enqueue("confirmation", week_id, key=notifications.confirmation_key(week_id))
    return "processed"


def count_confirmed(minutes: float, now: datetime, paid_at: datetime | None) -> None:
    metrics.checkout_sessions_completed.inc()
    metrics.booking_duration.observe(minutes)
    if paid_at is not None:
        metrics.payment_to_confirmed.observe(max(0.0, (now - paid_at).total_seconds()))


def stripe_time(event: Event) -> datetime:
    """When Stripe created the event (its `created`), or when it reached us if the payload has none."""
    created = event.payload.get("created")
    if isinstance(created, int) and not isinstance(created, bool):
        return datetime.fromtimestamp(created, timezone.utc)
    return event.received_at


def _refund_unplaceable(payment_id: int, session: CheckoutSession, now: datetime) -> str:
    """The money arrived but the slot is gone: record the full refund in the same transaction as the payment, so
    no retry or crash can leave a flagged-as-refunded payment without its refund, then queue it."""
    payments.settle(payment_id, now=now, amount_minor=session.amount_total, currency=session.currency,
                    intent_id=session.payment_intent_id, flag=PaymentFlag.PAID_AFTER_EXPIRY, flag_detail=_UNPLACEABLE)
    return _record_full_refund(payment_id, now)


def _record_full_refund(payment_id: int, now: datetime) -> str:
    payment = db.session.get(Payment, payment_id)
    db.session.refresh(payment)
    refund_id = refunds.record(payment=payment, amount_minor=payment.paid_minor, reason="slot_unavailable",
                               purpose_key=f"payment:{payment.id}:slot_unavailable", now=now, actor=audit.SYSTEM,
                               note="Paid after the hold expired, and the time was booked by someone else: "
                                    "refunded in full.").id
    db.session.commit()
    refunds.queue(refund_id)
    return "processed"


def _refund_changed(obj: dict, provider: PaymentProvider, now: datetime) -> str:
    intent = obj.get("payment_intent")
    payment = db.session.scalar(select(Payment).where(Payment.payment_intent_id == intent)) if intent else None
    if payment is None:
        purchase = packs.for_intent(intent)  # the unused credits of a lesson pack refunded
        if purchase is None:
            return "ignored"
        purchase_id = purchase.id
        db.session.commit()
        refunds.reconcile(None, provider, now=now, purchase_id=purchase_id)
        return "processed"
    payment_id = payment.id
    db.session.commit()
    refunds.reconcile(payment_id, provider, now=now)
    return "processed"


def _payment_failed(intent: dict, now: datetime) -> str:
    """A card was declined on the Checkout page. The student may try again there; the hold stays."""
    metadata = intent.get("metadata") or {}
    booking_id = metadata.get("booking_id")
    booking_number = whole_number(str(booking_id or ""), 1)
    payment = db.session.scalar(select(Payment).where(Payment.booking_id == booking_number)) \
        if booking_number is not None else None
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
    _apply_session_fresh("checkout.return", payment_id, session, provider, now)
