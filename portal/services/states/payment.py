"""A payment's life: one Checkout Session for one booking, and what became of the money.

| transition     | from                                 | to                 | when                           |
|----------------|--------------------------------------|--------------------|--------------------------------|
| process        | pending                              | processing         | delayed payment method used    |
| settle         | pending, processing, expired, failed | paid               | Stripe says paid, as asked     |
| flag_mismatch  | pending, processing, expired, failed | mismatch           | paid, but not what we asked    |
| fail           | pending, processing                  | failed             | the delayed payment failed     |
| expire         | pending                              | expired            | hold ended, or session expired |
| refund_in_part | paid, partially_refunded, mismatch   | partially_refunded | part of it refunded            |
| refund_in_full | paid, partially_refunded, mismatch,  | refunded           | all of it refunded             |
|                | refunded                             |                    |                                |

`settle` and `flag_mismatch` start from `expired` and `failed` too: Stripe's word that money arrived is the truth,
whatever we had concluded before (a late payment is then confirmed or refunded by fulfilment).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Payment, PaymentFlag, PaymentStatus, Refund, RefundStatus
from portal.services import audit
from portal.services.states.machine import Machine, Transition

S = PaymentStatus
_OPEN_OR_ENDED = {S.PENDING, S.PROCESSING, S.EXPIRED, S.FAILED}
_REFUNDABLE = {S.PAID, S.PARTIALLY_REFUNDED, S.MISMATCH}

MACHINE = Machine("payment", Payment, {
    "process": Transition({S.PENDING}, S.PROCESSING, "marked as processing"),
    "settle": Transition(_OPEN_OR_ENDED, S.PAID, "marked as paid"),
    "flag_mismatch": Transition(_OPEN_OR_ENDED, S.MISMATCH, "marked as a mismatch"),
    "fail": Transition({S.PENDING, S.PROCESSING}, S.FAILED, "marked as failed"),
    "expire": Transition({S.PENDING}, S.EXPIRED, "expired"),
    "refund_in_part": Transition(_REFUNDABLE, S.PARTIALLY_REFUNDED, "refunded"),
    "refund_in_full": Transition(_REFUNDABLE | {S.REFUNDED}, S.REFUNDED, "refunded"),
})


def _received(amount_minor: int | None, currency: str | None, intent_id: str | None) -> dict:
    return {"amount_received_minor": amount_minor, "received_currency": (currency or "").lower() or None,
            "payment_intent_id": intent_id}


def process(payment_id: int, *, now: datetime) -> None:
    MACHINE.apply(payment_id, "process", now=now)


def settle(payment_id: int, *, now: datetime, amount_minor: int, currency: str, intent_id: str | None,
           flag: PaymentFlag | None = None, flag_detail: str = "") -> None:
    """The money arrived as asked. `flag` marks a settled payment for ops (e.g. refunded because the slot was
    gone)."""
    params = {**_received(amount_minor, currency, intent_id)}
    if flag is not None:
        params.update(flag=flag, flag_detail=flag_detail)
    _SETTLE[flag is not None].apply(payment_id, now=now, **params)


def settle_many(settled: list[tuple[int, int, str, str | None]], *, now: datetime) -> int:
    """`settle` (without a flag) for many payments at once, each `(payment id, amount, currency, intent id)`; returns
    how many were settled (fewer than asked: one moved meanwhile, and the caller rolls back)."""
    return _SETTLE[False].apply_many([{"row_id": payment_id, **_received(amount, currency, intent_id)}
                                      for payment_id, amount, currency, intent_id in settled], now=now)


_c = Payment.__table__.c
#: `settle`, built once (a worker settles a payment on every paid Checkout), without and with a flag.
_SETTLE = {flagged: MACHINE.prepare("settle", values={
    **{name: MACHINE.param(name, name) for name in ("amount_received_minor", "received_currency",
                                                    "payment_intent_id")},
    "paid_at": func.coalesce(_c.paid_at, MACHINE.param("now", "paid_at")),
    **({"flag": MACHINE.param("flag", "flag"), "flag_detail": MACHINE.param("flag_detail", "flag_detail")}
       if flagged else {})}) for flagged in (False, True)}


def flag_mismatch(payment_id: int, *, now: datetime, amount_minor: int | None, currency: str | None,
                  intent_id: str | None, detail: str) -> None:
    """Paid, but not what the booking costs: never retried, never confirmed; a person must decide."""
    MACHINE.apply(payment_id, "flag_mismatch", now=now, actor=audit.SYSTEM, note=detail,
                  values={**_received(amount_minor, currency, intent_id), "paid_at": now,
                          "flag": PaymentFlag.AMOUNT_MISMATCH, "flag_detail": detail})


def fail(payment_id: int, *, now: datetime, error: str = "") -> None:
    MACHINE.apply(payment_id, "fail", now=now, values={"last_error": error[:2000]} if error else None)


def expire(payment_id: int, *, now: datetime, current: PaymentStatus | None = None) -> None:
    MACHINE.apply(payment_id, "expire", now=now, current=current)


def record_refunds(payment_id: int, *, now: datetime, actor: audit.Actor | None = None, note: str = "") -> int:
    """Bring the payment in line with its succeeded refunds; returns the amount refunded so far."""
    refunded = db.session.scalar(select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
        Refund.payment_id == payment_id, Refund.status == RefundStatus.SUCCEEDED)) or 0
    if not refunded:
        return 0
    payment = db.session.get(Payment, payment_id)
    name = "refund_in_full" if refunded >= payment.paid_minor else "refund_in_part"
    MACHINE.apply(payment_id, name, now=now, actor=actor, note=note, values={"amount_refunded_minor": refunded},
                  after={"amount_refunded_minor": refunded})
    db.session.refresh(payment)
    return refunded
