"""The Stripe implementation of `PaymentProvider`, through the official SDK (`StripeClient`).

`STRIPE_API_BASE` points the SDK at another base address (the Stripe stand-in in development and tests);
there is no other difference between talking to Stripe and to the stand-in.
"""
from __future__ import annotations

from datetime import datetime, timezone

import requests
import stripe

from portal import metrics, tracing
from portal.payments.provider import (
    CheckoutSession,
    PaymentProviderError,
    ProviderEvent,
    ProviderRefund,
    TransientProviderError,
)

#: A request that takes longer is treated as a passing failure (the job retries; a student sees a clear error).
STRIPE_TIMEOUT_SEC = 15
_TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)


def _translate(error: stripe.StripeError) -> PaymentProviderError:
    message = getattr(error, "user_message", None) or str(error) or type(error).__name__
    if isinstance(error, _TRANSIENT) or (getattr(error, "http_status", None) or 0) >= 500:
        return TransientProviderError(message)
    return PaymentProviderError(message)


def _field(obj, name, default=None):
    try:
        return obj[name]
    except (KeyError, TypeError):
        return default


def _plain(obj) -> dict:
    if obj is None:
        return {}
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _session(obj) -> CheckoutSession:
    intent = _field(obj, "payment_intent")
    expires = _field(obj, "expires_at")
    return CheckoutSession(
        id=obj["id"], url=_field(obj, "url"), status=_field(obj, "status", "open"),
        payment_status=_field(obj, "payment_status", "unpaid"), amount_total=_field(obj, "amount_total"),
        currency=(_field(obj, "currency") or None), client_reference_id=_field(obj, "client_reference_id"),
        payment_intent_id=intent if isinstance(intent, str) or intent is None else intent["id"],
        metadata=_plain(_field(obj, "metadata")),
        expires_at=datetime.fromtimestamp(expires, timezone.utc) if expires else None,
        created=_field(obj, "created"),
    )


def _refund(obj) -> ProviderRefund:
    intent = _field(obj, "payment_intent")
    return ProviderRefund(id=obj["id"], status=_field(obj, "status", "pending"), amount=obj["amount"],
                          currency=obj["currency"],
                          payment_intent_id=intent if isinstance(intent, str) or intent is None else intent["id"],
                          metadata=_plain(_field(obj, "metadata")), created=_field(obj, "created"))


class _SessionPerThread(stripe.RequestsClient):
    """The SDK's `requests` client, with each thread's session told not to consult the environment.

    Left to itself, `requests` reads every proxy variable of the environment (and looks for `~/.netrc`) again on
    every call: about a millisecond of CPU per call to Stripe, on every webhook a worker processes. The proxies the
    environment names for Stripe's address are read once instead, when the provider is built, and passed on every
    call (the CA bundle was never the environment's: the SDK passes its own). Connections stay kept alive."""

    def _request_internal(self, *args, **kwargs):
        if getattr(self._thread_local, "session", None) is None:
            session = requests.Session()
            session.trust_env = False
            self._thread_local.session = session
        return super()._request_internal(*args, **kwargs)


def _environment_proxies(url: str) -> dict[str, str] | None:
    """The proxies `HTTP(S)_PROXY`/`ALL_PROXY` name for `url`, unless `NO_PROXY` exempts it; None without any."""
    found = requests.utils.get_environ_proxies(url)
    return {scheme: proxy for scheme, proxy in found.items() if scheme != "no"} or None


