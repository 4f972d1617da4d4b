"""The hosted checkout page (``/c/pay/<session id>``): plain HTML forms."""

from __future__ import annotations

import html
from typing import Optional

from .checkout import get_session, pay
from .store import ApiError, Store

ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())

_STYLE = """body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;color:#1a1f36}
.box{border:1px solid #e3e8ee;border-radius:8px;padding:1.5rem}
.amount{font-size:2rem;font-weight:600}.err{color:#df1b41;font-weight:600}
button{display:block;width:100%;margin:.5rem 0;padding:.7rem;font-size:1rem;border-radius:6px;
border:1px solid #635bff;background:#fff;cursor:pointer}button.primary{background:#635bff;color:#fff}
table{width:100%;border-collapse:collapse}td{padding:.25rem 0}td.r{text-align:right}
small{color:#697386}"""


def format_amount(amount: int, currency: str) -> str:
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount} {currency.upper()}"
    return f"{amount / 100:,.2f} {currency.upper()}"


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><main class=\"box\">{body}</main></body></html>")


def render(store: Store, sid: str, error: Optional[str] = None) -> tuple[int, str]:
    """Return (status, html) for the hosted page of a session."""
    try:
        s = get_session(store, sid)
    except ApiError:
        return 404, _page("Not found", "<h1>Checkout Session not found</h1>"
                          f"<p><code>{html.escape(sid)}</code></p>")
    esc = html.escape
    amount = format_amount(s["amount_total"], s["currency"])
    head = (f"<h1>Stand-in Checkout</h1><p><small>Session <code id=\"session-id\">{esc(sid)}</code>"
            f"</small></p><p class=\"amount\" id=\"amount\">{esc(amount)}</p>")
    rows = "".join(
        f"<tr><td>{esc(str(li['description']))} &times; {li['quantity']}</td>"
        f"<td class=\"r\">{esc(format_amount(li['amount_total'], li['currency']))}</td></tr>"
        for li in s["_line_items"])
    head += f"<table>{rows}</table>"
    if s["customer_email"]:
        head += f"<p>Email: <span id=\"email\">{esc(s['customer_email'])}</span></p>"
    if s["status"] != "open":
        message = {"complete": "This Checkout Session is complete.",
                   "expired": "This Checkout Session has expired."}[s["status"]]
        link = ""
        if s["status"] == "complete":
            link = f"<p><a href=\"{esc(success_redirect(s))}\">Return to merchant</a></p>"
        return 200, _page("Checkout", head + f"<p id=\"status\" data-status=\"{s['status']}\">"
                          f"{message}</p>{link}")
    err = f"<p class=\"err\" id=\"error\" role=\"alert\">{esc(error)}</p>" if error else ""
    buttons = [("pay", "Pay " + amount, "primary"), ("decline", "Decline (card declined)", ""),
               ("async_success", "Pay (async/delayed) \u2014 succeeds", ""),
               ("async_fail", "Pay (async/delayed) \u2014 fails", ""),
               ("cancel", "Cancel and return", "")]
    form = "".join(f"<button type=\"submit\" name=\"action\" value=\"{v}\" class=\"{c}\">"
                   f"{esc(label)}</button>" for v, label, c in buttons)
    body = (head + err + f"<form method=\"post\" action=\"/c/pay/{esc(sid)}\">{form}</form>"
            f"<p><small>Expires at {s['expires_at']} (unix time)</small></p>")
    return 200, _page("Checkout", body)


def success_redirect(s: dict) -> str:
    return s["success_url"].replace("{CHECKOUT_SESSION_ID}", s["id"])


def handle_post(store: Store, sid: str, action: str,
                async_delay: float) -> tuple[int, str, Optional[str]]:
    """Apply a form action. Returns (status, html, redirect location or None)."""
    if sid not in store.sessions:
        status, page = render(store, sid)
        return status, page, None
    s = store.sessions[sid]
    if action == "cancel":
        if s["cancel_url"]:
            return 303, "", s["cancel_url"].replace("{CHECKOUT_SESSION_ID}", sid)
        status, page = render(store, sid)
        return status, page, None
    try:
        error = pay(store, sid, action, async_delay)
    except ApiError as exc:
        status, page = render(store, sid, exc.message)
        return (409 if exc.code == "checkout_session_not_open" else 400), page, None
    if error is not None:
        status, page = render(store, sid, error)
        return 402, page, None
    return 303, "", success_redirect(s)
