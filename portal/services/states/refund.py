"""A refund's life: recorded `pending` with the change that owes it, then Stripe's verdict.

| transition | from    | to        | when                                                           |
|------------|---------|-----------|----------------------------------------------------------------|
| succeed    | pending | succeeded | Stripe says the money went back                                |
|            | failed  | succeeded | Stripe says so after all (a request we gave up on got through) |
| fail       | pending | failed    | Stripe refused it, or it failed after its last attempt         |
| retry      | failed  | pending   | a person asks to try again (the failure's cause was fixed)      |
"""
from __future__ import annotations

from datetime import datetime

from portal.models import Refund, RefundStatus
from portal.services import audit
from portal.services.states.machine import Machine, Transition

S = RefundStatus

MACHINE = Machine("refund", Refund, {
    "succeed": Transition({S.PENDING, S.FAILED}, S.SUCCEEDED, "marked as succeeded"),
    "fail": Transition({S.PENDING}, S.FAILED, "marked as failed"),
    "retry": Transition({S.FAILED}, S.PENDING, "retried"),
})


def succeed(refund_id: int, *, now: datetime, provider_refund_id: str) -> None:
    MACHINE.apply(refund_id, "succeed", now=now, values={"provider_refund_id": provider_refund_id})


def fail(refund_id: int, *, now: datetime, error: str, provider_refund_id: str | None = None) -> None:
    values = {"last_error": error[:2000]}
    if provider_refund_id:
        values["provider_refund_id"] = provider_refund_id
    MACHINE.apply(refund_id, "fail", now=now, values=values)


def retry(refund_id: int, *, now: datetime, actor: audit.Actor, note: str) -> None:
    MACHINE.apply(refund_id, "retry", now=now, actor=actor, note=note,
                  values={"attempts": 0, "retries": Refund.retries + 1, "provider_refund_id": None})
