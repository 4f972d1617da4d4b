"""Checkout Sessions: creation/validation, expiry, and payment outcomes."""

from __future__ import annotations

import copy
from typing import Any, Optional

from .store import ApiError, Store, missing, new_id, to_int

SESSION_CREATE_PARAMS = frozenset("""
adaptive_pricing after_expiration allow_promotion_codes allowed_payment_method_types
automatic_tax billing_address_collection branding_settings cancel_url client_reference_id
consent_collection currency custom_fields custom_text customer customer_account
customer_creation customer_email customer_update discounts excluded_payment_method_types
expand expires_at integration_identifier invoice_creation line_items locale
managed_payments metadata mode name_collection optional_items origin_context
payment_intent_data payment_method_collection payment_method_configuration
payment_method_data payment_method_options payment_method_types permissions
phone_number_collection redirect_on_completion return_url saved_payment_method_options
setup_intent_data shipping_address_collection shipping_options submit_type
subscription_data success_url tax_id_collection ui_mode wallet_options
""".split())

MIN_EXPIRY, MAX_EXPIRY, EXPIRY_SLACK = 30 * 60, 24 * 60 * 60, 10


def check_unknown(params: dict, allowed: frozenset) -> None:
    for key in params:
        if key not in allowed:
            raise ApiError(400, f"Received unknown parameter: {key}", param=key,
                           code="parameter_unknown")


def required(params: dict, key: str, prefix: str = "") -> Any:
    value = params.get(key)
    if value is None or value == "":
        raise ApiError(400, f"Missing required param: {prefix}{key}.", param=prefix + key,
                       code="parameter_missing")
    return value


def validate_metadata(value: Any, param: str = "metadata") -> dict:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "Invalid object", param=param)
    if len(value) > 50:
        raise ApiError(400, "Metadata can have at most 50 keys.", param=param)
    out = {}
    for k, v in value.items():
        if not isinstance(v, str):
            raise ApiError(400, "Metadata values must be strings.", param=f"{param}[{k}]")
        if len(k) > 40 or len(v) > 500:
            raise ApiError(400, "Metadata key/value too long.", param=f"{param}[{k}]")
        if v != "":
            out[k] = v
    return out


def _url(params: dict, key: str, needed: bool) -> Optional[str]:
    value = required(params, key) if needed else params.get(key)
    if value is not None and not (isinstance(value, str) and value.startswith(("http://", "https://"))):
        raise ApiError(400, "Not a valid URL", param=key, code="url_invalid")
    return value


def _line_item(item: Any, i: int, store: Store) -> dict:
    p = f"line_items[{i}]"
    if not isinstance(item, dict):
        raise ApiError(400, "Invalid object", param=p)
    if item.get("price"):
        raise ApiError(404, f"No such price: '{item['price']}'", param=f"{p}[price]",
                       code="resource_missing")
    pd = required(item, "price_data", p + "[")
    if not isinstance(pd, dict):
        raise ApiError(400, "Invalid object", param=f"{p}[price_data]")
    pp = f"{p}[price_data]["
    currency = str(required(pd, "currency", pp)).lower()
    if len(currency) != 3 or not currency.isalpha():
        raise ApiError(400, f"Invalid currency: {currency}", param=f"{p}[price_data][currency]")
    unit_amount = to_int(required(pd, "unit_amount", pp), f"{p}[price_data][unit_amount]", minimum=0)
    product = required(pd, "product_data", pp)
    name = required(product, "name", f"{p}[price_data][product_data][") if isinstance(product, dict) else None
    quantity = to_int(required(item, "quantity", p + "["), f"{p}[quantity]", minimum=1)
    total = unit_amount * quantity
    return {"id": new_id("li_"), "object": "item", "amount_discount": 0,
            "amount_subtotal": total, "amount_tax": 0, "amount_total": total,
            "currency": currency, "description": name, "quantity": quantity,
            "price": {"id": new_id("price_"), "object": "price", "active": False,
                      "currency": currency, "unit_amount": unit_amount, "type": "one_time",
                      "product": new_id("prod_", 14), "livemode": False, "created": store.now()}}


