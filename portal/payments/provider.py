"""What the portal needs from a payment provider, in the portal's own terms (plain dataclasses, minor units)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class PaymentProviderError(Exception):
    """The provider refused the request (bad parameters, unknown object): retrying will not help."""


class TransientProviderError(PaymentProviderError):
    """The provider could not be reached or failed on its side: retry with backoff."""


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None
    status: str                 # open | complete | expired
    payment_status: str         # unpaid | paid | no_payment_required
    amount_total: int | None
    currency: str | None
    payment_intent_id: str | None
    client_reference_id: str | None
    metadata: dict
    expires_at: datetime | None
    created: int | None = None  # Unix seconds


@dataclass(frozen=True)
class ProviderRefund:
    id: str
    status: str                 # pending | succeeded | failed | canceled
    amount: int
    currency: str
    payment_intent_id: str | None
    metadata: dict = field(default_factory=dict)
    created: int | None = None  # Unix seconds


@dataclass(frozen=True)
class ProviderEvent:
    id: str
    type: str
    created: int
    object: dict


class PaymentProvider(Protocol):
    def create_checkout_session(self, *, amount_minor: int, currency: str, product_name: str, reference: str,
                                metadata: dict[str, str], customer_email: str | None, success_url: str,
                                cancel_url: str, expires_at: datetime, idempotency_key: str,
                                quantity: int = 1) -> CheckoutSession:
        """`amount_minor` is the price of one item; the session's total is `amount_minor` × `quantity`."""
        ...

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession: ...

    def expire_checkout_session(self, session_id: str) -> CheckoutSession: ...

    def create_refund(self, *, payment_intent_id: str, amount_minor: int | None, reason: str,
                      metadata: dict[str, str], idempotency_key: str) -> ProviderRefund: ...

    def retrieve_refund(self, refund_id: str) -> ProviderRefund: ...

    def list_events(self, *, types: list[str] | None = None, limit: int = 100, starting_after: str | None = None,
                    created_gte: int | None = None, created_lte: int | None = None) -> list[ProviderEvent]: ...

    def list_checkout_sessions(self, *, created_gte: int, created_lte: int, limit: int = 100,
                               starting_after: str | None = None) -> list[CheckoutSession]: ...

    def list_refunds(self, *, payment_intent_id: str, limit: int = 100) -> list[ProviderRefund]: ...
