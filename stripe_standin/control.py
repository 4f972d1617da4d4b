"""Loopback-only JSON control API under ``/_standin/`` for tests."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Callable

from . import checkout
from .refunds import FAILURE_MODES
from .store import ApiError, to_int
from .webhooks import DEFAULTS

if TYPE_CHECKING:
    from .server import StandinServer

Handler = Callable[["StandinServer", dict, dict], Any]
_ROUTES: list[tuple[str, re.Pattern, Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        _ROUTES.append((method, re.compile(f"/_standin{pattern}\\Z"), fn))
        return fn
    return deco


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


@route("GET", "/health")
def _health(srv: "StandinServer", _body: dict, _m: dict) -> dict:
    return {"ok": True, "base_url": srv.base_url}


@route("GET", "/config")
def _get_config(srv: "StandinServer", _body: dict, _m: dict) -> dict:
    with srv.store.lock:
        return {**srv.dispatcher.configure(), "async_delay": srv.async_delay,
                "api_key": srv.api_key, "refund_failures": list(srv.store.refund_failures),
                "clock_offset": srv.store.clock_offset, "base_url": srv.base_url}


@route("POST", "/config")
def _set_config(srv: "StandinServer", body: dict, m: dict) -> dict:
    if "async_delay" in body:
        srv.async_delay = float(body.pop("async_delay"))
    unknown = set(body) - set(DEFAULTS)
    if unknown:
        raise _bad(f"Unknown config keys: {sorted(unknown)}")
    srv.dispatcher.configure(**body)
    return _get_config(srv, body, m)


@route("POST", "/webhook")
def _set_webhook(srv: "StandinServer", body: dict, m: dict) -> dict:
    return _set_config(srv, {k: body[k] for k in ("url", "secret", "enabled_events") if k in body}, m)


@route("POST", "/webhooks/duplicates")
def _duplicates(srv: "StandinServer", body: dict, m: dict) -> dict:
    return _set_config(srv, {"duplicates": to_int(body.get("count", 2), "count", minimum=1)}, m)


@route("POST", "/webhooks/out_of_order")
def _out_of_order(srv: "StandinServer", body: dict, m: dict) -> dict:
    return _set_config(srv, {"out_of_order": bool(body.get("enabled", True))}, m)


@route("POST", "/webhooks/flush")
def _flush(srv: "StandinServer", _body: dict, _m: dict) -> dict:
    return {"released": srv.dispatcher.flush()}


@route("POST", "/webhooks/pause")
def _pause(srv: "StandinServer", _body: dict, m: dict) -> dict:
    return _set_config(srv, {"paused": True}, m)


@route("POST", "/webhooks/resume")
def _resume(srv: "StandinServer", _body: dict, m: dict) -> dict:
    return _set_config(srv, {"paused": False}, m)


@route("POST", "/webhooks/wait_idle")
def _wait_idle(srv: "StandinServer", body: dict, _m: dict) -> dict:
    idle = srv.dispatcher.wait_idle(float(body.get("timeout", 5.0)))
    return {"idle": idle, **srv.dispatcher.status()}


@route("GET", "/deliveries")
def _deliveries(srv: "StandinServer", body: dict, _m: dict) -> dict:
    with srv.dispatcher.cond:
        data = [dict(a) for a in srv.dispatcher.attempts
                if body.get("event_id") in (None, a["event_id"])
                and body.get("type") in (None, a["event_type"])]
    return {"object": "list", "data": data, "status": srv.dispatcher.status()}


def _session(srv: "StandinServer", m: dict) -> dict:
    return checkout.get_session(srv.store, m["id"])


@route("POST", r"/checkout/sessions/(?P<id>\w+)/expire")
def _expire(srv: "StandinServer", _body: dict, m: dict) -> dict:
    session = _session(srv, m)
    checkout.expire_session(srv.store, session)
    return checkout.render_session(srv.store, session)


@route("POST", r"/checkout/sessions/(?P<id>\w+)/amount_total")
def _amount_total(srv: "StandinServer", body: dict, m: dict) -> dict:
    session = _session(srv, m)
    session["amount_total"] = to_int(body.get("amount_total"), "amount_total", minimum=0)
    return checkout.render_session(srv.store, session)


@route("POST", r"/checkout/sessions/(?P<id>\w+)/pay")
def _pay(srv: "StandinServer", body: dict, m: dict) -> dict:
    error = checkout.pay(srv.store, m["id"], body.get("outcome", "pay"), srv.async_delay)
    return {"error": error, "session": checkout.render_session(srv.store, _session(srv, m))}


@route("POST", "/refunds/fail_next")
def _fail_refunds(srv: "StandinServer", body: dict, _m: dict) -> dict:
    mode = str(body.get("mode", "failed"))
    if mode not in FAILURE_MODES:
        raise _bad(f"mode must be one of {FAILURE_MODES}", "mode")
    count = to_int(body.get("count", 1), "count", minimum=0)
    srv.store.refund_failures[:] = [mode] * count
    return {"refund_failures": list(srv.store.refund_failures)}


@route("POST", r"/events/(?P<id>\w+)/resend")
def _resend(srv: "StandinServer", _body: dict, m: dict) -> dict:
    event = srv.store.events.get(m["id"])
    if event is None:
        raise ApiError(404, f"No such event: '{m['id']}'", param="id")
    return {"queued": srv.dispatcher.enqueue(srv.store.render_event(event), force=True)}


@route("POST", "/clock/advance")
def _advance(srv: "StandinServer", body: dict, _m: dict) -> dict:
    srv.store.clock_offset += float(body.get("seconds", 0))
    checkout.sweep_expired(srv.store)
    return {"now": srv.store.now(), "clock_offset": srv.store.clock_offset}


@route("POST", "/tasks/run")
def _run_tasks(srv: "StandinServer", _body: dict, _m: dict) -> dict:
    tasks, srv.store.tasks = srv.store.tasks, []
    for _when, _seq, fn in sorted(tasks):
        fn()
    return {"ran": len(tasks)}


@route("POST", "/reset")
def _reset(srv: "StandinServer", _body: dict, _m: dict) -> dict:
    srv.reset()
    return {"ok": True}


def handle(srv: "StandinServer", method: str, path: str, query: dict, raw: bytes) -> tuple[int, Any]:
    """Serve one control request; returns (status, JSON-able body)."""
    try:
        body = json.loads(raw.decode("utf-8") or "{}") if raw else {}
        if not isinstance(body, dict):
            raise _bad("Body must be a JSON object")
    except (ValueError, UnicodeDecodeError):
        return 400, {"error": {"type": "invalid_request_error", "message": "Invalid JSON body"}}
    body = {**query, **body}
    matches = [(m, rx.match(path), fn) for m, rx, fn in _ROUTES if rx.match(path)]
    chosen = next(((mt, fn) for m, mt, fn in matches if m == method), None) or next(
        ((mt, fn) for m, mt, fn in matches if m == "GET" and method == "POST"), None)
    if chosen is None:
        return 404, {"error": {"type": "invalid_request_error",
                               "message": f"Unknown control endpoint {method} {path}"}}
    match, fn = chosen
    try:
        with srv.store.lock:
            if fn is not _wait_idle:
                checkout.sweep_expired(srv.store)
                return 200, fn(srv, body, match.groupdict())
        return 200, fn(srv, body, match.groupdict())
    except ApiError as exc:
        return exc.status, exc.body()
    except (KeyError, TypeError, ValueError) as exc:
        return 400, {"error": {"type": "invalid_request_error", "message": str(exc)}}
