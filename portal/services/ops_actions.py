"""Repairs ops staff make from the console or the CLI: one entity at a time, each with a written note, audited.

Each action checks the state the person saw (`expected`): if it moved since, the action is refused with a 409 and
changes nothing, so a double click or a stale page never has a second effect. The runbook's principles hold:
retries only for what is not processed, never retry an amount mismatch (refund it in full instead), prefer
re-fetching from Stripe over editing rows.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import dispatch, tenancy
from portal.extensions import db
from portal.models import (
    Booking,
    BookingStatus,
    DriftFinding,
    EventStatus,
    PackPurchase,
    PackPurchaseStatus,
    Payment,
    PaymentFlag,
    PaymentStatus,
    Refund,
    RefundStatus,
    Resolution,
    WebhookEvent,
)
from portal.payments import PaymentProvider, PaymentProviderError
from portal.services import audit, fulfilment, packs, refunds
from portal.services.checkout import expire_session_quietly
from portal.services.errors import Conflict, InvalidInput, NotFound
from portal.services.reconciliation import QUERIES, STUCK_AFTER
from portal.services.states import booking as booking_states
from portal.services.states import refund as refund_states
from portal.services.states import webhook_event as event_states


def _note(note: str | None) -> str:
    note = (note or "").strip()
    if not note:
        raise InvalidInput("Write a note saying why: it goes in the audit log.", code="note_missing", field="note")
    return note[:2000]


def _get(model, entity_id: int, noun: str):
    with tenancy.all_tenants():
        row = db.session.get(model, entity_id) if 0 < entity_id < 2**31 else None
    if row is None:
        raise NotFound(f"No such {noun}.")
    return row


@contextmanager
def _stripe_answers():
    """A call to Stripe a repair depends on: when Stripe does not answer, nothing changed (a 409 saying so)."""
    try:
        yield
    except PaymentProviderError as error:
        db.session.rollback()
        raise Conflict(f"Stripe did not answer: {error}. Nothing changed; try again later.") from None


def _expected(enum_type, raw: str | None):
    if not raw:
        return None
    try:
        return enum_type(raw)
    except ValueError:
        raise InvalidInput("The page sent a state this portal does not know. Reload it.", code="expected_invalid") \
            from None


def replay_event(event_id: int, *, actor: audit.Actor, note: str | None, now: datetime,
                 expected: str | None = None) -> None:
    """Queue an unprocessed event again with fresh attempts (dead, retrying, or stuck in received/queued). One
    waiting for a worker that was queued in the last `STUCK_AFTER` is left alone: a replay would only queue it twice
    (a second run of the same command, a double click)."""
    note = _note(note)
    with tenancy.all_tenants():
        event = _get(WebhookEvent, event_id, "webhook event")
        waiting = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.RETRY)
        if event.status in waiting and event.updated_at > now - STUCK_AFTER:
            raise Conflict(f"This event is already {event.status.value} and waiting for a worker; replay it only "
                           "if it is still waiting in 10 minutes.")
        event_states.replay(event.id, now=now, actor=actor, note=note, lease=fulfilment.configured_lease(),
                            expected=_expected(EventStatus, expected) or event.status)
        db.session.commit()
    dispatch.enqueue("process_webhook_event", event_id)


def refetch_session(payment_id: int, *, actor: audit.Actor, note: str | None, provider: PaymentProvider,
                    now: datetime, expected: str | None = None) -> str:
    """The runbook's "re-trigger with the exact sessionId": ask Stripe for the Checkout Session and run
    fulfilment on its answer (it confirms, or refunds when the time is gone). Returns the payment's status after."""
    note = _note(note)
    with tenancy.all_tenants():
        payment = _get(Payment, payment_id, "payment")
        seen = _expected(PaymentStatus, expected)
        if seen is not None and payment.status != seen:
            raise Conflict(f"This payment is {payment.status.value} now, not {seen.value}: reload the page.")
        if payment.status == PaymentStatus.MISMATCH:
            raise Conflict("Never retry an amount mismatch: investigate it as possible fraud and refund it in full.")
        studio_id, session_id, before = payment.studio_id, payment.checkout_session_id, payment.status.value
        db.session.commit()
        with _stripe_answers():
            fulfilment.sync_from_provider(payment_id, session_id, provider, now)
        db.session.expire_all()
        after = db.session.get(Payment, payment_id).status.value
        audit.record(actor=actor, action="payment.refetch", target_type="payment", target_id=payment_id,
                     studio_id=studio_id, now=now, note=note, before={"status": before}, after={"status": after})
        db.session.commit()
        return after


