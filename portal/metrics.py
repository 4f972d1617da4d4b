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
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString
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
#: Labelled twice with the same value: `status` is the name the public contract gives, `outcome` the name the runbook's
#: and billing seeds' queries use; either works in PromQL (`sum by (outcome)`, `{status="failed"}`).
refund_operations = Counter("refund_operations", "Refund attempts by outcome", ["status", "outcome"],
                            registry=REGISTRY)
REFUND_OUTCOMES = ("succeeded", "failed", "pending", "retry", "external")


def count_refund(outcome: str) -> None:
    """One refund operation ended with `outcome` (one of `REFUND_OUTCOMES`)."""
    refund_operations.labels(outcome, outcome).inc()


checkout_sessions_completed = Counter("checkout_sessions_completed",
                                      "Checkout Sessions paid and their booking confirmed", registry=REGISTRY)
#: Seed 000's buckets, kept exactly so its PromQL (`le="15"`, `le="60"`, `le="120"`) keeps working.
BOOKING_DURATION_BUCKETS = (0, 15, 30, 45, 60, 90, 120, 240, 480)
booking_duration = Histogram("melody_booking_duration_minutes", "Length of each booking when it is confirmed",
                             buckets=BOOKING_DURATION_BUCKETS, registry=REGISTRY)
payment_to_confirmed = Histogram("payment_to_confirmed_seconds",
                                 "Seconds from Stripe recording the payment to the booking being confirmed",
                                 buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600), registry=REGISTRY)
STRIPE_OPERATIONS = ("checkout.sessions.create", "checkout.sessions.retrieve", "checkout.sessions.expire",
                     "checkout.sessions.list", "refunds.create", "refunds.retrieve", "refunds.list", "events.list")
stripe_api_errors = Counter("stripe_api_errors", "Stripe API calls that failed, by operation", ["operation"],
                            registry=REGISTRY)
job_duration = Histogram("job_duration_seconds", "Background job run time, by job", ["job"],
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=REGISTRY)
job_failures = Counter("job_failures", "Background job runs that raised, by job", ["job"], registry=REGISTRY)
db_pool_in_use = Gauge("db_pool_connections_in_use", "Database connections checked out of the pool",
                       registry=REGISTRY, multiprocess_mode="livesum")
db_pool_size = Gauge("db_pool_size", "Database connections the pool keeps (its size, without overflow)",
                     registry=REGISTRY, multiprocess_mode="livesum")

for _status in WEBHOOK_EVENT_STATUSES:
    webhook_events.labels(_status)
for _code in SIGNATURE_CODES + ("storage_unavailable",):
    webhook_errors.labels(_code)
for _outcome in REFUND_OUTCOMES:
    refund_operations.labels(_outcome, _outcome)
for _operation in STRIPE_OPERATIONS:
    stripe_api_errors.labels(_operation)


def label_jobs(names) -> None:
    """Create every job's series at zero (called with the dispatcher's job names)."""
    for name in names:
        job_duration.labels(name)
        job_failures.labels(name)


PER_RESOURCE = ("tenant", "resource_id")
#: The reconciliation queries served as gauges: the ones alerts and the ops dashboard watch, each a few ms on a large
#: database. The invariant checks that scan recent history (`confirmed_without_payment`, `overlapping_bookings`)
#: stay with the console and `flask ops check`, which run them on demand.
RECONCILIATION_GAUGES = ("paid_unconfirmed", "packs_paid_uncredited", "stuck_events", "dead_events",
                         "unreleased_holds", "amount_mismatches", "stuck_refunds", "external_refunds", "stripe_drift")
#: Latency buckets with edges at the runbook's baselines (p95 < 300 ms, p99 < 800 ms), so the latency SLO counts
#: requests over 300 ms exactly instead of interpolating.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.5, 5.0, 10.0)


