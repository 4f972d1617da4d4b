"""Webhook signing (Stripe's ``Stripe-Signature`` scheme) and delivery."""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Optional

DEFAULTS: dict[str, Any] = {
    "url": None, "secret": None, "enabled_events": ["*"], "max_attempts": 5,
    "initial_delay": 0.5, "backoff_factor": 2.0, "max_delay": 30.0, "timeout": 5.0,
    "duplicates": 1, "out_of_order": False, "paused": False, "senders": 1,
}


def sign(payload: bytes, secret: str, timestamp: Optional[int] = None) -> str:
    """Return a ``Stripe-Signature`` header value for ``payload``."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256)
    return f"t={ts},v1={mac.hexdigest()}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # Stripe treats redirects as failed deliveries


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


class Dispatcher:
    """Queues events and POSTs them to the configured endpoint with retries.

    ``senders`` deliveries are in flight at once (one by default, so tests see events in the order they
    happened). Stripe itself delivers concurrently: a load test raises it, or one slow answer from the endpoint
    would hold back every event behind it and the stand-in, not the endpoint, would set the pace.
    """

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown webhook options: {sorted(unknown)}")
        self.initial = {**DEFAULTS, **config}
        self.cond = threading.Condition()
        self._seq = itertools.count()
        self._stop = False
        self._inflight = 0
        self.generation = 0
        self.reset()
        self._threads: list[threading.Thread] = []
        self._start_senders()

    def _start_senders(self) -> None:
        """One delivery thread per sender (threads are added when ``senders`` grows, never removed: a smaller
        ``senders`` only leaves some idle)."""
        while len(self._threads) < max(1, int(self.config["senders"])):
            thread = threading.Thread(target=self._run, name=f"standin-webhooks-{len(self._threads) + 1}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    # -- configuration -----------------------------------------------------
    def reset(self) -> None:
        with self.cond:
            self.config = copy.deepcopy(self.initial)
            self._queue: list[tuple[float, int, dict]] = []
            self._held: list[dict] = []
            self._pending: dict[str, bool] = {}
            self.attempts: list[dict] = []
            self.generation += 1
            self.cond.notify_all()

    def configure(self, **changes: Any) -> dict:
        with self.cond:
            for key, value in changes.items():
                if key not in DEFAULTS:
                    raise KeyError(key)
                self.config[key] = value
            if changes.get("out_of_order") is False:
                self._release_held()
            self._start_senders()
            self.cond.notify_all()
            return dict(self.config)

    def flush(self) -> int:
        """Release held (out-of-order) events, newest first."""
        with self.cond:
            count = len(self._held)
            self._release_held()
            self.cond.notify_all()
            return count

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for job in reversed(held):
            self._push(job, 0.0)

    def _push(self, job: dict, delay: float) -> None:
        heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), job))

    # -- intake ------------------------------------------------------------
    def enabled(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pat) for pat in self.config["enabled_events"])

    def enqueue(self, event: dict, force: bool = False) -> bool:
        with self.cond:
            if not self.config["url"] or not (force or self.enabled(event["type"])):
                return False
            self._pending.setdefault(event["id"], True)
            for copy_no in range(1, max(1, int(self.config["duplicates"])) + 1):
                job = {"event": event, "attempt": 0, "copy": copy_no}
                if self.config["out_of_order"]:
                    self._held.append(job)
                else:
                    self._push(job, 0.0)
            self.cond.notify_all()
            return True

    def pending_count(self, event_id: str) -> int:
        with self.cond:
            return 1 if self._pending.get(event_id) else 0

    def status(self) -> dict:
        with self.cond:
            return {"queued": len(self._queue), "held": len(self._held),
                    "in_flight": self._inflight, "attempts": len(self.attempts)}

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until nothing is queued or in flight (held events don't count)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self._queue or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    # -- worker ------------------------------------------------------------
    def stop(self) -> None:
        with self.cond:
            self._stop = True
            self.cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def _next_job(self) -> Optional[tuple[dict, dict, int]]:
        with self.cond:
            while not self._stop:
                if self._queue and not self.config["paused"] and self._inflight < int(self.config["senders"]):
                    wait = self._queue[0][0] - time.monotonic()
                    if wait <= 0:
                        job = heapq.heappop(self._queue)[2]
                        self._inflight += 1
                        return job, dict(self.config), self.generation
                    self.cond.wait(wait)
                else:
                    self.cond.wait()
            return None

    def _run(self) -> None:
        while (item := self._next_job()) is not None:
            job, config, generation = item
            job["attempt"] += 1
            record = self._deliver(job, config)
            with self.cond:
                self._inflight -= 1
                if generation == self.generation:
                    self._after(job, record, config)
                self.cond.notify_all()

    def _after(self, job: dict, record: dict, config: dict) -> None:
        record["id"] = len(self.attempts) + 1
        self.attempts.append(record)
        event_id = job["event"]["id"]
        if record["succeeded"]:
            self._pending[event_id] = False
        elif job["attempt"] < int(config["max_attempts"]):
            delay = float(config["initial_delay"]) * float(config["backoff_factor"]) ** (job["attempt"] - 1)
            record["next_retry_in"] = min(delay, float(config["max_delay"]))
            self._push(job, record["next_retry_in"])

    def _deliver(self, job: dict, config: dict) -> dict:
        event = dict(job["event"], pending_webhooks=self.pending_count(job["event"]["id"]))
        body = json.dumps(event, indent=2).encode()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
        if config["secret"]:
            headers["Stripe-Signature"] = sign(body, config["secret"])
        record: dict[str, Any] = {
            "event_id": event["id"], "event_type": event["type"], "attempt": job["attempt"],
            "copy": job["copy"], "url": config["url"], "signature": headers.get("Stripe-Signature"),
            "status": None, "error": None, "succeeded": False, "at": time.time(),
        }
        request = urllib.request.Request(config["url"], data=body, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=float(config["timeout"])) as resp:
                record["status"] = resp.status
                record["response_body"] = resp.read(500).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            record["status"] = exc.code
            try:
                record["response_body"] = exc.read(500).decode("utf-8", "replace")
            finally:
                exc.close()
        except (OSError, ValueError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["succeeded"] = record["status"] is not None and 200 <= record["status"] < 300
        return record
