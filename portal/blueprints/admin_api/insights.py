"""Utilisation anomalies per resource (seed 000): `GET /s/<studio>/api/admin/resources/…`.

- `utilization-anomalies`: days whose z-score over the window reaches `threshold` (default 3).
- `utilization-seasonal-anomalies`: days off the weekly rhythm (Holt–Winters residuals past `threshold` standard
  deviations and `min_delta`).
- `utilization-persistence-anomalies`: sustained shifts (CUSUM with slack `k` and limit `h`, in robust standard
  deviations, against the first `baseline` days).
- `anomaly-severity`: a tier and a recommended action per resource.

Common parameters: `window` (days, ending on `to`, default yesterday), `resource` (a slug; default every active
resource). A bad parameter answers 422 `{"error": "invalid_parameter", "parameter": name, "detail": why}`.
"""
from __future__ import annotations

from flask import g, jsonify, request

from portal.blueprints.admin_api import bp, scope
from portal.clock import utcnow
from portal.services import utilisation_insights as insights


@bp.errorhandler(insights.InvalidParameter)
def _invalid(error: insights.InvalidParameter):
    return jsonify(error="invalid_parameter", parameter=error.name, detail=error.detail), 422


def _histories(default_window: int, least: int = 7):
    args = request.args
    today = utcnow().astimezone(g.studio.tz).date()
    window = int(insights.number(args, "window", default_window, least, 366, whole=True))
    last = insights.end_day(args, today)
    return window, last, insights.histories(g.studio, last, window, args.get("resource") or None)


def _answer(window, last, **body):
    first = last.fromordinal(last.toordinal() - window + 1)
    return jsonify(studio=g.studio.slug, window={"from": first.isoformat(), "to": last.isoformat(), "days": window},
                   **body)


@bp.get("/resources/utilization-anomalies")
@scope("bookings:read")
def utilization_anomalies():
    threshold = insights.number(request.args, "threshold", 3.0, 1.0, 10.0)
    window, last, items = _histories(28)
    return _answer(window, last, method="zscore", threshold=threshold,
                   resources=insights.point_report(items, threshold))


@bp.get("/resources/utilization-seasonal-anomalies")
@scope("bookings:read")
def utilization_seasonal_anomalies():
    threshold = insights.number(request.args, "threshold", 3.0, 1.0, 10.0)
    min_delta = insights.number(request.args, "min_delta", 0.1, 0.0, 1.0)
    window, last, items = _histories(56, least=2 * insights.SEASON)
    return _answer(window, last, method="holt_winters", season_days=insights.SEASON, threshold=threshold,
                   min_delta=min_delta, resources=insights.seasonal_report(items, threshold, min_delta))


def _cusum_parameters(window: int) -> tuple[int, float, float]:
    baseline = int(insights.number(request.args, "baseline", 14, 14, max(14, window - 7), whole=True))
    k = insights.number(request.args, "k", 0.5, 0.0, 5.0)
    h = insights.number(request.args, "h", 5.0, max(1.0, k + 0.5), 50.0)
    return baseline, k, h


@bp.get("/resources/utilization-persistence-anomalies")
@scope("bookings:read")
def utilization_persistence_anomalies():
    window, last, items = _histories(56, least=21)
    baseline, k, h = _cusum_parameters(window)
    return _answer(window, last, method="cusum", baseline_days=baseline, k=k, h=h,
                   resources=insights.persistence_report(items, baseline, k, h))


@bp.get("/resources/anomaly-severity")
@scope("bookings:read")
def anomaly_severity():
    threshold = insights.number(request.args, "threshold", 3.0, 1.0, 10.0)
    window, last, items = _histories(56, least=21)
    baseline, k, h = _cusum_parameters(window)
    return _answer(window, last, resources=[insights.severity(item, threshold=threshold, baseline_days=baseline,
                                                              k=k, h=h) for item in items])
