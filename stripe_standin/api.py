"""Routing and protocol handling for the ``/v1`` Stripe API surface."""

from __future__ import annotations

import base64
import copy
import fnmatch
import json
import re
from typing import Any, Callable, Optional

from . import checkout, refunds
from .checkout import check_unknown
from .formcodec import FormError, decode_form
from .store import ApiError, Store, match_created, new_id, paginate, to_bool

Response = tuple[int, dict, dict]
_LIST = frozenset({"created", "ending_before", "expand", "limit", "starting_after"})
_EXPAND_ONLY = frozenset({"expand"})
_PREFIXES = {"pi_": "payment_intents", "ch_": "charges", "re_": "refunds", "cs_": "sessions"}


def _api_key(headers: Any) -> str:
    auth = headers.get("Authorization") or ""
    scheme, _, cred = auth.partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = cred.strip()
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(cred.strip()).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            key = ""
    if not key:
        raise ApiError(401, "You did not provide an API key. You need to provide your API key in "
                       "the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                       "YOUR_SECRET_KEY').")
    return key


def _render(store: Store, obj: dict) -> dict:
    if obj.get("object") == "checkout.session":
        return checkout.render_session(store, obj)
    return copy.deepcopy(obj)


def _expand(store: Store, obj: dict, path: list[str], full: str) -> None:
    head, rest = path[0], path[1:]
    if obj.get("object") == "list" and head == "data":
        for item in obj["data"]:
            if rest:
                _expand(store, item, rest, full)
        return
    if head == "line_items" and obj.get("object") == "checkout.session" and not rest:
        items = copy.deepcopy(store.sessions[obj["id"]]["_line_items"])
        obj["line_items"] = {"object": "list", "data": items, "has_more": False,
                             "url": f"/v1/checkout/sessions/{obj['id']}/line_items"}
        return
    if head not in obj:
        raise ApiError(400, f"This property cannot be expanded ({full}).", param="expand")
    value = obj[head]
    if isinstance(value, str):
        table = next((getattr(store, t) for p, t in _PREFIXES.items() if value.startswith(p)), None)
        if table is None or value not in table:
            raise ApiError(400, f"This property cannot be expanded ({full}).", param="expand")
        value = obj[head] = _render(store, table[value])
    if rest and isinstance(value, dict):
        _expand(store, value, rest, full)


def apply_expand(store: Store, obj: dict, params: dict) -> dict:
    paths = params.get("expand") or []
    if isinstance(paths, str):
        paths = [paths]
    for path in paths:
        _expand(store, obj, path.split("."), path)
    return obj


# -- handlers --------------------------------------------------------------
def _session_list(store: Store, p: dict, _ctx: dict) -> dict:
    check_unknown(p, _LIST | {"customer", "customer_account", "customer_details",
                              "payment_intent", "payment_link", "status", "subscription"})
    items = [s for s in reversed(store.sessions.values())
             if (p.get("payment_intent") is None or s["payment_intent"] == p["payment_intent"])
             and (p.get("status") is None or s["status"] == p["status"])
             and match_created(s["created"], p.get("created"))]
    return paginate([checkout.render_session(store, s) for s in items], p, "/v1/checkout/sessions")


def _event_list(store: Store, p: dict, _ctx: dict) -> dict:
    check_unknown(p, _LIST | {"type", "types", "delivery_success"})
    if p.get("type") and p.get("types"):
        raise ApiError(400, "You cannot specify both `type` and `types`.", param="types")
    patterns = [p["type"]] if p.get("type") else (p.get("types") or [])
    if isinstance(patterns, str):
        patterns = [patterns]
    delivered = to_bool(p["delivery_success"], "delivery_success") if "delivery_success" in p else None
    out = []
    for ev in sorted(store.events.values(), key=lambda e: e["_seq"], reverse=True):
        if patterns and not any(fnmatch.fnmatchcase(ev["type"], pat) for pat in patterns):
            continue
        if not match_created(ev["created"], p.get("created")):
            continue
        rendered = store.render_event(ev)
        if delivered is not None and (rendered["pending_webhooks"] == 0) != delivered:
            continue
        out.append(rendered)
    return paginate(out, p, "/v1/events")


def _refund_list(store: Store, p: dict, _ctx: dict) -> dict:
    check_unknown(p, _LIST | {"charge", "payment_intent"})
    items = [copy.deepcopy(r) for r in reversed(store.refunds.values())
             if all(p.get(k) is None or r[k] == p[k] for k in ("charge", "payment_intent"))
             and match_created(r["created"], p.get("created"))]
    return paginate(items, p, "/v1/refunds")


def _getter(kind: str) -> Callable[[Store, dict, dict], dict]:
    def handler(store: Store, p: dict, ctx: dict) -> dict:
        check_unknown(p, _EXPAND_ONLY)
        if kind == "event":
            ev = store.events.get(ctx["id"])
            if ev is None:
                raise ApiError(404, f"No such event: '{ctx['id']}'", param="id", code="resource_missing")
            return store.render_event(ev)
        if kind == "checkout.session":
            return checkout.render_session(store, checkout.get_session(store, ctx["id"]))
        return copy.deepcopy(refunds.get(store, kind, ctx["id"]))
    return handler


def _session_create(store: Store, p: dict, ctx: dict) -> dict:
    return checkout.render_session(store, checkout.create_session(store, p, ctx["request"]))


def _session_expire(store: Store, p: dict, ctx: dict) -> dict:
    check_unknown(p, _EXPAND_ONLY)
    session = checkout.get_session(store, ctx["id"])
    checkout.expire_session(store, session, ctx["request"])
    return checkout.render_session(store, session)


def _line_items(store: Store, p: dict, ctx: dict) -> dict:
    check_unknown(p, _LIST)
    session = checkout.get_session(store, ctx["id"])
    return paginate(copy.deepcopy(session["_line_items"]), p,
                    f"/v1/checkout/sessions/{ctx['id']}/line_items")


def _refund_create(store: Store, p: dict, ctx: dict) -> dict:
    return copy.deepcopy(refunds.create_refund(store, p, ctx["request"]))


_ID = r"(?P<id>[A-Za-z0-9_]+)"
ROUTES: list[tuple[str, re.Pattern, Callable[[Store, dict, dict], dict]]] = [
    (m, re.compile(rx + r"\Z"), fn) for m, rx, fn in [
        ("POST", r"/v1/checkout/sessions", _session_create),
        ("GET", r"/v1/checkout/sessions", _session_list),
        ("GET", rf"/v1/checkout/sessions/{_ID}", _getter("checkout.session")),
        ("POST", rf"/v1/checkout/sessions/{_ID}/expire", _session_expire),
        ("GET", rf"/v1/checkout/sessions/{_ID}/line_items", _line_items),
        ("GET", rf"/v1/payment_intents/{_ID}", _getter("payment_intent")),
        ("GET", rf"/v1/charges/{_ID}", _getter("charge")),
        ("POST", r"/v1/refunds", _refund_create),
        ("GET", r"/v1/refunds", _refund_list),
        ("GET", rf"/v1/refunds/{_ID}", _getter("refund")),
        ("GET", r"/v1/events", _event_list),
        ("GET", rf"/v1/events/{_ID}", _getter("event")),
    ]]


def _params(method: str, query: str, body: bytes, content_type: str) -> dict:
    try:
        params = decode_form(query)
        if method == "POST" and body:
            if "json" in content_type.lower():
                raise ApiError(400, "Invalid request (check that your POST content type is "
                               "application/x-www-form-urlencoded).")
            params.update(decode_form(body.decode("utf-8")))
    except FormError as exc:
        raise ApiError(400, str(exc), param=exc.param) from None
    except UnicodeDecodeError:
        raise ApiError(400, "Request body is not valid UTF-8.") from None
    return params


def handle(store: Store, method: str, path: str, query: str, body: bytes, headers: Any,
           expected_key: Optional[str] = None) -> Response:
    """Serve one /v1 request. Caller holds ``store.lock``."""
    request_id = new_id("req_", 14)
    out_headers = {"Request-Id": request_id, "Stripe-Version": store.api_version}
    idem = headers.get("Idempotency-Key") if method == "POST" else None
    if idem:
        out_headers["Idempotency-Key"] = idem
    try:
        key = _api_key(headers)
        if not key.startswith(("sk_", "rk_")) or (expected_key and key != expected_key):
            raise ApiError(401, f"Invalid API Key provided: {key[:8]}****{key[-4:]}")
        params = _params(method, query, body, headers.get("Content-Type") or "")
        fingerprint = (path, json.dumps(params, sort_keys=True))
        cached = store.idempotency.get((key, idem)) if idem else None
        if cached is not None:
            if cached["fingerprint"] != fingerprint:
                raise ApiError(400, "Keys for idempotent requests can only be used with the same "
                               "parameters they were first used with. Try using a key other than "
                               f"'{idem}' if you meant to execute a different request.",
                               type="idempotency_error")
            return cached["status"], copy.deepcopy(cached["body"]), {
                **out_headers, "Idempotent-Replayed": "true", "Original-Request": cached["request_id"]}
        checkout.sweep_expired(store)
        allowed = [r for r in ROUTES if r[1].match(path)]
        route = next((r for r in allowed if r[0] == method), None)
        if route is None:
            raise ApiError(404, f"Unrecognized request URL ({method}: {path}). Please see "
                           "https://stripe.com/docs or we can help at https://support.stripe.com/.")
        match = route[1].match(path)
        assert match is not None
        ctx = {"id": match.groupdict().get("id"),
               "request": {"id": request_id, "idempotency_key": idem}}
        result = apply_expand(store, route[2](store, params, ctx), params)
        if idem:
            store.idempotency[(key, idem)] = {"fingerprint": fingerprint, "status": 200,
                                              "body": copy.deepcopy(result), "request_id": request_id}
        return 200, result, out_headers
    except ApiError as exc:
        out_headers.update(exc.headers)
        body_out = exc.body()
        body_out["error"]["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return exc.status, body_out, out_headers
