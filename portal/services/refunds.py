"""Refunds: recorded in the same transaction as the change that owes them (one row per purpose, so nothing is
refunded twice), of a booking's payment or of a lesson pack bought through Checkout (its "source"), then sent
to the provider by a job that retries passing failures and, after its last attempt, leaves the refund failed and
flagged for ops. A sweep re-queues refunds that were recorded but never sent."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal import dispatch, metrics, tenancy
from portal.extensions import db
from portal.models import PackPurchase, Payment, PaymentFlag, Refund, RefundStatus
from portal.parsing import whole_number
from portal.payments import PaymentProvider, PaymentProviderError, TransientProviderError
from portal.services import audit
from portal.services.errors import InvalidInput
from portal.services.states import payment as payment_states
from portal.services.states import refund as refund_states

log = logging.getLogger(__name__)

#: A pending refund not sent after this long was lost by the queue: the sweep queues it again.
STALE_AFTER = timedelta(minutes=10)


class RetryLater(Exception):
    """The provider could not be reached; try the refund again later."""


Source = Payment | PackPurchase


def _of(source: Source):
    """The refunds of a source, as a condition."""
    if isinstance(source, PackPurchase):
        return Refund.pack_purchase_id == source.id
    return Refund.payment_id == source.id


def _link(source: Source) -> dict[str, int]:
    return {"pack_purchase_id" if isinstance(source, PackPurchase) else "payment_id": source.id}


def refundable(source: Source) -> int:
    """What can still be refunded: received minus refunds succeeded or under way."""
    committed = db.session.scalar(select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
        _of(source), Refund.status != RefundStatus.FAILED)) or 0
    return source.paid_minor - committed


def record(*, payment: Source, amount_minor: int, reason: str, purpose_key: str, now: datetime,
           actor: audit.Actor | None = None, note: str = "") -> Refund:
    """Add a pending refund of `payment` (a booking's payment or a pack purchase) to the session; the caller commits
    it with the change that owes it, then `queue`s it. With an `actor`, the refund is audited in the same
    transaction."""
    if amount_minor <= 0:
        raise InvalidInput("A refund must be a positive amount.", code="refund_invalid", field="amount")
    if amount_minor > refundable(payment):
        raise InvalidInput("A refund cannot exceed what was paid.", code="refund_too_large", field="amount")
    refund = Refund(studio_id=payment.studio_id, amount_minor=amount_minor, currency=payment.currency, reason=reason,
                    purpose_key=purpose_key, created_at=now, updated_at=now, **_link(payment))
    db.session.add(refund)
    db.session.flush()
    if actor is not None:
        audit.record(actor=actor, action="refund.create", target_type="refund", target_id=refund.id,
                     studio_id=payment.studio_id, now=now, note=note,
                     after={"status": refund.status.value, "amount_minor": amount_minor, "currency": refund.currency,
                            **_link(payment), "reason": reason})
    return refund


def queue(refund_id: int) -> None:
    try:
        dispatch.enqueue("process_refund", refund_id)
    except dispatch.DispatchError as error:  # the row waits; the stale-refund sweep queues it again
        log.warning("refund %s recorded but not queued: %s", refund_id, error)


def provider_metadata(refund: Refund) -> dict[str, str]:
    """What Stripe keeps on a refund we send: our row and which attempt of it (a retry by ops is a new attempt with
    a new idempotency key), so `reconcile` can tell the live attempt from a superseded one."""
    source = ({"pack_purchase_id": str(refund.pack_purchase_id)} if refund.pack_purchase_id is not None else
              {"payment_id": str(refund.payment_id)})
    return {"refund_id": str(refund.id), **source, "attempt": str(refund.retries)}


def _own_attempt(remote) -> tuple[str, int]:
    metadata = remote.metadata or {}
    return str(metadata.get("refund_id", "")), whole_number(str(metadata.get("attempt", "0"))) or 0


def send(refund_id: int, *, provider: PaymentProvider, now: datetime, max_attempts: int) -> str:
    """Send one recorded refund. Returns its outcome; raises `RetryLater` while attempts remain."""
    refund = db.session.get(Refund, refund_id)
    if refund is None or refund.status != RefundStatus.PENDING or refund.provider_refund_id:
        return "done"
    refund.attempts += 1
    refund.updated_at = now
    call = dict(payment_intent_id=refund.payment_intent_id, amount_minor=refund.amount_minor,
                reason=refund.reason, metadata=provider_metadata(refund),
                idempotency_key=refund.idempotency_key)
    attempts = refund.attempts
    db.session.commit()  # no transaction (on SQLite: no write lock) is held while Stripe answers
    try:
        result = provider.create_refund(**call)
    except TransientProviderError as error:
        return _failed(refund_id, str(error), now=now, final=attempts >= max_attempts)
    except PaymentProviderError as error:
        return _failed(refund_id, str(error), now=now, final=True)
    return record_result(refund_id, result.id, result.status, now=now)


def _failed(refund_id: int, error: str, *, now: datetime, final: bool) -> str:
    if not final:
        db.session.execute(update(Refund).where(Refund.id == refund_id).values(last_error=error[:2000]))
        db.session.commit()
        metrics.count_refund("retry")
        raise RetryLater(error)
    refund = db.session.get(Refund, refund_id)
    refund_states.fail(refund_id, now=now, error=error)
    if refund.payment is not None:  # a pack's failed refund is on the ops console by its own status
        refund.payment.raise_flag(PaymentFlag.REFUND_FAILED,
                                  f"refund #{refund.id} of {refund.amount_minor} failed: {error}")
    db.session.commit()
    metrics.count_refund("failed")
    log.error("refund %s failed for good: %s", refund_id, error)
    return "failed"


def record_result(refund_id: int, provider_id: str, status: str, *, now: datetime) -> str:
    """Apply the provider's word on a refund (from its answer or a later re-fetch); returns the refund's status.
    A refund we marked failed (its request timed out, say) that Stripe reports succeeded did go back: it becomes
    succeeded and its payment's refund-failed flag is lowered."""
    refund = db.session.get(Refund, refund_id)
    if status == "succeeded" and refund.status in (RefundStatus.PENDING, RefundStatus.FAILED):
        was_failed = refund.status == RefundStatus.FAILED
        refund_states.succeed(refund_id, now=now, provider_refund_id=provider_id)
        metrics.count_refund("succeeded")
        db.session.refresh(refund)
        payment = refund.payment
        if (was_failed and payment is not None and payment.flag == PaymentFlag.REFUND_FAILED
                and not _any_failed(payment.id)):
            payment.flag, payment.flag_detail = None, ""
    elif status in ("failed", "canceled") and refund.status == RefundStatus.PENDING:
        refund_states.fail(refund_id, now=now, error=f"Stripe reports the refund {status}",
                           provider_refund_id=provider_id)
        if refund.payment is not None:
            refund.payment.raise_flag(PaymentFlag.REFUND_FAILED, f"refund {provider_id} {status}")
        metrics.count_refund("failed")
    elif status == "pending" and refund.status == RefundStatus.PENDING:
        refund.provider_refund_id = provider_id
        metrics.count_refund("pending")
    if refund.payment_id is not None:
        payment_states.record_refunds(refund.payment_id, now=now)
    db.session.commit()
    return db.session.get(Refund, refund_id).status.value


def _any_failed(payment_id: int) -> bool:
    return db.session.scalar(select(func.count(Refund.id)).where(
        Refund.payment_id == payment_id, Refund.status == RefundStatus.FAILED)) > 0


EXTERNAL = "external"


def reconcile(payment_id: int | None, provider: PaymentProvider, *, now: datetime, remote: list | None = None,
              purchase_id: int | None = None) -> list[int]:
    """Bring a payment's (or, with `purchase_id`, a pack purchase's) refunds in line with Stripe's list for its
    PaymentIntent (`remote`, when the caller already fetched it): ours get Stripe's latest word, and a refund the
    portal never made (one issued in the Stripe Dashboard, say) is recorded with reason `external` and audited, so
    the money is accounted for and ops see it. Stripe's refunds carry our row and attempt in their metadata; an
    attempt that a retry superseded (it failed, or the retry would have been refused) is ours, not external, and
    changes nothing. Returns the new external rows' ids."""
    model, source_id = (Payment, payment_id) if purchase_id is None else (PackPurchase, purchase_id)
    source = db.session.get(model, source_id)
    intent = source.payment_intent_id
    ours = {r.provider_refund_id: r.id for r in source.refunds if r.provider_refund_id}
    rows = {str(r.id): (r.id, r.retries) for r in source.refunds}
    db.session.commit()  # no transaction while Stripe answers
    if not intent:
        return []
    if remote is None:
        remote = provider.list_refunds(payment_intent_id=intent)
    added = []
    for refund in remote:
        own_id = ours.get(refund.id)
        if own_id is None:
            row_id, attempt = _own_attempt(refund)
            if row_id in rows:
                own_id, live_attempt = rows[row_id]
                if attempt != live_attempt:
                    if refund.status not in ("failed", "canceled"):
                        log.error("refund %s: Stripe refund %s of superseded attempt %s is %s", own_id, refund.id,
                                  attempt, refund.status)
                    continue
        if own_id is not None:
            record_result(own_id, refund.id, refund.status, now=now)
            continue
        source = db.session.get(model, source_id)
        row = Refund(studio_id=source.studio_id, provider_refund_id=refund.id, **_link(source),
                     purpose_key=f"{EXTERNAL}:{refund.id}", amount_minor=refund.amount,
                     currency=(refund.currency or source.currency).lower(), reason=EXTERNAL,
                     status=_EXTERNAL_STATUS.get(refund.status, RefundStatus.PENDING), created_at=now, updated_at=now)
        db.session.add(row)
        try:
            db.session.flush()
        except IntegrityError:  # recorded meanwhile by a concurrent event
            db.session.rollback()
            continue
        audit.record(actor=audit.SYSTEM, action="refund.external", target_type="refund", target_id=row.id,
                     studio_id=source.studio_id, now=now,
                     note="Refunded outside the portal (for example in the Stripe Dashboard).",
                     after={"amount_minor": refund.amount, "currency": row.currency, "status": row.status.value,
                            "provider_refund_id": refund.id})
        if payment_id is not None:
            payment_states.record_refunds(payment_id, now=now)
        db.session.commit()
        metrics.count_refund("external")
        added.append(row.id)
    return added


_EXTERNAL_STATUS = {"succeeded": RefundStatus.SUCCEEDED, "failed": RefundStatus.FAILED,
                    "canceled": RefundStatus.FAILED, "pending": RefundStatus.PENDING}


def requeue_stale(*, now: datetime, stale_after: timedelta = STALE_AFTER, limit: int = 200) -> int:
    """Queue again refunds recorded but never sent (a queue outage, a worker that died)."""
    with tenancy.all_tenants():
        stale = db.session.scalars(select(Refund.id).where(
            Refund.status == RefundStatus.PENDING, Refund.provider_refund_id.is_(None),
            Refund.updated_at < now - stale_after).order_by(Refund.id).limit(limit)).all()
        for refund_id in stale:
            db.session.execute(update(Refund).where(Refund.id == refund_id).values(updated_at=now))
            db.session.commit()
            queue(refund_id)
    return len(stale)
