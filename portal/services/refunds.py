"""Refunds: recorded first (one row per purpose, so nothing is refunded twice), then sent to the provider by a
job that retries passing failures and, after its last attempt, leaves the refund failed and flagged for ops."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from portal import dispatch, metrics
from portal.extensions import db
from portal.models import Payment, PaymentFlag, PaymentStatus, Refund, RefundStatus
from portal.payments import PaymentProvider, PaymentProviderError, TransientProviderError
from portal.services.errors import DomainError

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """The provider could not be reached; try the refund again later."""


def request_refund(*, payment: Payment, amount_minor: int, reason: str, purpose_key: str) -> Refund | None:
    """Record a refund to send and queue it. Returns None when `amount_minor` is zero. Idempotent per purpose."""
    if amount_minor <= 0:
        return None
    if amount_minor > (payment.amount_received_minor or payment.amount_minor) - payment.amount_refunded_minor:
        raise DomainError("A refund cannot exceed what was paid.", code="refund_too_large")
    refund = Refund(studio_id=payment.studio_id, payment_id=payment.id, amount_minor=amount_minor,
                    currency=payment.currency, reason=reason, purpose_key=purpose_key)
    db.session.add(refund)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        refund = db.session.scalar(db.select(Refund).where(Refund.purpose_key == purpose_key))
    _queue(refund.id)
    return refund


def _queue(refund_id: int) -> None:
    try:
        dispatch.enqueue("process_refund", refund_id)
    except dispatch.DispatchError as error:  # the refund row waits; the ops console shows it pending
        log.warning("refund %s recorded but not queued: %s", refund_id, error)


def send(refund_id: int, *, provider: PaymentProvider, now: datetime, max_attempts: int) -> str:
    """Send one recorded refund. Returns its outcome; raises `RetryLater` while attempts remain."""
    refund = db.session.get(Refund, refund_id)
    if refund is None or refund.status != RefundStatus.PENDING or refund.provider_refund_id:
        return "done"
    payment = refund.payment
    refund.attempts += 1
    db.session.commit()
    try:
        result = provider.create_refund(payment_intent_id=payment.payment_intent_id, amount_minor=refund.amount_minor,
                                        reason=refund.reason,
                                        metadata={"refund_id": str(refund.id), "payment_id": str(payment.id)},
                                        idempotency_key=f"refund-{refund.id}")
    except TransientProviderError as error:
        return _failed(refund, payment, str(error), final=refund.attempts >= max_attempts)
    except PaymentProviderError as error:
        return _failed(refund, payment, str(error), final=True)
    record_result(payment, refund, result.id, result.status)
    return refund.status.value


def _failed(refund: Refund, payment: Payment, error: str, *, final: bool) -> str:
    refund.last_error = error[:2000]
    if not final:
        db.session.commit()
        metrics.refund_operations.labels("retry").inc()
        raise RetryLater(error)
    refund.status = RefundStatus.FAILED
    payment.raise_flag(PaymentFlag.REFUND_FAILED, f"refund #{refund.id} of {refund.amount_minor} failed: {error}")
    db.session.commit()
    metrics.refund_operations.labels("failed").inc()
    log.error("refund %s failed for good: %s", refund.id, error)
    return "failed"


def record_result(payment: Payment, refund: Refund, provider_id: str, status: str) -> None:
    """Apply the provider's word on a refund (from its answer or a later `charge.refunded` re-fetch)."""
    refund.provider_refund_id = provider_id
    if status == "succeeded" and refund.status != RefundStatus.SUCCEEDED:
        refund.status = RefundStatus.SUCCEEDED
        metrics.refund_operations.labels("succeeded").inc()
    elif status in ("failed", "canceled") and refund.status != RefundStatus.FAILED:
        refund.status = RefundStatus.FAILED
        payment.raise_flag(PaymentFlag.REFUND_FAILED, f"refund {provider_id} {status}")
        metrics.refund_operations.labels("failed").inc()
    elif status == "pending":
        metrics.refund_operations.labels("pending").inc()
    _recompute(payment)
    db.session.commit()


def _recompute(payment: Payment) -> None:
    refunded = sum(r.amount_minor for r in payment.refunds if r.status == RefundStatus.SUCCEEDED)
    payment.amount_refunded_minor = refunded
    if refunded and refunded >= (payment.amount_received_minor or payment.amount_minor):
        payment.status = PaymentStatus.REFUNDED
    elif refunded:
        payment.status = PaymentStatus.PARTIALLY_REFUNDED


def refresh_pending(payment: Payment, provider: PaymentProvider) -> None:
    """Re-fetch refunds the provider reported as pending (after a `charge.refunded` signal)."""
    for refund in payment.refunds:
        if refund.provider_refund_id and refund.status == RefundStatus.PENDING:
            fresh = provider.retrieve_refund(refund.provider_refund_id)
            record_result(payment, refund, fresh.id, fresh.status)