class StripeProvider:
    def __init__(self, api_key: str, api_base: str = ""):
        base = {"api": api_base, "connect": api_base, "files": api_base, "meter_events": api_base} if api_base else None
        # Retries belong to our jobs (with backoff and a dead end on the ops console), not hidden in the SDK.
        # The key may be empty on a misconfigured deployment: fail on first use with a clear error, not at start-up.
        http = _SessionPerThread(timeout=STRIPE_TIMEOUT_SEC,
                                 proxy=_environment_proxies(api_base or stripe.DEFAULT_API_BASE))
        self._client = stripe.StripeClient(api_key or "sk_unset", base_addresses=base, max_network_retries=0,
                                           http_client=http)
        self._configured = bool(api_key)

    def _call(self, operation: str, fn, *args, **kwargs):
        if not self._configured:
            metrics.stripe_api_errors.labels(operation).inc()
            raise PaymentProviderError("payments are not configured (STRIPE_SECRET_KEY is empty)")
        try:
            with tracing.span(f"stripe {operation}", **{"stripe.operation": operation}):
                return fn(*args, **kwargs)
        except stripe.StripeError as error:
            metrics.stripe_api_errors.labels(operation).inc()
            raise _translate(error) from error

    def create_checkout_session(self, *, amount_minor, currency, product_name, reference, metadata, customer_email,
                                success_url, cancel_url, expires_at, idempotency_key, quantity=1) -> CheckoutSession:
        params = {
            "mode": "payment",
            "line_items": [{"quantity": quantity, "price_data": {"currency": currency, "unit_amount": amount_minor,
                                                          "product_data": {"name": product_name}}}],
            "client_reference_id": reference,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": int(expires_at.timestamp()),
        }
        if customer_email:
            params["customer_email"] = customer_email
        obj = self._call("checkout.sessions.create", self._client.v1.checkout.sessions.create, params=params,
                         options={"idempotency_key": idempotency_key})
        return _session(obj)

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        return _session(self._call("checkout.sessions.retrieve", self._client.v1.checkout.sessions.retrieve,
                                   session_id))

    def expire_checkout_session(self, session_id: str) -> CheckoutSession:
        return _session(self._call("checkout.sessions.expire", self._client.v1.checkout.sessions.expire, session_id))

    def create_refund(self, *, payment_intent_id, amount_minor, reason, metadata, idempotency_key) -> ProviderRefund:
        params = {"payment_intent": payment_intent_id, "metadata": metadata}
        if amount_minor is not None:
            params["amount"] = amount_minor
        if reason in {"duplicate", "fraudulent", "requested_by_customer"}:
            params["reason"] = reason
        obj = self._call("refunds.create", self._client.v1.refunds.create, params=params,
                         options={"idempotency_key": idempotency_key})
        return _refund(obj)

    def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        return _refund(self._call("refunds.retrieve", self._client.v1.refunds.retrieve, refund_id))

    def list_events(self, *, types=None, limit=100, starting_after=None, created_gte=None,
                    created_lte=None) -> list[ProviderEvent]:
        params: dict = {"limit": limit}
        if types:
            params["types"] = types
        if starting_after:
            params["starting_after"] = starting_after
        created = _created(created_gte, created_lte)
        if created:
            params["created"] = created
        page = self._call("events.list", self._client.v1.events.list, params=params)
        return [ProviderEvent(id=e["id"], type=e["type"], created=e["created"], object=_plain(e["data"]["object"]))
                for e in page.data]

    def list_checkout_sessions(self, *, created_gte, created_lte, limit=100,
                               starting_after=None) -> list[CheckoutSession]:
        params: dict = {"limit": limit, "created": _created(created_gte, created_lte)}
        if starting_after:
            params["starting_after"] = starting_after
        page = self._call("checkout.sessions.list", self._client.v1.checkout.sessions.list, params=params)
        return [_session(obj) for obj in page.data]

    def list_refunds(self, *, payment_intent_id, limit=100) -> list[ProviderRefund]:
        page = self._call("refunds.list", self._client.v1.refunds.list,
                          params={"payment_intent": payment_intent_id, "limit": limit})
        return [_refund(obj) for obj in page.data]


def _created(gte: int | None, lte: int | None) -> dict:
    return {key: value for key, value in (("gte", gte), ("lte", lte)) if value is not None}
