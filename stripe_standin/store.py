"""In-memory state of the stand-in: objects, events, idempotency, clock."""

from __future__ import annotations

import copy
import secrets
import string
import threading
import time
from typing import Any, Callable, Optional

DEFAULT_API_VERSION = "2026-10-28.endive"
_ALPHABET = string.ascii_letters + string.digits


class ApiError(Exception):
    """A Stripe-shaped error; rendered as ``{"error": {...}}``."""

    def __init__(self, status: int, message: str, *, param: Optional[str] = None,
                 code: Optional[str] = None, type: str = "invalid_request_error",
                 headers: Optional[dict] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        self.headers = headers or {}

    def body(self) -> dict:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param is not None:
            err["param"] = self.param
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        return {"error": err}


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def missing(kind: str, obj_id: str, param: str = "id") -> ApiError:
    return ApiError(404, f"No such {kind}: '{obj_id}'", param=param, code="resource_missing")


class Store:
    """All mutable state.  Every access must hold ``self.lock``."""

    def __init__(self, *, api_version: Optional[str] = None,
                 on_event: Optional[Callable[[dict], None]] = None,
                 pending_webhooks: Optional[Callable[[str], int]] = None) -> None:
        self.lock = threading.RLock()
        self.api_version = api_version or DEFAULT_API_VERSION
        self.on_event = on_event
        self.pending_webhooks = pending_webhooks or (lambda _eid: 0)
        self.base_url = ""
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.clock_offset = 0.0
            self.seq = 0
            self.sessions: dict[str, dict] = {}
            self.session_internal: dict[str, dict] = {}  # line items, hidden state
            self.payment_intents: dict[str, dict] = {}
            self.charges: dict[str, dict] = {}
            self.refunds: dict[str, dict] = {}
            self.events: dict[str, dict] = {}
            self.idempotency: dict[tuple, dict] = {}
            self.refund_failures: list[str] = []  # modes for the next refunds
            self.tasks: list[tuple[float, int, Callable[[], None]]] = []

    # -- clock -------------------------------------------------------------
    def now_float(self) -> float:
        return time.time() + self.clock_offset

    def now(self) -> int:
        return int(self.now_float())

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # -- events ------------------------------------------------------------
    def emit(self, event_type: str, obj: dict, request: Optional[dict] = None) -> dict:
        event = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": self.api_version,
            "created": self.now(),
            "data": {"object": copy.deepcopy(obj)},
            "livemode": False,
            "pending_webhooks": 0,
            "request": request or {"id": None, "idempotency_key": None},
            "type": event_type,
            "_seq": self.next_seq(),
        }
        self.events[event["id"]] = event
        if self.on_event is not None:
            self.on_event(self.render_event(event))
        return event

    def render_event(self, event: dict) -> dict:
        out = {k: copy.deepcopy(v) for k, v in event.items() if not k.startswith("_")}
        out["pending_webhooks"] = self.pending_webhooks(event["id"])
        return out

    # -- scheduled work (async payment outcomes) ----------------------------
    def schedule(self, delay: float, fn: Callable[[], None]) -> None:
        self.tasks.append((time.monotonic() + delay, self.next_seq(), fn))

    def run_due_tasks(self) -> None:
        now = time.monotonic()
        due = sorted(t for t in self.tasks if t[0] <= now)
        if not due:
            return
        self.tasks = [t for t in self.tasks if t[0] > now]
        for _when, _seq, fn in due:
            fn()


def match_created(value: int, flt: Any, param: str = "created") -> bool:
    """Apply Stripe's ``created`` filter (int or {gt,gte,lt,lte})."""
    if flt is None:
        return True
    if isinstance(flt, str):
        return value == to_int(flt, param)
    if not isinstance(flt, dict):
        raise ApiError(400, f"Invalid {param}", param=param)
    ops = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
    for op, bound in flt.items():
        if op not in ops:
            raise ApiError(400, f"Received unknown parameter: {param}[{op}]", param=f"{param}[{op}]")
        if not ops[op](value, to_int(bound, f"{param}[{op}]")):
            return False
    return True


def to_int(value: Any, param: str, *, minimum: Optional[int] = None,
           maximum: Optional[int] = None) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Invalid integer: {value}", param=param) from None
    if minimum is not None and out < minimum:
        raise ApiError(400, f"This value must be greater than or equal to {minimum}.", param=param)
    if maximum is not None and out > maximum:
        raise ApiError(400, f"This value must be less than or equal to {maximum}.", param=param)
    return out


def to_bool(value: Any, param: str) -> bool:
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise ApiError(400, f"Invalid boolean: {value}", param=param)


def paginate(items: list[dict], params: dict, url: str) -> dict:
    """Stripe list envelope over ``items`` (already in newest-first order)."""
    limit = to_int(params.get("limit", 10), "limit", minimum=1, maximum=100)
    after, before = params.get("starting_after"), params.get("ending_before")
    ids = [o["id"] for o in items]
    if after is not None:
        if after not in ids:
            raise missing("object", after, "starting_after")
        start = ids.index(after) + 1
        page = items[start:start + limit]
        has_more = start + limit < len(items)
    elif before is not None:
        if before not in ids:
            raise missing("object", before, "ending_before")
        end = ids.index(before)
        start = max(0, end - limit)
        page = items[start:end]
        has_more = start > 0
    else:
        page = items[:limit]
        has_more = len(items) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}