class DatabaseGauges:
    """Gauges computed from the database (and the job queue) when scraped.

    One aggregate query per family across every studio (see `portal.services.stats` and
    `portal.services.reconciliation`), cached for `ttl` seconds, so frequent scrapes (several Prometheus servers,
    several gunicorn workers each answering some scrapes) cost the database almost nothing. Under gunicorn each
    worker computes the same figures from the same database, so any worker's answer is the whole picture.
    """

    def __init__(self, app: Flask, ttl: float = 15.0):
        self.app = app
        self.ttl = ttl
        self._cached: tuple[float, bytes] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _families():
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        return {
            "backlog": gauge("webhook_backlog", "Webhook events not yet processed, by status", labels=["status"]),
            "unconfirmed": gauge("paid_unconfirmed_bookings", "Payments marked paid whose booking is not confirmed"),
            "recon": gauge("reconciliation_items", "Items on each ops reconciliation query", labels=["query"]),
            "recon_age": gauge("reconciliation_oldest_age_seconds",
                               "Age of the oldest item on each ops reconciliation query (0 when empty)",
                               labels=["query"]),
            "confirmed_total": gauge("melody_bookings_confirmed_total", "Bookings confirmed now (all resources)"),
            "confirmed": gauge("melody_bookings_confirmed", "Bookings confirmed now, per resource",
                               labels=PER_RESOURCE),
            "minutes_total": gauge("melody_bookings_confirmed_minutes_total",
                                   "Minutes of confirmed bookings (all resources)"),
            "minutes": gauge("melody_bookings_confirmed_minutes", "Minutes of confirmed bookings, per resource",
                             labels=PER_RESOURCE),
            "utilization": gauge("melody_bookings_utilization_percent",
                                 "Confirmed minutes over capacity for the 7 days from today (0-1), per resource",
                                 labels=PER_RESOURCE),
            "active": gauge("melody_bookings_active", "Live bookings (unexpired holds, confirmed lessons not over)",
                            labels=PER_RESOURCE),
            "late_total": gauge("melody_bookings_cancelled_late_total",
                                "Bookings cancelled late (penalty_reason=late_cancel)"),
            "late": gauge("melody_bookings_cancelled_late", "Late cancellations per resource", labels=PER_RESOURCE),
            "lead_avg": gauge("melody_reschedule_lead_time_hours_avg",
                              "Average hours between a reschedule request and the original lesson (last 90 days)"),
            "lead_median": gauge("melody_reschedule_lead_time_hours_median",
                                 "Median hours between a reschedule request and the original lesson "
                                 "(last 90 days)"),
            "reschedules": counter("melody_reschedule_completed", "Reschedules completed"),
            "queue": gauge("rq_queue_depth", "Jobs waiting in the queue", labels=["queue"]),
        }

    def exposition(self) -> bytes:
        """The families in the text format, rendered and cached for `ttl` seconds together with the figures; empty
        while the database does not answer (a scrape must not fail because the database is briefly away)."""
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.ttl:
                families = self._read()
                if families is None:
                    return b""
                self._cached = (time.monotonic(), text_format(families))
            return self._cached[1]

    def _read(self):
        from portal.clock import utcnow
        from portal.services import reconciliation, stats

        families = self._families()
        try:
            with self.app.app_context():
                now = utcnow()
                backlog = reconciliation.webhook_backlog()
                overview = reconciliation.summaries(RECONCILIATION_GAUGES, now)
                figures = stats.booking_stats(now)
        except Exception:
            log.exception("database gauges unavailable")
            return None
        for status, count in backlog.items():
            families["backlog"].add_metric([status], count)
        families["unconfirmed"].add_metric([], overview["paid_unconfirmed"].count)
        for name, summary in overview.items():
            families["recon"].add_metric([name], summary.count)
            families["recon_age"].add_metric([name], summary.oldest_age_seconds or 0)
        families["confirmed_total"].add_metric([], figures.total("confirmed"))
        families["minutes_total"].add_metric([], figures.total("confirmed_minutes"))
        families["late_total"].add_metric([], figures.total("late_cancels"))
        for labels, resource in sorted(figures.resources.items()):
            families["confirmed"].add_metric(labels, resource.confirmed)
            families["minutes"].add_metric(labels, resource.confirmed_minutes)
            families["utilization"].add_metric(labels, resource.utilisation)
            families["active"].add_metric(labels, resource.active)
            families["late"].add_metric(labels, resource.late_cancels)
        families["lead_avg"].add_metric([], figures.lead_hours_avg)
        families["lead_median"].add_metric([], figures.lead_hours_median)
        families["reschedules"].add_metric([], figures.reschedules_completed)
        self._add_queue_depth(families["queue"])
        return list(families.values())

    def _add_queue_depth(self, family) -> None:
        """RQ's queue length with Redis; the in-process pool's waiting jobs on the embedded default. Left out (not
        reported as zero) while Redis does not answer: `/readyz` and the backlog alerts say so."""
        dispatcher = self.app.extensions.get("dispatcher")
        try:
            for name, depth in dispatcher.depths().items():
                family.add_metric([name], depth)
        except Exception:
            log.warning("queue depth unavailable", exc_info=True)


