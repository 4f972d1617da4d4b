"""Build the Grafana dashboards in this folder from code, with grafana-foundation-sdk.

    .venv/bin/python dashboards/generate.py          # write dashboards/*.json
    .venv/bin/python dashboards/generate.py --check  # exit 1 if a committed file differs from what the code builds

The JSON files are committed so an operator imports them as they are (Dashboards → New → Import). Every panel reads
the `datasource` variable (a Prometheus data source) and, where a series is per studio, the `tenant` variable.
Queries use only metrics that `/metrics` serves and the recording rules in `prometheus/recording.yml`; the tests
evaluate each one against a real Prometheus scraping the app.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

HERE = Path(__file__).resolve().parent
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
T = 'tenant=~"$tenant"'
WEBHOOK = 'endpoint="webhooks.stripe_webhook"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"   # or "stat"
    width: int = 12
    height: int = 8
    thresholds: tuple[float, ...] = field(default=())


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def ts(title, *queries, unit="short", description="", width=12):
    return Panel(title, tuple(queries), unit=unit, description=description, width=width)


def single(title, query, unit="short", description="", width=6):
    return Panel(title, (query,), unit=unit, description=description, kind="stat", width=width, height=5)


BOOKINGS = ("Bookings", "studio-portal-bookings", "Confirmed bookings, late cancellations and reschedules per "
            "resource (seed metrics, per studio).", [
    single("Confirmed bookings", q(f"sum(melody_bookings_confirmed{{{T}}})"),
           description="Bookings confirmed now, all selected studios."),
    single("Late cancellations", q(f"sum(melody_bookings_cancelled_late{{{T}}})"),
           description="Bookings cancelled inside the cancel window (penalty_reason=late_cancel)."),
    single("Reschedules (24h)", q("sum(increase(melody_reschedule_completed_total[24h]))")),
    single("Reschedule lead time (median)", q("max(melody_reschedule_lead_time_hours_median)"), unit="h",
           description="Hours between a reschedule request and the original lesson, last 90 days."),
    ts("Confirmed per resource", q(f"sum by (tenant, resource_id) (melody_bookings_confirmed{{{T}}})",
                                   "{{tenant}} / {{resource_id}}")),
    ts("Late cancellations per resource",
       q(f"sum by (tenant, resource_id) (melody_bookings_cancelled_late{{{T}}})", "{{tenant}} / {{resource_id}}")),
    ts("Late cancellations, total", q("sum(melody_bookings_cancelled_late_total)", "late cancellations"),
       q("sum(increase(melody_bookings_cancelled_late_total[1h]))", "in the last hour")),
    ts("Resource share of confirmed bookings",
       q(f"sum by (tenant, resource_id) (melody_bookings_confirmed{{{T}}}) / on (tenant) group_left "
         f"sum by (tenant) (melody_bookings_confirmed{{{T}}})", "{{tenant}} / {{resource_id}}"),
       unit="percentunit", description="Each resource's part of its studio's confirmed bookings."),
    ts("Reschedule lead time", q("max(melody_reschedule_lead_time_hours_avg)", "average"),
       q("max(melody_reschedule_lead_time_hours_median)", "median"), unit="h"),
    ts("Reschedules per confirmed checkout (7d)",
       q("sum(increase(melody_reschedule_completed_total[7d])) / "
         "sum(increase(checkout_sessions_completed_total[7d]))", "ratio"), unit="percentunit"),
])

UTILISATION = ("Utilisation and duration", "studio-portal-utilisation", "How full each resource is over the "
               "coming week, live bookings, booked minutes and lesson lengths.", [
    ts("Utilisation per resource (coming 7 days)",
       q(f"max by (tenant, resource_id) (melody_bookings_utilization_percent{{{T}}})",
         "{{tenant}} / {{resource_id}}"), unit="percentunit",
       description="Confirmed minutes over capacity (capacity_minutes a day × 7) from today."),
    ts("Utilisation spread (max − min)",
       q(f"max(melody_bookings_utilization_percent{{{T}}}) - min(melody_bookings_utilization_percent{{{T}}})",
         "spread"), unit="percentunit", description="Seed alert: imbalance over 25% between resources."),
    ts("Live bookings per resource",
       q(f"sum by (tenant, resource_id) (melody_bookings_active{{{T}}})", "{{tenant}} / {{resource_id}}"),
       description="Unexpired holds and confirmed lessons not over yet."),
    ts("Confirmed minutes per resource",
       q(f"sum by (tenant, resource_id) (melody_bookings_confirmed_minutes{{{T}}})",
         "{{tenant}} / {{resource_id}}"), unit="m"),
    ts("Booking duration percentiles (24h)",
       q("histogram_quantile(0.5, sum by (le) (rate(melody_booking_duration_minutes_bucket[24h])))", "p50"),
       q("histogram_quantile(0.9, sum by (le) (rate(melody_booking_duration_minutes_bucket[24h])))", "p90"),
       unit="m"),
    ts("Bookings confirmed by length (24h)",
       q("sum by (le) (increase(melody_booking_duration_minutes_bucket[24h]))", "≤ {{le}} min"),
       description="Cumulative: each line counts bookings of at most that many minutes."),
])

PAYMENTS = ("Webhooks, checkout and refunds", "studio-portal-payments", "The runbook's Stripe, checkout and "
            "billing panels; seed 004's KPIs.", [
    single("Webhook success (1h)",
           q(f'1 - (sum(rate(http_request_duration_seconds_count{{{WEBHOOK},status!~"2.."}}[1h])) or vector(0)) '
             f"/ sum(rate(http_request_duration_seconds_count{{{WEBHOOK}}}[1h]))"), unit="percentunit",
           description="KPI > 99.9%: Stripe deliveries answered 2xx."),
    single("Checkout conversion (24h)",
           q("sum(increase(checkout_sessions_completed_total[24h])) / "
             "sum(increase(checkout_sessions_created_total[24h]))"), unit="percentunit",
           description="KPI > 15%: Checkout Sessions paid and confirmed over those started."),
    single("Payment → confirmed p95 (1h)",
           q("histogram_quantile(0.95, sum by (le) (rate(payment_to_confirmed_seconds_bucket[1h])))"),
           unit="s", description="KPI < 5 s from Stripe recording the payment to the booking confirmed."),
    single("Paid, not confirmed", q("max(paid_unconfirmed_bookings)"),
           description="Must drop to zero within 10 minutes (alert PaidUnconfirmedBookings)."),
    ts("Webhook events by outcome", q("sum by (status) (rate(webhook_events_total[5m]))", "{{status}}"),
       unit="ops"),
    ts("Webhook failures and retries (10m)",
       q('sum(increase(webhook_events_total{status="error"}[10m]))', "failures"),
       q('sum(increase(webhook_events_total{status="retry"}[10m]))', "retries"),
       q('sum(increase(webhook_events_total{status="dead"}[10m]))', "dead")),
    ts("Webhook failure ratio",
       q('sum(rate(webhook_events_total{status="error"}[10m])) / '
         'sum(rate(webhook_events_total{status="received"}[10m]))', "errors / received"), unit="percentunit"),
    ts("Webhook refusals by code", q("sum by (code) (increase(melody_webhook_error_total[5m]))", "{{code}}")),
    ts("Webhook signatures (5m)",
       q("sum(increase(melody_webhook_signature_valid_total[5m]))", "valid"),
       q("sum(increase(melody_webhook_signature_invalid_total[5m]))", "invalid"),
       q("sum(increase(melody_webhook_signature_stale_total[5m]))", "stale"),
       q("sum(increase(melody_webhook_signature_replay_blocked_total[5m]))", "replay blocked"),
       q("sum(increase(melody_webhook_signature_multisecret_match_total[5m]))", "matched a rotated secret")),
    ts("Replay window", q("max(melody_webhook_replay_window_ms)", "window"), unit="ms"),
    ts("Checkout funnel (rate)", q("sum(rate(checkout_sessions_created_total[5m]))", "started"),
       q("sum(rate(checkout_sessions_completed_total[5m]))", "paid and confirmed"),
       q("sum(rate(checkout_failures_total[5m]))", "could not start"), unit="ops"),
    ts("Checkout failures per minute", q("sum(rate(checkout_failures_total[10m])) * 60", "per minute")),
    ts("Refund operations by outcome", q("sum by (outcome) (increase(refund_operations_total[15m]))", "{{outcome}}")),
    ts("Stripe API errors by operation",
       q("sum by (operation) (increase(stripe_api_errors_total[15m]))", "{{operation}}")),
    ts("Payment → confirmed latency",
       q("histogram_quantile(0.5, sum by (le) (rate(payment_to_confirmed_seconds_bucket[15m])))", "p50"),
       q("histogram_quantile(0.95, sum by (le) (rate(payment_to_confirmed_seconds_bucket[15m])))", "p95"),
       unit="s"),
])

HTTP = ("HTTP", "studio-portal-http", "Request latency (the runbook's p95 < 300 ms, p99 < 800 ms) and errors by "
        "route.", [
    ts("Latency percentiles", q("job:http_request_duration_seconds:p50_5m", "p50"),
       q("job:http_request_duration_seconds:p95_5m", "p95"),
       q("job:http_request_duration_seconds:p99_5m", "p99"), unit="s", width=24),
    ts("p95 by route",
       q("histogram_quantile(0.95, sum by (endpoint, le) (rate(http_request_duration_seconds_bucket[5m])))",
         "{{endpoint}}"), unit="s"),
    ts("Requests by route", q("sum by (endpoint) (rate(http_request_duration_seconds_count[5m]))", "{{endpoint}}"),
       unit="reqps"),
    ts("Server errors (5xx) by route",
       q('sum by (endpoint) (rate(http_request_duration_seconds_count{status=~"5.."}[5m]))', "{{endpoint}}"),
       unit="reqps"),
    ts("Client errors (4xx) by route",
       q('sum by (endpoint, status) (rate(http_request_duration_seconds_count{status=~"4.."}[5m]))',
         "{{endpoint}} {{status}}"), unit="reqps"),
])

JOBS = ("Jobs and queues", "studio-portal-jobs", "RQ queue depth, job run time and failures, webhook backlog and "
        "the database pool.", [
    ts("Queue depth", q("sum by (queue) (rq_queue_depth)", "{{queue}}")),
    ts("Webhook backlog by status", q("sum by (status) (webhook_backlog)", "{{status}}")),
    ts("Jobs run per job", q("sum by (job) (rate(job_duration_seconds_count[5m]))", "{{job}}"), unit="ops"),
    ts("Job failures per job", q("sum by (job) (increase(job_failures_total[15m]))", "{{job}}")),
    ts("Job run time p95",
       q("histogram_quantile(0.95, sum by (job, le) (rate(job_duration_seconds_bucket[15m])))", "{{job}}"),
       unit="s"),
    ts("Database pool", q("sum(db_pool_connections_in_use)", "in use"), q("sum(db_pool_size)", "size"),
       description="Seed 004: alert over 90% of the pool in use."),
])

OPS = ("Ops health", "studio-portal-ops", "What the ops console shows: the reconciliation queries, paid-but-"
       "unconfirmed bookings, the webhook backlog and dead events.", [
    single("Paid, not confirmed", q("max(paid_unconfirmed_bookings)")),
    single("Dead webhook events", q('max(reconciliation_items{query="dead_events"})')),
    single("Amount mismatches", q('max(reconciliation_items{query="amount_mismatches"})')),
    single("Unreleased holds", q('max(reconciliation_items{query="unreleased_holds"})')),
    ts("Reconciliation queries", q("max by (query) (reconciliation_items)", "{{query}}"), width=24),
    ts("Oldest item per query", q("max by (query) (reconciliation_oldest_age_seconds)", "{{query}}"), unit="s"),
    ts("Webhook backlog", q("sum by (status) (webhook_backlog)", "{{status}}")),
])

SLO = ("SLOs and error budgets", "studio-portal-slo", "Webhook success (99.9% of Stripe deliveries answered 2xx) "
       "and latency (95% of requests under 300 ms) over 30 days, with the burn rates the alerts use.", [
    single("Webhook SLO: budget left (30d)", q("1 - slo:webhook_errors:ratio_rate30d / 0.001"),
           unit="percentunit", width=12),
    single("Latency SLO: budget left (30d)", q("1 - slo:http_slow_requests:ratio_rate30d / 0.05"),
           unit="percentunit", width=12),
    ts("Webhook burn rate", q("slo:webhook_errors:ratio_rate5m / 0.001", "5m"),
       q("slo:webhook_errors:ratio_rate1h / 0.001", "1h"), q("slo:webhook_errors:ratio_rate6h / 0.001", "6h"),
       q("slo:webhook_errors:ratio_rate1d / 0.001", "1d"),
       description="1 spends the budget in exactly 30 days; the fastest alert fires at 14.4."),
    ts("Latency burn rate", q("slo:http_slow_requests:ratio_rate5m / 0.05", "5m"),
       q("slo:http_slow_requests:ratio_rate1h / 0.05", "1h"), q("slo:http_slow_requests:ratio_rate6h / 0.05", "6h"),
       q("slo:http_slow_requests:ratio_rate1d / 0.05", "1d")),
    ts("Webhook deliveries not answered 2xx", q("slo:webhook_errors:ratio_rate1h", "1h"), unit="percentunit"),
    ts("Requests over 300 ms", q("slo:http_slow_requests:ratio_rate1h", "1h"), unit="percentunit"),
])

DASHBOARDS = {"bookings": BOOKINGS, "utilisation": UTILISATION, "payments": PAYMENTS, "http": HTTP, "jobs": JOBS,
              "ops": OPS, "slo": SLO}


def _panel(spec: Panel):
    builder = (stat.Panel() if spec.kind == "stat" else timeseries.Panel().fill_opacity(10).line_width(1))
    builder = builder.title(spec.title).datasource(DATASOURCE).unit(spec.unit).span(spec.width).height(spec.height)
    if spec.description:
        builder = builder.description(spec.description)
    for index, query in enumerate(spec.queries):
        target = prometheus.Dataquery().expr(query.expr).ref_id(chr(ord("A") + index)).datasource(DATASOURCE)
        if query.legend:
            target = target.legend_format(query.legend)
        if spec.kind == "stat":
            target = target.instant()
        builder = builder.with_target(target)
    return builder


def build(name: str) -> dict:
    title, uid, description, panels = DASHBOARDS[name]
    board = (dashboard.Dashboard(f"Studio Portal — {title}").uid(uid).description(description)
             .tags(["studio-portal"]).refresh("1m").time("now-6h", "now").timezone("utc").editable()
             .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
             .with_variable(dashboard.QueryVariable("tenant").label("Studio").datasource(DATASOURCE)
                            .query("label_values(melody_bookings_confirmed, tenant)").include_all(True)
                            .multi(True).all_value(".*").refresh(2)))
    for spec in panels:
        board = board.with_panel(_panel(spec))
    return json.loads(JSONEncoder().encode(board.build()))


def rendered(name: str) -> str:
    return json.dumps(build(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name in DASHBOARDS:
        path = HERE / f"{name}.json"
        text = rendered(name)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run dashboards/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
