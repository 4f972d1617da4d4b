"""Request ids, one log line per request and per job, and the log format (`LOG_FORMAT`).

Every request gets an id: the caller's `X-Request-ID` when it is a sane token, or a new one; the response carries
it back in `X-Request-ID`. The id sits in a context variable that a logging filter adds to every record, and jobs
queued during the request carry it (`current_request_id()`, read by the dispatcher), so the lines of a booking's
request and of the webhook job it led to can be found together.

`LOG_FORMAT=text` (the default, and what `make run` uses) leaves logging as Python sets it up; `LOG_FORMAT=json`
puts one JSON object per line on stderr (python-json-logger), with the request's or job's fields as keys.
"""
from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
import uuid
from contextlib import contextmanager

from flask import Flask, g, request

REQUEST_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
request_log = logging.getLogger("portal.requests")
job_log = logging.getLogger("portal.jobs")


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def request_id_scope(request_id: str | None):
    """Run a job (or anything) under the id of the request that asked for it."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record, so any line logged while serving a request or job names it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


def _json_handler() -> logging.Handler:
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                                       rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    handler.addFilter(RequestIdFilter())
    handler.set_name("portal-json")
    return handler


def configure(log_format: str) -> None:
    """Install the JSON handler on the root logger (once per process; a later call replaces it)."""
    if log_format != "json":
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == "portal-json":
            root.removeHandler(handler)
    root.addHandler(_json_handler())
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def _start_request(_endpoint=None, _values=None) -> None:
    """Runs first of all request hooks (an app-wide URL value preprocessor), so even a request that a studio
    lookup refuses has its id and its line."""
    given = request.headers.get(REQUEST_HEADER, "")
    g.request_id = given if _SANE_ID.match(given) else uuid.uuid4().hex
    g.request_started = time.perf_counter()
    g.request_id_token = _request_id.set(g.request_id)


def _finish_request(response):
    request_id = g.get("request_id")
    if request_id is None:
        return response
    response.headers[REQUEST_HEADER] = request_id
    user = g.get("_login_user")  # only when the request loaded it: logging never costs a query
    studio = g.get("studio")
    request_log.info(
        "%s %s %s", request.method, request.path, response.status_code,
        extra={"request_id": request_id, "method": request.method, "path": request.path,
               "route": request.url_rule.rule if request.url_rule else None,
               "status": response.status_code,
               "duration_ms": round((time.perf_counter() - g.request_started) * 1000, 2),
               "studio": studio.slug if studio is not None else None,
               "user_id": user.id if user is not None and user.is_authenticated else None})
    return response


def _leave_request(_error=None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        _request_id.reset(token)


_job_studio: contextvars.ContextVar[dict | None] = contextvars.ContextVar("job_studio", default=None)


@contextmanager
def job_studio_scope():
    """While a job runs: what it learns about the studio it concerns (`job_concerns`), for its log line."""
    learnt: dict = {}
    token = _job_studio.set(learnt)
    try:
        yield learnt
    finally:
        _job_studio.reset(token)


def job_concerns(studio_id: int, slug: str) -> None:
    """The job running now (if any) is about this studio: its log line names it without looking it up again. A job
    that learns of two studios (a batch of webhook events) names none."""
    learnt = _job_studio.get()
    if learnt is not None and learnt.setdefault("studio", (studio_id, slug)) != (studio_id, slug):
        learnt["studio"] = None


def log_job(name: str, args: tuple, outcome: str, started: float, *,
            studio: tuple[int, str] | None = None) -> None:
    """One line per job run: which job, its ids, the studio it concerns (id, slug) when it concerns one, how it
    ended and how long it took."""
    from rq import get_current_job

    rq_job = get_current_job()
    job_log.info("job %s%r %s", name, tuple(args), outcome,
                 extra={"job": name, "job_id": rq_job.id if rq_job is not None else None,
                        "job_args": list(args), "outcome": outcome,
                        "studio": studio[1] if studio else None, "studio_id": studio[0] if studio else None,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2)})


def init_app(app: Flask) -> None:
    configure(app.config["PORTAL_SETTINGS"].log_format)
    app.url_value_preprocessor(_start_request)
    app.after_request(_finish_request)
    app.teardown_request(_leave_request)