def create_session(store: Store, params: dict, request: dict) -> dict:
    check_unknown(params, SESSION_CREATE_PARAMS)
    mode = required(params, "mode")
    if mode != "payment":
        raise ApiError(400, "The stand-in only supports mode=payment.", param="mode")
    success_url = _url(params, "success_url", True)
    cancel_url = _url(params, "cancel_url", False)
    items = required(params, "line_items")
    if not isinstance(items, list):
        raise ApiError(400, "Invalid array", param="line_items")
    lines = [_line_item(item, i, store) for i, item in enumerate(items)]
    currencies = {li["currency"] for li in lines}
    if len(currencies) > 1 or (params.get("currency") and params["currency"].lower() not in currencies):
        raise ApiError(400, "All line items must use the same currency.", param="line_items")
    now = store.now()
    expires_at = now + MAX_EXPIRY
    if params.get("expires_at") is not None:
        expires_at = to_int(params["expires_at"], "expires_at")
        if expires_at < now + MIN_EXPIRY - EXPIRY_SLACK or expires_at > now + MAX_EXPIRY + EXPIRY_SLACK:
            raise ApiError(400, "The `expires_at` timestamp must be at least 30 minutes and at most "
                           "24 hours from Checkout Session creation.", param="expires_at")
    ref = params.get("client_reference_id")
    if ref is not None and (not isinstance(ref, str) or len(ref) > 200):
        raise ApiError(400, "client_reference_id must be at most 200 characters.",
                       param="client_reference_id")
    pid = params.get("payment_intent_data") or {}
    if not isinstance(pid, dict):
        raise ApiError(400, "Invalid object", param="payment_intent_data")
    total = sum(li["amount_total"] for li in lines)
    session = {
        "id": new_id("cs_test_", 58), "object": "checkout.session", "mode": "payment",
        "amount_subtotal": total, "amount_total": total, "currency": currencies.pop(),
        "status": "open", "payment_status": "unpaid", "payment_intent": None,
        "client_reference_id": ref, "metadata": validate_metadata(params.get("metadata")),
        "customer": None, "customer_email": params.get("customer_email"),
        "customer_details": None, "expires_at": expires_at, "created": now,
        "success_url": success_url, "cancel_url": cancel_url, "livemode": False,
        "locale": params.get("locale"), "ui_mode": "hosted", "url": None,
        "payment_method_types": ["card"],
        "_line_items": lines, "_pi": None,
        "_pi_metadata": validate_metadata(pid.get("metadata"), "payment_intent_data[metadata]"),
        "_pi_description": pid.get("description"),
    }
    store.sessions[session["id"]] = session
    return session


def get_session(store: Store, sid: str) -> dict:
    session = store.sessions.get(sid)
    if session is None:
        raise missing("checkout.session", sid)
    return session


def render_session(store: Store, s: dict) -> dict:
    out = {k: copy.deepcopy(v) for k, v in s.items() if not k.startswith("_")}
    out["url"] = f"{store.base_url}/c/pay/{s['id']}" if s["status"] == "open" else None
    return out


def expire_session(store: Store, s: dict, request: Optional[dict] = None) -> None:
    if s["status"] != "open":
        raise ApiError(400, 'Only Checkout Sessions with a status in ["open"] can be expired.',
                       param="session", code="checkout_session_not_open")
    s["status"] = "expired"
    pi = store.payment_intents.get(s["_pi"] or "")
    if pi is not None and pi["status"] not in ("succeeded", "canceled"):
        pi.update(status="canceled", canceled_at=store.now(), cancellation_reason="abandoned")
    store.emit("checkout.session.expired", render_session(store, s), request)


def sweep_expired(store: Store) -> None:
    now = store.now()
    for s in list(store.sessions.values()):
        if s["status"] == "open" and s["expires_at"] <= now:
            expire_session(store, s)


