"""Prometheus metrics: HTTP histograms from prometheus-flask-exporter plus the portal's own series.

The portal's counters live at module level in `REGISTRY`, so services, jobs and web code in one process share
them; each app's exporter registry (one per app, so tests can build many apps) includes `REGISTRY` and a
collector for gauges read from the database at scrape time. Names follow the seeds exactly.
"""
from __future__ import annotations

import functools
import hmac

from flask import Flask, abort, current_app, request
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_flask_exporter import NO_PREFIX, PrometheusMetrics

from portal.payments.signatures import SIGNATURE_CODES

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOK_EVENT_STATUSES = ("received", "processed", "error", "retry", "duplicate", "ignored", "dead")
webhook_events = Counter("webhook_events", "Stripe webhook events by outcome", ["status"], registry=REGISTRY)
signature_valid = Counter("melody_webhook_signature_valid", "Webhook signatures verified", registry=REGISTRY)
signature_invalid = Counter("melody_webhook_signature_invalid", "Webhook signatures that match no secret",
                            registry=REGISTRY)
signature_stale = Counter("melody_webhook_signature_stale", "Webhook signatures outside the timestamp tolerance",
                          registry=REGISTRY)
signature_replay_blocked = Counter("melody_webhook_signature_replay_blocked",
                                   "Signed webhook requests refused as replays", registry=REGISTRY)
signature_multisecret_match = Counter("melody_webhook_signature_multisecret_match",
                                      "Webhook signatures matched by a rotated (non-primary) secret",
                                      registry=REGISTRY)
webhook_errors = Counter("melody_webhook_error", "Webhook requests refused, by error code", ["code"],
                         registry=REGISTRY)
replay_window_ms = Gauge("melody_webhook_replay_window_ms", "Configured webhook replay window (ms)",
                         registry=REGISTRY)
checkout_failures = Counter("checkout_failures", "Checkout Sessions that could not be created", registry=REGISTRY)
checkout_sessions_created = Counter("checkout_sessions_created", "Checkout Sessions created", registry=REGISTRY)
refund_operations = Counter("refund_operations", "Refund attempts by outcome", ["status"], registry=REGISTRY)

for _status in WEBHOOK_EVENT_STATUSES:
    webhook_events.labels(_status)
for _code in SIGNATURE_CODES + ("storage_unavailable",):
    webhook_errors.labels(_code)
for _status in ("succeeded", "failed", "pending", "retry"):
    refund_operations.labels(_status)


class DatabaseGauges:
    """Gauges computed from the database when scraped: cheap aggregate queries on indexed columns."""

    def __init__(self, app: Flask):
        self.app = app

    @staticmethod
    def _families():
        return (GaugeMetricFamily("webhook_backlog", "Webhook events not yet processed, by status",
                                  labels=["status"]),
                GaugeMetricFamily("paid_unconfirmed_bookings", "Payments marked paid whose booking is not confirmed"))

    def describe(self):  # lets the registry learn the names without touching the database
        return list(self._families())

    def collect(self):
        from portal.services import reconciliation

        backlog, unconfirmed = self._families()
        try:
            with self.app.app_context():
                counts = reconciliation.webhook_backlog()
                paid_unconfirmed = reconciliation.paid_unconfirmed_count()
        except Exception:  # a scrape must not fail because the database is briefly away
            return
        for status, count in counts.items():
            backlog.add_metric([status], count)
        unconfirmed.add_metric([], paid_unconfirmed)
        yield backlog
        yield unconfirmed


def _require_token(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = current_app.config["PORTAL_SETTINGS"].metrics_token
        if token:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                abort(401)
        return view(*args, **kwargs)

    return wrapper


def init_app(app: Flask) -> None:
    settings = app.config["PORTAL_SETTINGS"]
    replay_window_ms.set(settings.stripe_replay_window_sec * 1000)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(REGISTRY)
    registry.register(DatabaseGauges(app))
    exporter = PrometheusMetrics(
        app=None, path="/metrics", registry=registry, defaults_prefix=NO_PREFIX, group_by="endpoint",
        metrics_decorator=_require_token, excluded_paths=["^/metrics$", "^/static/"],
    )
    exporter.init_app(app)
