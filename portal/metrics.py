"""Prometheus metrics: HTTP histograms from prometheus-flask-exporter plus the portal's own series.

Each app gets its own `CollectorRegistry` (so tests can build many apps in one process); the registry and the
portal's metric objects live in `app.extensions["portal_metrics"]`.
"""
from __future__ import annotations

import functools
import hmac

from flask import Flask, abort, current_app, request
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import NO_PREFIX, PrometheusMetrics


class PortalMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry


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


def init_app(app: Flask) -> PortalMetrics:
    registry = CollectorRegistry(auto_describe=True)
    exporter = PrometheusMetrics(
        app=None, path="/metrics", registry=registry, defaults_prefix=NO_PREFIX, group_by="endpoint",
        metrics_decorator=_require_token, excluded_paths=["^/metrics$", "^/static/"],
    )
    exporter.init_app(app)
    portal_metrics = PortalMetrics(registry)
    app.extensions["portal_metrics"] = portal_metrics
    return portal_metrics


def get() -> PortalMetrics:
    return current_app.extensions["portal_metrics"]
