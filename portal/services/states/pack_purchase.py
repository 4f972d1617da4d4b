"""A lesson pack bought through Checkout: `pending` → `paid` (its credits join the ledger in the same
transaction), `pending` → `expired`, or `pending`/`expired` → `mismatch` when Stripe reports another amount.

| transition | from             | to       | who                                                     |
|------------|------------------|----------|---------------------------------------------------------|
| settle     | pending, expired | paid     | payment verified (a late payment of an expired session too) |
| expire     | pending          | expired  | Checkout expired or the student left it                |
| flag       | pending, expired | mismatch | Stripe's amount or currency differ: ops decide          |
"""
from __future__ import annotations

from datetime import datetime

from portal.models import PackPurchase, PackPurchaseStatus
from portal.services import audit
from portal.services.states.machine import Machine, Transition

PENDING, PAID, EXPIRED, MISMATCH = (PackPurchaseStatus.PENDING, PackPurchaseStatus.PAID, PackPurchaseStatus.EXPIRED,
                                    PackPurchaseStatus.MISMATCH)

MACHINE = Machine("pack purchase", PackPurchase, {
    "settle": Transition({PENDING, EXPIRED}, PAID, "settled"),
    "expire": Transition({PENDING}, EXPIRED, "expired"),
    "flag": Transition({PENDING, EXPIRED}, MISMATCH, "flagged"),
})


def settle(purchase_id: int, *, now: datetime, intent_id: str | None) -> None:
    MACHINE.apply(purchase_id, "settle", now=now, actor=audit.SYSTEM, note="Paid through Checkout.",
                  values={"paid_at": now, "payment_intent_id": intent_id})


def expire(purchase_id: int, *, now: datetime) -> None:
    MACHINE.apply(purchase_id, "expire", now=now)


def flag(purchase_id: int, *, now: datetime, detail: str) -> None:
    MACHINE.apply(purchase_id, "flag", now=now, actor=audit.SYSTEM, note=detail[:500])