def refetch_pack(purchase_id: int, *, actor: audit.Actor, note: str | None, provider: PaymentProvider,
                 now: datetime, expected: str | None = None) -> str:
    """A lesson pack paid at Stripe whose credits never arrived: ask Stripe for its Checkout Session and apply it
    (paid: the credits, once; another amount: flagged). Returns the purchase's status after."""
    note = _note(note)
    with tenancy.all_tenants():
        purchase = _get(PackPurchase, purchase_id, "pack purchase")
        seen = _expected(PackPurchaseStatus, expected)
        if seen is not None and purchase.status != seen:
            raise Conflict(f"This pack purchase is {purchase.status.value} now, not {seen.value}: reload the page.")
        studio_id, session_id, before = purchase.studio_id, purchase.checkout_session_id, purchase.status.value
        db.session.commit()
        with _stripe_answers():
            session = provider.retrieve_checkout_session(session_id)
        packs.apply_session(purchase_id, session, now)
        db.session.expire_all()
        after = db.session.get(PackPurchase, purchase_id).status.value
        audit.record(actor=actor, action="pack_purchase.refetch", target_type="pack purchase",
                     target_id=purchase_id, studio_id=studio_id, now=now, note=note, before={"status": before},
                     after={"status": after})
        db.session.commit()
        return after


def release_hold(booking_id: int, *, actor: audit.Actor, note: str | None, provider: PaymentProvider,
                 now: datetime, expected: str | None = None) -> None:
    """Release a hold past its expiry (refused while money is moving for it)."""
    note = _note(note)
    with tenancy.all_tenants():
        booking = _get(Booking, booking_id, "booking")
        seen = _expected(BookingStatus, expected)
        if seen is not None and booking.status != seen:
            raise Conflict(f"This booking is {booking.status.value} now, not {seen.value}: reload the page.")
        if booking.status == BookingStatus.HELD and booking.hold_expires_at and booking.hold_expires_at > now:
            raise Conflict("This hold has not expired yet: the student may still be paying.")
        payment = booking_states.payment_of(booking_id, booking.series_id)  # a series' weeks share one Checkout
        session_id = payment.checkout_session_id if payment is not None else None
        booking_states.release(booking_id, now=now, actor=actor, note=note)
        db.session.commit()
    if session_id:
        expire_session_quietly(provider, session_id)


def retry_refund(refund_id: int, *, actor: audit.Actor, note: str | None, provider: PaymentProvider, now: datetime,
                 expected: str | None = None) -> None:
    """A failed refund goes back to pending and to the queue (after its cause was fixed). Stripe is asked first:
    a refund we gave up on may have gone through after all (a timeout), and sending it again would refund twice,
    so a retry is refused while Stripe holds a live attempt of it. Refunds made outside the portal are not ours to
    send, and a retry never exceeds what is still refundable."""
    note = _note(note)
    with tenancy.all_tenants():
        refund = _get(Refund, refund_id, "refund")
        seen = _expected(RefundStatus, expected) or refund.status
        if refund.status != seen:
            raise Conflict(f"This refund is {refund.status.value} now, not {seen.value}: reload the page.")
        if refund.reason == refunds.EXTERNAL:
            raise Conflict("This refund was made outside the portal: repeat it in the Stripe Dashboard if needed.")
        if refund.status != RefundStatus.FAILED:
            raise Conflict(f"Only a failed refund can be retried; this one is {refund.status.value}.")
        payment_id, purchase_id, intent = refund.payment_id, refund.pack_purchase_id, refund.payment_intent_id
        db.session.commit()
        if intent:
            with _stripe_answers():
                remote = provider.list_refunds(payment_intent_id=intent)
            refunds.reconcile(payment_id, provider, now=now, remote=remote, purchase_id=purchase_id)
            live = [r for r in remote if str((r.metadata or {}).get("refund_id", "")) == str(refund_id)
                    and r.status not in ("failed", "canceled")]
            if live:
                raise Conflict(f"Stripe already has this refund ({live[0].id}, {live[0].status}): it was not sent "
                               "again.")
        refund = db.session.get(Refund, refund_id)
        if refund.amount_minor > refunds.refundable(refund.payment or refund.pack_purchase):
            raise Conflict("Retrying this refund would return more than is left of the payment: refund what is "
                           "left from the payment's page instead.")
        refund_states.retry(refund_id, now=now, actor=actor, note=note)
        payment = refund.payment
        # the flag said "a refund failed": it is being sent again
        if payment is not None and payment.flag == PaymentFlag.REFUND_FAILED:
            payment.flag, payment.flag_detail = None, ""
        db.session.commit()
    refunds.queue(refund_id)


