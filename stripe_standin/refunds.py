"""Refunds (with injectable failures) against charges of PaymentIntents."""

from __future__ import annotations

from .checkout import check_unknown, validate_metadata
from .store import ApiError, Store, missing, new_id, to_int

REFUND_CREATE_PARAMS = frozenset("""
amount charge currency customer expand instructions_email metadata origin
payment_intent reason refund_application_fee reverse_transfer
""".split())
REASONS = ("duplicate", "fraudulent", "requested_by_customer")
FAILURE_MODES = ("failed", "402", "500", "lost")


def _fmt(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency.upper()}"


def _resolve_charge(store: Store, params: dict) -> dict:
    pi_id, ch_id = params.get("payment_intent"), params.get("charge")
    if not pi_id and not ch_id:
        raise ApiError(400, "One of the following params should be provided for this request: "
                       "payment_intent or charge.", param="payment_intent",
                       code="parameter_missing")
    if pi_id:
        pi = store.payment_intents.get(pi_id)
        if pi is None:
            raise missing("payment_intent", pi_id, "payment_intent")
        charge = store.charges.get(pi["latest_charge"] or "")
        if pi["status"] != "succeeded" or charge is None:
            raise ApiError(400, f"This PaymentIntent ({pi_id}) does not have a successful charge "
                           "to refund.", param="payment_intent", code="charge_not_refundable")
        if ch_id and ch_id != charge["id"]:
            raise ApiError(400, "The charge does not belong to the payment_intent.", param="charge")
        return charge
    charge = store.charges.get(ch_id)
    if charge is None:
        raise missing("charge", ch_id, "charge")
    if charge["status"] != "succeeded":
        raise ApiError(400, f"Charge {ch_id} has not succeeded and cannot be refunded.",
                       param="charge", code="charge_not_refundable")
    return charge


def create_refund(store: Store, params: dict, request: dict) -> dict:
    check_unknown(params, REFUND_CREATE_PARAMS)
    charge = _resolve_charge(store, params)
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise ApiError(400, f"Charge {charge['id']} has already been refunded.",
                       param="charge", code="charge_already_refunded")
    amount = remaining
    if params.get("amount") is not None:
        amount = to_int(params["amount"], "amount", minimum=1)
        if amount > remaining:
            raise ApiError(400, f"Refund amount ({_fmt(amount, charge['currency'])}) is greater "
                           f"than unrefunded amount on charge ({_fmt(remaining, charge['currency'])})",
                           param="amount", code="amount_too_large")
    reason = params.get("reason") or None
    if reason is not None and reason not in REASONS:
        raise ApiError(400, f"Invalid reason: must be one of {', '.join(REASONS)}", param="reason")
    metadata = validate_metadata(params.get("metadata"))
    mode = store.refund_failures.pop(0) if store.refund_failures else None
    if mode == "402":
        raise ApiError(402, "The refund could not be processed by the card issuer.",
                       type="card_error", code="card_declined")
    if mode == "500":
        raise ApiError(500, "An unknown error occurred while processing the refund.",
                       type="api_error")
    refund = {"id": new_id("re_"), "object": "refund", "amount": amount,
              "charge": charge["id"], "payment_intent": charge["payment_intent"],
              "currency": charge["currency"], "created": store.now(), "metadata": metadata,
              "reason": reason, "status": "succeeded", "failure_reason": None,
              "balance_transaction": None, "receipt_number": None}
    store.refunds[refund["id"]] = refund
    if mode == "failed":
        refund.update(status="failed", failure_reason="declined")
        store.emit("refund.created", refund, request)
        store.emit("refund.failed", refund, request)
        return refund
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    store.emit("charge.refunded", charge, request)
    store.emit("refund.created", refund, request)
    if mode == "lost":  # the refund is made, but the answer never reaches the caller
        raise ApiError(500, "An unknown error occurred while processing the refund.", type="api_error")
    return refund


def get(store: Store, kind: str, obj_id: str) -> dict:
    table = {"payment_intent": store.payment_intents, "charge": store.charges,
             "refund": store.refunds}[kind]
    obj = table.get(obj_id)
    if obj is None:
        raise missing(kind, obj_id)
    return obj
