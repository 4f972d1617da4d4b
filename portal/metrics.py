"""Prometheus metrics: HTTP histograms from prometheus-flask-exporter plus the portal's own series.

The portal's counters live at module level in `REGISTRY`, so services, jobs and web code in one process share
them; each app (tests build many) has its own HTTP-metrics registry and database-gauge collector. Names follow
the seeds exactly.
"""
from __future__ import annotations

import functools
import hmac
import logging
import os
import threading
import time

from flask import Flask, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_flask_exporter import NO_PREFIX, PrometheusMetrics

from portal.payments.signatures import SIGNATURE_CODES

log = logging.getLogger(__name__)
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
                         registry=REGISTRY, multiprocess_mode="max")
checkout_failures = Counter("checkout_failures", "Checkout Sessions that could not be created", registry=REGISTRY)
checkout_sessions_created = Counter("checkout_sessions_created", "Checkout Sessions created", registry=REGISTRY)
refund_operations = Counter("refund_operations", "Refund attempts by outcome", ["status"], registry=REGISTRY)

for _status in WEBHOOK_EVENT_STATUSES:
    webhook_events.labels(_status)
for _code in SIGNATURE_CODES + ("storage_unavailable",):
    webhook_errors.labels(_code)
for _status in ("succeeded", "failed", "pending", "retry", "external"):
    refund_operations.labels(_status)


class DatabaseGauges:
    """Gauges computed from the database when scraped: a few aggregate queries, cached for `ttl` seconds so
    frequent scrapes (or several Prometheus servers) cost the database almost nothing."""

    def __init__(self, app: Flask, ttl: float = 15.0):
        self.app = app
        self.ttl = ttl
        self._cached: tuple[float, list] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _families():
        return {
            "backlog": GaugeMetricFamily("webhook_backlog", "Webhook events not yet processed, by status",
                                         labels=["status"]),
            "unconfirmed": GaugeMetricFamily("paid_unconfirmed_bookings",
                                             "Payments marked paid whose booking is not confirmed"),
            "late_total": GaugeMetricFamily("melody_bookings_cancelled_late_total",
                                            "Bookings cancelled late (penalty_reason=late_cancel)"),
            "late": GaugeMetricFamily("melody_bookings_cancelled_late", "Late cancellations per resource",
                                      labels=["tenant", "resource_id"]),
            "lead_avg": GaugeMetricFamily("melody_reschedule_lead_time_hours_avg",
                                          "Average hours between a reschedule request and the original lesson "
                                          "(last 90 days)"),
            "lead_median": GaugeMetricFamily("melody_reschedule_lead_time_hours_median",
                                             "Median hours between a reschedule request and the original lesson "
                                             "(last 90 days)"),
            "reschedules": CounterMetricFamily("melody_reschedule_completed", "Reschedules completed"),
        }

    def describe(self):  # lets the registry learn the names without touching the database
        return list(self._families().values())

    def collect(self):
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.ttl:
                families = self._read()
                if families is None:
                    return  # a scrape must not fail because the database is briefly away
                self._cached = (time.monotonic(), families)
            yield from self._cached[1]

    def _read(self):
        from portal.clock import utcnow
        from portal.services import reconciliation, stats

        families = self._families()
        try:
            with self.app.app_context():
                backlog = reconciliation.webhook_backlog()
                paid_unconfirmed = reconciliation.paid_unconfirmed_count(utcnow())
                figures = stats.booking_stats(utcnow())
        except Exception:
            log.exception("database gauges unavailable")
            return None
        for status, count in backlog.items():
            families["backlog"].add_metric([status], count)
        families["unconfirmed"].add_metric([], paid_unconfirmed)
        families["late_total"].add_metric([], sum(figures.late_cancels.values()))
        for (tenant, resource), count in sorted(figures.late_cancels.items()):
            families["late"].add_metric([tenant, resource], count)
        families["lead_avg"].add_metric([], figures.lead_hours_avg)
        families["lead_median"].add_metric([], figures.lead_hours_median)
        families["reschedules"].add_metric([], figures.reschedules_completed)
        return list(families.values())


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


def multiprocess_mode() -> bool:
    """prometheus_client decides at import time, from this variable, whether values live in shared files."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"))


def init_app(app: Flask) -> None:
    """Record HTTP metrics and serve `GET /metrics`.

    Single process (the embedded default): the portal's counters, the HTTP histogram and the database gauges.
    Multiprocess (gunicorn workers and RQ workers sharing `PROMETHEUS_MULTIPROC_DIR`): every process writes its
    values to files there and a scrape of any web worker adds them up, so a webhook processed by an RQ worker is
    counted on the same `/metrics` as the request that received it.
    """
    settings = app.config["PORTAL_SETTINGS"]
    replay_window_ms.set(settings.stripe_replay_window_sec * 1000)
    http_registry = CollectorRegistry(auto_describe=True)
    exporter = PrometheusMetrics(app=None, path=None, registry=http_registry, defaults_prefix=NO_PREFIX,
                                 group_by="endpoint", excluded_paths=["^/metrics$", "^/static/"])
    exporter.init_app(app)
    gauges = DatabaseGauges(app, ttl=app.config.get("METRICS_DB_CACHE_SECONDS", 15.0))

    def scrape_registry() -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=True)
        if multiprocess_mode():
            MultiProcessCollector(registry)
        else:
            registry.register(REGISTRY)
            registry.register(http_registry)
        registry.register(gauges)
        return registry

    single = None if multiprocess_mode() else scrape_registry()

    @_require_token
    def metrics_view():
        body = generate_latest(single or scrape_registry())
        return Response(body, content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics_view)
