"""The Stripe provider against the stand-in, through the real `stripe` SDK."""
from __future__ import annotations

from datetime import timedelta

import pytest

from portal.clock import utcnow
from portal.payments import PaymentProviderError, TransientProviderError, get_provider
from portal.payments.stripe_provider import StripeProvider
from tests.payments.helpers import control, pay


def _create(provider, **overrides):
    params = dict(amount_minor=6500, currency="usd", product_name="60-minute lesson", reference="booking-7",
                  metadata={"booking_id": "7"}, customer_email="student@example.com",
                  success_url="http://portal.test/ok?session_id={CHECKOUT_SESSION_ID}",
                  cancel_url="http://portal.test/cancel",
                  expires_at=utcnow() + timedelta(minutes=31), idempotency_key="booking-7-checkout")
    params.update(overrides)
    return provider.create_checkout_session(**params)


def test_create_retrieve_and_expire_a_checkout_session(app_ctx, stripe_standin):
    provider = get_provider()
    session = _create(provider)
    assert session.id.startswith("cs_") and session.url.startswith(stripe_standin.base_url)
    assert (session.status, session.payment_status, session.amount_total) == ("open", "unpaid", 6500)
    again = provider.retrieve_checkout_session(session.id)
    assert again.metadata == {"booking_id": "7"} and again.client_reference_id == "booking-7"
    assert provider.expire_checkout_session(session.id).status == "expired"
    with pytest.raises(PaymentProviderError):
        provider.expire_checkout_session(session.id)  # only open sessions expire


def test_idempotency_key_returns_the_same_session(app_ctx, stripe_standin):
    provider = get_provider()
    expires_at = utcnow() + timedelta(minutes=31)  # once: calls a second apart would send other parameters
    assert _create(provider, expires_at=expires_at).id == _create(provider, expires_at=expires_at).id
    assert (_create(provider, idempotency_key="other", expires_at=expires_at).id
            != _create(provider, expires_at=expires_at).id)


def test_invalid_requests_are_permanent_errors(app_ctx, stripe_standin):
    provider = get_provider()
    with pytest.raises(PaymentProviderError) as too_soon:
        _create(provider, expires_at=utcnow() + timedelta(minutes=5), idempotency_key="x1")
    assert not isinstance(too_soon.value, TransientProviderError)
    with pytest.raises(PaymentProviderError):
        provider.retrieve_checkout_session("cs_test_does_not_exist")


def test_unreachable_provider_is_a_transient_error():
    provider = StripeProvider("sk_test_x", "http://127.0.0.1:1")
    with pytest.raises(TransientProviderError):
        provider.retrieve_checkout_session("cs_test_anything")


def test_missing_key_is_a_clear_error():
    with pytest.raises(PaymentProviderError, match="STRIPE_SECRET_KEY"):
        StripeProvider("", "http://127.0.0.1:1").retrieve_checkout_session("cs_x")


def test_paid_session_then_full_and_partial_refunds(app_ctx, stripe_standin):
    provider = get_provider()
    session = _create(provider)
    pay(stripe_standin, session.id)
    paid = provider.retrieve_checkout_session(session.id)
    assert paid.payment_status == "paid" and paid.payment_intent_id.startswith("pi_")
    partial = provider.create_refund(payment_intent_id=paid.payment_intent_id, amount_minor=1500,
                                     reason="requested_by_customer", metadata={}, idempotency_key="r1")
    assert (partial.amount, partial.status) == (1500, "succeeded")
    assert provider.retrieve_refund(partial.id).payment_intent_id == paid.payment_intent_id
    with pytest.raises(PaymentProviderError):  # more than what is left
        provider.create_refund(payment_intent_id=paid.payment_intent_id, amount_minor=6000, reason="x",
                               metadata={}, idempotency_key="r2")
    rest = provider.create_refund(payment_intent_id=paid.payment_intent_id, amount_minor=None, reason="x",
                                  metadata={}, idempotency_key="r3")
    assert rest.amount == 5000


def test_refund_failures_map_to_transient_or_failed(app_ctx, stripe_standin):
    provider = get_provider()
    session = _create(provider)
    pay(stripe_standin, session.id)
    intent = provider.retrieve_checkout_session(session.id).payment_intent_id
    control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "500"})
    with pytest.raises(TransientProviderError):
        provider.create_refund(payment_intent_id=intent, amount_minor=100, reason="x", metadata={},
                               idempotency_key="f1")
    control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "failed"})
    assert provider.create_refund(payment_intent_id=intent, amount_minor=100, reason="x", metadata={},
                                  idempotency_key="f2").status == "failed"


def test_event_listing_with_type_filter(app_ctx, stripe_standin):
    provider = get_provider()
    first, second = _create(provider, idempotency_key="a"), _create(provider, idempotency_key="b")
    pay(stripe_standin, first.id)
    provider.expire_checkout_session(second.id)
    completed = provider.list_events(types=["checkout.session.completed"])
    assert [e.object["id"] for e in completed] == [first.id]
    expired = provider.list_events(types=["checkout.session.expired"])
    assert [e.object["id"] for e in expired] == [second.id]
    everything = provider.list_events(limit=3)
    assert len(everything) == 3
    older = provider.list_events(limit=100, starting_after=everything[-1].id)
    assert everything[-1].id not in {e.id for e in older}


def test_the_environments_proxy_is_read_once_when_the_provider_is_built(monkeypatch, stripe_standin):
    """A proxy the environment names for Stripe's address is used, as `requests` would; it is read when the provider
    is built, not again on every call (that costs a worker CPU on every event)."""
    from tests.conftest import STRIPE_API_KEY

    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")  # nothing listens there
    through_proxy = StripeProvider(STRIPE_API_KEY, stripe_standin.base_url)
    monkeypatch.delenv("HTTP_PROXY")
    with pytest.raises(TransientProviderError):
        through_proxy.retrieve_checkout_session("cs_test_anything")
    direct = StripeProvider(STRIPE_API_KEY, stripe_standin.base_url)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    with pytest.raises(PaymentProviderError) as unknown:
        direct.retrieve_checkout_session("cs_test_does_not_exist")
    assert not isinstance(unknown.value, TransientProviderError)  # the stand-in answered: no such session