def refund_in_full(payment_id: int, *, actor: audit.Actor, note: str | None, now: datetime) -> int:
    """Refund everything still refundable of a payment (what an amount mismatch gets instead of a retry), and free
    the time its booking still holds. Once per payment: a second request is refused."""
    note = _note(note)
    with tenancy.all_tenants():
        payment = _get(Payment, payment_id, "payment")
        if payment.status != PaymentStatus.MISMATCH:
            raise Conflict("Only an amount mismatch is refunded in full from the console; cancel a paid lesson "
                           "from the studio admin's booking page, which refunds it and tells the student.")
        amount = refunds.refundable(payment)
        if amount <= 0:
            raise Conflict("Nothing is left to refund on this payment.")
        try:
            refund_id = refunds.record(payment=payment, amount_minor=amount, reason="ops_refund",
                                       purpose_key=f"payment:{payment_id}:ops_full_refund", now=now, actor=actor,
                                       note=note).id
        except IntegrityError:
            db.session.rollback()
            raise Conflict("This payment was already refunded in full from the console.") from None
        booking = payment.booking
        if booking.status == BookingStatus.HELD:
            booking_states.release(booking.id, now=now, actor=actor, even_if_paying=True,
                                   note="Its payment was refunded in full by ops.")
        db.session.commit()
    refunds.queue(refund_id)
    return refund_id


def resolve(query: str, entity_id: int, *, actor: audit.Actor, reason: str | None, now: datetime) -> None:
    """Take an item off a reconciliation query's list, with the reason, until it changes again. A must-be-empty
    query's items are breaches of an invariant: they are fixed at their cause, never marked resolved."""
    reason = _note(reason)
    if query not in QUERIES:
        raise NotFound("No such reconciliation query.")
    if QUERIES[query].must_be_empty:
        raise Conflict("This list must always be empty: fix the item at its cause (see the runbook) instead of "
                       "marking it resolved.")
    entity = QUERIES[query].entity
    model = {"booking": Booking, "payment": Payment, "pack_purchase": PackPurchase, "refund": Refund,
             "event": WebhookEvent, "drift": DriftFinding}[entity]
    with tenancy.all_tenants():
        row = _get(model, entity_id, entity)
        earlier = db.session.scalar(select(Resolution).where(
            Resolution.query == query, Resolution.entity_type == entity, Resolution.entity_id == entity_id))
        if earlier is not None:
            changed = row.resolved_at if entity == "drift" else row.updated_at
            if entity == "drift" or (changed is not None and earlier.created_at >= changed):
                raise Conflict("This item was already marked resolved.")
            db.session.delete(earlier)  # it changed since: this resolution replaces the stale one
            db.session.flush()
        db.session.add(Resolution(query=query, entity_type=entity, entity_id=entity_id,
                                  studio_id=getattr(row, "studio_id", None), reason=reason, actor_id=actor.user_id,
                                  actor_label=actor.label, created_at=now))
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            raise Conflict("This item was already marked resolved.") from None
        if entity == "drift":
            row.resolved_at = now
        audit.record(actor=actor, action=f"ops.resolve.{query}", target_type=entity, target_id=entity_id,
                     studio_id=getattr(row, "studio_id", None), now=now, note=reason)
        db.session.commit()


def compare_with_stripe(*, actor: audit.Actor, now: datetime) -> None:
    """Queue the comparison with Stripe now (what the hourly job does), audited: it walks Stripe's lists and may
    take a while, so it runs on a worker, not in the request."""
    try:
        dispatch.enqueue("reconcile_with_stripe")
    except dispatch.DispatchError as error:
        raise Conflict(f"The job queue is unavailable ({error}): run `flask ops drift` on a server instead.") \
            from None
    audit.record(actor=actor, action="ops.drift.run", target_type="platform", target_id=None, studio_id=None,
                 now=now, note="Compared with Stripe on demand.")
    db.session.commit()


__all__ = ["compare_with_stripe", "refetch_pack", "refetch_session", "refund_in_full", "release_hold",
           "replay_event", "resolve", "retry_refund"]