class _Families:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def text_format(families) -> bytes:
    """What `generate_latest` writes for these families, byte for byte. The gauges are written here: the
    per-resource ones are thousands of samples, and the library checks and escapes both labels of every sample
    anew (a third of an uncached scrape); each label set is escaped once. Other kinds go through the library."""
    labels_of: dict[tuple, str] = {}
    out = []
    for family in families:
        if family.type != "gauge":
            out.append(generate_latest(_Families([family])).decode())
            continue
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {family.name} {help_text}\n# TYPE {family.name} gauge\n")
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            labels = labels_of.get(key)
            if labels is None:
                labels = labels_of[key] = "{%s}" % ",".join(
                    '{}="{}"'.format(name, value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"'))
                    for name, value in key) if key else ""
            out.append(f"{sample.name}{labels} {floatToGoString(sample.value)}\n")
    return "".join(out).encode()


def _watch_pool(app: Flask) -> None:
    """Count connections checked out of this app's pool, and add its size, through SQLAlchemy's pool events."""
    from sqlalchemy import event

    from portal.extensions import db

    with app.app_context():
        engine = db.engine
    size = getattr(engine.pool, "size", None)
    if callable(size):
        db_pool_size.inc(size())
    event.listen(engine, "checkout", lambda *_: db_pool_in_use.inc())
    event.listen(engine, "checkin", lambda *_: db_pool_in_use.dec())


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


def serve_worker_metrics(port: int, address: str = "0.0.0.0") -> None:
    """Serve `/metrics` from a worker process (a background thread): the job, Stripe and webhook series this host's
    processes wrote, without the database gauges (the web processes serve those)."""
    from prometheus_client import start_http_server

    registry = REGISTRY
    if multiprocess_mode():
        registry = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(registry)
    start_http_server(port, addr=address, registry=registry)


def init_app(app: Flask) -> None:
    """Record HTTP metrics and serve `GET /metrics`.

    Single process (the embedded default): the portal's counters, the HTTP histogram and the database gauges.
    Multiprocess (gunicorn workers and RQ workers sharing `PROMETHEUS_MULTIPROC_DIR`): every process writes its
    values to files there and a scrape of any web worker adds them up, so a webhook processed by an RQ worker is
    counted on the same `/metrics` as the request that received it.
    """
    from portal.dispatch import JOBS

    settings = app.config["PORTAL_SETTINGS"]
    replay_window_ms.set(settings.stripe_replay_window_sec * 1000)
    label_jobs(JOBS)
    _watch_pool(app)
    http_registry = CollectorRegistry(auto_describe=True)
    exporter = PrometheusMetrics(app=None, path=None, registry=http_registry, defaults_prefix=NO_PREFIX,
                                 group_by="endpoint", excluded_paths=["^/metrics$", "^/static/"],
                                 buckets=HTTP_BUCKETS)
    exporter.init_app(app)
    gauges = DatabaseGauges(app, ttl=app.config.get("METRICS_DB_CACHE_SECONDS", settings.metrics_cache_seconds))

    def scrape_registry() -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=True)
        if multiprocess_mode():
            MultiProcessCollector(registry)
        else:
            registry.register(REGISTRY)
            registry.register(http_registry)
        return registry

    single = None if multiprocess_mode() else scrape_registry()

    @_require_token
    def metrics_view():
        # the database gauges come last, as they would from the registry
        body = generate_latest(single or scrape_registry()) + gauges.exposition()
        return Response(body, content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics_view)
