"""Liveness and readiness for load balancers and orchestrators."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from portal.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def _check_database() -> dict:
    try:
        db.session.execute(text("SELECT 1"))
        return {"ok": True}
    except Exception as error:  # any failure means not ready; the body says which
        db.session.rollback()
        return {"ok": False, "error": type(error).__name__}


def _check_redis(url: str) -> dict:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
        return {"ok": True}
    except Exception as error:
        return {"ok": False, "error": type(error).__name__}


@bp.get("/readyz")
def readyz():
    checks = {"database": _check_database()}
    redis_url = current_app.config["PORTAL_SETTINGS"].redis_url
    if redis_url:
        checks["redis"] = _check_redis(redis_url)
    ready = all(c["ok"] for c in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503
