"""Payments: the provider interface, its Stripe implementation and webhook signature checks.

Only `portal.payments.stripe_provider` imports the `stripe` SDK. Everything else talks to
`PaymentProvider` (see `provider.py`), obtained with `get_provider()`.
"""
from flask import Flask, current_app

from portal.payments.provider import (
    CheckoutSession,
    PaymentProvider,
    PaymentProviderError,
    ProviderRefund,
    TransientProviderError,
)


def init_app(app: Flask) -> None:
    from portal.payments.stripe_provider import StripeProvider

    settings = app.config["PORTAL_SETTINGS"]
    app.extensions["payment_provider"] = StripeProvider(settings.stripe_secret_key, settings.stripe_api_base)


def get_provider() -> PaymentProvider:
    return current_app.extensions["payment_provider"]


__all__ = ["CheckoutSession", "PaymentProvider", "PaymentProviderError", "ProviderRefund", "TransientProviderError",
           "get_provider", "init_app"]
