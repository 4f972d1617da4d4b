"""Processing the stored events that wait for their first attempt in batches (`process_waiting`), for the drain job
(`portal.jobs.webhooks`): one claim, one read of their payments, Stripe asked about their sessions concurrently, the
plain ones settled in one transaction, and everything else handed to `fulfilment.run_attempt` one event at a time,
exactly as a single event's job would run it.
"""
from __future__ import annotations

import contextvars
import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from portal import dispatch, logs, metrics
from portal.extensions import db
from portal.models import BookingStatus, PaymentStatus
from portal.payments import CheckoutSession, PaymentProvider
from portal.services import booking_totals, notifications
from portal.services.fulfilment import (
    SESSION_EVENTS,
    Event,
    Paying,
    RetryLater,
    count_confirmed,
    event_object,
    paying_for_sessions,
    run_attempt,
    stripe_time,
)
from portal.services.states import booking as booking_states
from portal.services.states import payment as payments
from portal.services.states import webhook_event as events

log = logging.getLogger(__name__)

#: Events one batch claims (`process_waiting`): enough to spread a claim and a commit over many events, few enough
#: that a batch is done in a moment when Stripe answers in a few hundred milliseconds.
BATCH_SIZE = 32
#: Stripe requests a batch has in flight at once: processing an event is mostly waiting for Stripe's answer.
FETCHES_AT_ONCE = 8
_fetchers: ThreadPoolExecutor | None = None
_fetchers_lock = threading.Lock()


def process_waiting(*, provider: PaymentProvider, now: datetime, max_attempts: int, limit: int = BATCH_SIZE,
                    on_full: Callable[[], None] | None = None) -> Counter:
    """Process up to `limit` of the events waiting for their first attempt, together; returns their outcomes.

    The batch is claimed in one statement (other workers' batches skip these rows), the payments of its Checkout
    events are read in one more, in the same transaction, and their sessions are fetched from Stripe concurrently.
    The plain case (a held booking paid as asked) is settled for the whole batch in one transaction: the payments,
    the bookings, their totals and the events, each kind in one round trip. Anything else, or a batch whose
    transaction is refused, goes through `_attempt` one event at a time, exactly as a single event's job would. An
    attempt that fails is scheduled again with the retry delays (`dispatch.retry_later`); attempts and the dead end
    are counted on the event row as ever.

    `on_full` is called when the claim took `limit` events (more are probably waiting): to wake another worker
    before this one spends its time on Stripe's answers."""
    claimed = events.take_waiting(now=now, max_attempts=max_attempts, limit=limit)
    if not claimed:
        db.session.commit()
        return Counter()
    if len(claimed) == limit and on_full is not None:
        on_full()
    taken = [Event(row.id, row.type, row.payload or {}, row.received_at) for row in claimed]
    attempts = {row.id: row.attempt for row in claimed}
    sessions = [event_object(event.payload).get("id") for event in taken if event.type in SESSION_EVENTS]
    paying = paying_for_sessions([session for session in sessions if isinstance(session, str) and session])
    db.session.commit()
    payment_of = {event.id: paying.get(event_object(event.payload).get("id")) for event in taken
                  if event.type in SESSION_EVENTS}
    fetched = _fetch_sessions(provider, {event_id: payment.checkout_session_id
                                         for event_id, payment in payment_of.items() if payment is not None})
    plain, seen = [], set()
    for event in taken:
        payment, session = payment_of.get(event.id), fetched.get(event.id)
        if (payment is not None and isinstance(session, CheckoutSession) and payment.id not in seen
                and _settles_plainly(payment, session)):
            seen.add(payment.id)
            plain.append((event, payment, session))
    outcomes = Counter()
    if plain and _settle_together(plain, attempts, now):
        outcomes["processed"] += len(plain)
        done = {event.id for event, _, _ in plain}
    else:
        done = set()
    for event in taken:
        if event.id in done:
            continue
        try:
            outcomes[run_attempt(event, attempts[event.id], payment_of.get(event.id), provider, now, max_attempts,
                              fetched.get(event.id))] += 1
        except RetryLater:
            outcomes["retry"] += 1
            try:
                dispatch.retry_later("process_webhook_event", event.id, attempt=attempts[event.id])
            except dispatch.DispatchError as error:  # the stuck-event sweep queues it
                log.warning("event %s: retry not scheduled (%s)", event.id, error)
    return outcomes