def _ensure_pi(store: Store, s: dict) -> dict:
    pi = store.payment_intents.get(s["_pi"] or "")
    if pi is None:
        pid = new_id("pi_")
        pi = {"id": pid, "object": "payment_intent", "amount": s["amount_total"],
              "amount_capturable": 0, "amount_received": 0, "currency": s["currency"],
              "status": "requires_payment_method", "latest_charge": None,
              "metadata": dict(s["_pi_metadata"]), "description": s["_pi_description"],
              "created": store.now(), "livemode": False, "last_payment_error": None,
              "capture_method": "automatic", "payment_method_types": ["card"],
              "canceled_at": None, "cancellation_reason": None,
              "client_secret": f"{pid}_secret_{new_id('', 25)}", "receipt_email": None}
        store.payment_intents[pid] = pi
        s["_pi"] = pid
        store.emit("payment_intent.created", pi)
    pi["amount"] = s["amount_total"]
    return pi


def _new_charge(store: Store, s: dict, pi: dict, status: str) -> dict:
    ok = status == "succeeded"
    charge = {"id": new_id("ch_"), "object": "charge", "amount": pi["amount"],
              "amount_captured": pi["amount"] if ok else 0, "amount_refunded": 0,
              "captured": ok, "currency": pi["currency"], "created": store.now(),
              "paid": ok, "refunded": False, "status": status, "payment_intent": pi["id"],
              "metadata": dict(pi["metadata"]), "livemode": False, "failure_code": None,
              "failure_message": None, "billing_details": {"email": s["customer_email"]}}
    store.charges[charge["id"]] = charge
    pi["latest_charge"] = charge["id"]
    return charge


_DECLINE = {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
            "message": "Your card was declined."}


def _succeed(store: Store, pi: dict, charge: dict) -> None:
    charge.update(status="succeeded", paid=True, captured=True, amount_captured=charge["amount"])
    pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None)
    store.emit("charge.succeeded", charge)
    store.emit("payment_intent.succeeded", pi)


def _fail(store: Store, pi: dict, charge: dict) -> None:
    charge.update(status="failed", paid=False, failure_code="card_declined",
                  failure_message=_DECLINE["message"])
    pi.update(status="requires_payment_method", last_payment_error=dict(_DECLINE))
    store.emit("charge.failed", charge)
    store.emit("payment_intent.payment_failed", pi)


def _complete(store: Store, s: dict, payment_status: str, pi: Optional[dict]) -> None:
    s.update(status="complete", payment_status=payment_status,
             payment_intent=pi["id"] if pi else None,
             customer_details={"email": s["customer_email"] or "customer@example.com",
                               "name": None, "phone": None})


OUTCOMES = ("pay", "decline", "async_success", "async_fail")


def pay(store: Store, sid: str, outcome: str, async_delay: float) -> Optional[str]:
    """Apply a hosted-page action. Returns an error message for declines."""
    s = get_session(store, sid)
    if outcome not in OUTCOMES:
        raise ApiError(400, f"Unknown outcome {outcome!r}; use one of {OUTCOMES}", param="outcome")
    if s["status"] != "open":
        raise ApiError(400, f"This Checkout Session is {s['status']} and can no longer be paid.",
                       param="session", code="checkout_session_not_open")
    if s["amount_total"] == 0:
        _complete(store, s, "no_payment_required", None)
        store.emit("checkout.session.completed", render_session(store, s))
        return None
    pi = _ensure_pi(store, s)
    if outcome == "pay":
        _succeed(store, pi, _new_charge(store, s, pi, "pending"))
        _complete(store, s, "paid", pi)
        store.emit("checkout.session.completed", render_session(store, s))
        return None
    if outcome == "decline":
        _fail(store, pi, _new_charge(store, s, pi, "pending"))
        return _DECLINE["message"]
    charge = _new_charge(store, s, pi, "pending")
    pi["status"] = "processing"
    store.emit("charge.pending", charge)
    _complete(store, s, "unpaid", pi)
    store.emit("checkout.session.completed", render_session(store, s))

    def resolve() -> None:
        if outcome == "async_success":
            _succeed(store, pi, charge)
            s["payment_status"] = "paid"
            store.emit("checkout.session.async_payment_succeeded", render_session(store, s))
        else:
            _fail(store, pi, charge)
            store.emit("checkout.session.async_payment_failed", render_session(store, s))

    store.schedule(async_delay, resolve)
    return None
