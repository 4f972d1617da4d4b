"""The studio admin JSON API, `/s/<studio>/api/admin/…` (SPEC "Studio admin").

Two ways in: a logged-in admin of the studio (writes send the CSRF token in `X-CSRFToken`), or
`Authorization: Bearer <studio API key>` with the endpoint's scope. Anonymous → 401; a key of another studio, a key
without the scope, or a logged-in non-admin → 403. Keys are rate-limited per key. Answers are JSON, errors
`{"error": code, "detail": …}`.
"""
from __future__ import annotations

import functools

from flask import Blueprint, current_app, g, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from portal.blueprints.context import studio_scoped
from portal.clock import utcnow
from portal.extensions import csrf, limiter
from portal.models import Role
from portal.services import api_keys
from portal.services.audit import Actor

bp = studio_scoped(Blueprint("admin_api", __name__, url_prefix="/s/<studio_slug>/api/admin"))
csrf.exempt(bp)  # a bearer key carries no cookie to forge; session callers are checked in `_authenticate`


class ApiRefusal(Exception):
    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@bp.errorhandler(ApiRefusal)
def _refused(error: ApiRefusal):
    response = jsonify(error=error.code, detail=error.detail)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="studio admin API"'
    return response, error.status


def _key_prefix() -> str:
    """Rate-limit bucket: the API key's public prefix, or the client address for anything else."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer sp_"):
        return "api-key:" + header.removeprefix("Bearer sp_").split("_", 1)[0][:16]
    from flask_limiter.util import get_remote_address

    return get_remote_address()


def _key_limit() -> str:
    return current_app.config["PORTAL_SETTINGS"].api_key_rate_limit


# One budget per key for the whole API (not one per endpoint).
limiter.shared_limit(_key_limit, scope="admin-api", key_func=_key_prefix)(bp)


@bp.before_request
def _authenticate():
    g.api_key = None
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        key = api_keys.authenticate(token.strip(), now=utcnow()) if scheme.lower() == "bearer" else None
        if key is None:
            raise ApiRefusal(401, "unauthenticated", "The API key is not valid (or was revoked).")
        if key.studio_id != g.studio.id:
            raise ApiRefusal(403, "forbidden", "This API key belongs to another studio.")
        g.api_key = key
        return
    if not current_user.is_authenticated:
        raise ApiRefusal(401, "unauthenticated", "Log in as an admin of this studio, or send an API key.")
    if not current_user.has_role(g.studio.id, Role.ADMIN):
        raise ApiRefusal(403, "forbidden", "Only this studio's admins can use its admin API.")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        try:
            csrf.protect()
        except CSRFError:
            raise ApiRefusal(400, "csrf_failed", "Send the page's CSRF token in the X-CSRFToken header.") from None


def scope(name: str):
    """The endpoint needs API keys to have scope `name` (a logged-in admin has every scope)."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            key = g.get("api_key")
            if key is not None and name not in key.scopes:
                raise ApiRefusal(403, "scope_missing", f"This API key lacks the {name} scope.")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def actor() -> Actor:
    key = g.get("api_key")
    return Actor.api_key(key.id, key.name) if key is not None else Actor.of(current_user)


def json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiRefusal(400, "payload_invalid", "Send a JSON object.")
    return body


# The modules register their routes on `bp`.
from portal.blueprints.admin_api import audit, bookings, catalogue, configuration, insights  # noqa: E402,F401