def any_waiting(max_attempts: int) -> bool:
    """Whether events still wait for their first attempt (see `events.any_waiting`); ends the read."""
    try:
        return events.any_waiting(max_attempts=max_attempts)
    finally:
        db.session.rollback()


def _fetch_sessions(provider: PaymentProvider, sessions: dict[int, str]) -> dict[int, CheckoutSession | Exception]:
    """Stripe's answer (or the exception asking raised) for each event's Checkout Session, asked concurrently."""
    def fetch(session_id: str) -> CheckoutSession | Exception:
        try:
            return provider.retrieve_checkout_session(session_id)
        except Exception as error:  # handled with the event, as if it had been raised there
            return error

    if len(sessions) <= 1:
        return {event_id: fetch(session_id) for event_id, session_id in sessions.items()}
    global _fetchers
    with _fetchers_lock:
        if _fetchers is None:
            _fetchers = ThreadPoolExecutor(FETCHES_AT_ONCE, thread_name_prefix="stripe-fetch")
    # Each under a copy of this context: the app's (metrics, tracing) and the job's span, as if fetched here.
    answers = _fetchers.map(lambda session_id, context: context.run(fetch, session_id), sessions.values(),
                            [contextvars.copy_context() for _ in sessions])
    return dict(zip(sessions, answers, strict=True))


def _settles_plainly(payment: Paying, session: CheckoutSession) -> bool:
    """Paid as asked for one held booking, nothing settled before: what `_settle` would settle and confirm."""
    return (session.payment_status in ("paid", "no_payment_required") and payment.flag is None
            and payment.series_id is None and payment.booking_status == BookingStatus.HELD
            and payment.status in (PaymentStatus.PENDING, PaymentStatus.PROCESSING, PaymentStatus.EXPIRED,
                                   PaymentStatus.FAILED)
            and session.amount_total == payment.amount_minor
            and (session.currency or "").lower() == payment.currency.lower())


def _settle_together(plain: list[tuple[Event, Paying, CheckoutSession]], attempts: dict[int, int],
                     now: datetime) -> bool:
    """Settle the payments, confirm the bookings and finish the events of `plain` in one transaction. False (rolled
    back) if any row moved meanwhile or a constraint refused: the caller then takes them one at a time."""
    try:
        settled = payments.settle_many([(payment.id, session.amount_total, session.currency,
                                         session.payment_intent_id) for _, payment, session in plain], now=now)
        confirmed = settled == len(plain) and booking_states.confirm_many(
            [(payment.booking_id, payment.policy,
              booking_totals.Counted(payment.studio_id, payment.booking_resource_id, payment.booking_package_id,
                                     payment.booking_start_at)) for _, payment, _ in plain], now=now) == len(plain)
        finished = confirmed and events.finish_many(
            [(event.id, attempts[event.id], payment.studio_id) for event, payment, _ in plain], now=now) == len(plain)
        if not finished:
            db.session.rollback()
            return False
        db.session.commit()
    except SQLAlchemyError as error:
        db.session.rollback()
        log.info("batch of %d settled one by one instead (%s)", len(plain), type(error).__name__)
        return False
    metrics.webhook_events.labels("processed").inc(len(plain))
    for event, payment, _ in plain:
        logs.job_concerns(payment.studio_id, payment.studio_slug)
        count_confirmed((payment.booking_end_at - payment.booking_start_at) / timedelta(minutes=1), now,
                         stripe_time(event))
    notifications.enqueue_many("confirmation", [(payment.booking_id, notifications.confirmation_key(payment.booking_id))
                                                for _, payment, _ in plain])
    return True
