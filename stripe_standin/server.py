"""HTTP server wiring: request handler, background ticker, ``start_server``."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit

from . import api, checkout, checkout_page, control
from .store import Store
from .webhooks import Dispatcher


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    server: "StandinServer"
    # Keep-alive, as Stripe's API offers: a client's calls reuse one connection instead of connecting each time
    # (every answer carries Content-Length). An idle connection is closed after `timeout` seconds.
    # Headers and body go out in two writes; without TCP_NODELAY the second waits for the client's delayed ACK
    # (about 40 ms) on a kept-alive connection.
    protocol_version = "HTTP/1.1"
    timeout = 60
    disable_nagle_algorithm = True
    server_version = "stripe-standin/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, status: int, body: bytes, content_type: str, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: Optional[dict] = None) -> None:
        body = json.dumps(payload, indent=2).encode()
        self._send(status, body, "application/json", headers)

    def _dispatch(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            self._route(method, raw)
        except Exception as exc:  # a bug here must not look like a network error
            traceback.print_exc()
            self._json(500, {"error": {"type": "api_error",
                                       "message": f"stripe_standin internal error: {exc!r}"}})

    def _route(self, method: str, raw: bytes) -> None:
        srv = self.server
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        if path.startswith("/v1/"):
            with srv.store.lock:
                status, payload, headers = api.handle(srv.store, method, path, parts.query, raw,
                                                      self.headers, srv.api_key)
            self._json(status, payload, headers)
        elif path.startswith("/c/pay/"):
            self._checkout(method, path[len("/c/pay/"):], raw)
        elif path.startswith("/_standin/"):
            if not is_loopback(self.client_address[0]):
                self._json(403, {"error": {"message": "control API is loopback-only"}})
                return
            status, payload = control.handle(srv, method, path, dict(parse_qsl(parts.query)), raw)
            self._json(status, payload)
        else:
            self._json(404, {"error": {"type": "invalid_request_error",
                                       "message": f"Unrecognized request URL ({method}: {path})."}})

    def _checkout(self, method: str, sid: str, raw: bytes) -> None:
        srv = self.server
        with srv.store.lock:
            checkout.sweep_expired(srv.store)
            if method == "POST":
                form = dict(parse_qsl(raw.decode("utf-8", "replace")))
                status, page, location = checkout_page.handle_post(
                    srv.store, sid, form.get("action", ""), srv.async_delay)
            else:
                (status, page), location = checkout_page.render(srv.store, sid), None
        if location:
            self._send(303, b"", "text/html; charset=utf-8", {"Location": location})
        else:
            self._send(status, page.encode(), "text/html; charset=utf-8")


class StandinServer(ThreadingHTTPServer):
    """The stand-in. ``shutdown()`` also stops its background threads."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, api_key: Optional[str] = None,
                 api_version: Optional[str] = None, async_delay: float = 0.5,
                 tick: float = 0.1, verbose: bool = False, public_url: Optional[str] = None,
                 **webhook_opts: Any) -> None:
        if not is_loopback(host if host != "localhost" else "127.0.0.1"):
            raise ValueError(f"stripe_standin binds to loopback only, not {host!r}")
        self.dispatcher = Dispatcher(**webhook_opts)
        self.store = Store(api_version=api_version, on_event=self.dispatcher.enqueue,
                           pending_webhooks=self.dispatcher.pending_count)
        self.api_key, self.verbose, self.tick = api_key, verbose, tick
        self.initial_async_delay = self.async_delay = async_delay
        try:
            super().__init__((socket.gethostbyname(host), port), Handler)
        except BaseException:
            self.dispatcher.stop()
            raise
        bound_host, bound_port = self.server_address[:2]
        self.base_url = (public_url or f"http://{bound_host}:{bound_port}").rstrip("/")
        self.store.base_url = self.base_url
        self._stop_ticker = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="standin-ticker", daemon=True)
        self._ticker.start()
        self._serve_thread: Optional[threading.Thread] = None

    def _tick_loop(self) -> None:
        while not self._stop_ticker.wait(self.tick):
            with self.store.lock:
                checkout.sweep_expired(self.store)
                self.store.run_due_tasks()

    def reset(self) -> None:
        with self.store.lock:
            self.store.reset()
            self.dispatcher.reset()
            self.async_delay = self.initial_async_delay

    def shutdown(self) -> None:
        """Stop serving (if started by ``serve_in_thread``) and release everything."""
        if self._serve_thread is not None:
            super().shutdown()
            self._serve_thread.join(timeout=10)
            self._serve_thread = None
        self.close()

    def close(self) -> None:
        """Stop background threads and close the socket (after ``serve_forever`` returned)."""
        self._stop_ticker.set()
        self._ticker.join(timeout=10)
        self.dispatcher.stop()
        self.server_close()

    def serve_in_thread(self) -> None:
        self._serve_thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                              name="standin-http", daemon=True)
        self._serve_thread.start()


def start_server(port: int = 0, host: str = "127.0.0.1", **opts: Any) -> tuple[StandinServer, str]:
    """Start the stand-in in a daemon thread; returns ``(server, base_url)``.

    Options: ``webhook_url``/``url``, ``webhook_secret``/``secret``, ``api_key``
    (require this exact key), ``api_version``, ``async_delay``, ``tick``,
    ``verbose``, ``public_url`` and the webhook settings ``enabled_events``,
    ``max_attempts``, ``initial_delay``, ``backoff_factor``, ``max_delay``,
    ``timeout``, ``duplicates``, ``out_of_order``, ``paused``, ``senders``.
    """
    if "webhook_url" in opts:
        opts["url"] = opts.pop("webhook_url")
    if "webhook_secret" in opts:
        opts["secret"] = opts.pop("webhook_secret")
    server = StandinServer(host, port, **opts)
    server.serve_in_thread()
    return server, server.base_url
