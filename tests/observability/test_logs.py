"""Request ids in and out, one log line per request and per job, JSON lines, and the request id carried into the
jobs a request queues (in-process and through RQ to a real worker process)."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest

from portal import logs
from portal.config import PROJECT_ROOT
from tests.conftest import STRIPE_WEBHOOK_SECRET, TEST_SECRET, stripe_env
from tests.factories import make_studio
from tests.payments.helpers import drain, signed_post
from tests.support.processes import python_env


@pytest.fixture
def app_env(stripe_standin):
    return {**stripe_env(stripe_standin), "LOG_FORMAT": "json"}


@pytest.fixture(autouse=True)
def _root_logger_restored():
    """`LOG_FORMAT=json` installs a handler on the root logger, as it does once per process in production; the
    other tests run without it."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == "portal-json"]:
        root.removeHandler(handler)
    root.setLevel(level)


def _event(event_id: str) -> dict:
    return {"id": event_id, "object": "event", "type": "customer.created", "created": int(time.time()),
            "data": {"object": {"id": "cus_1", "object": "customer"}}}


def _lines(caplog, logger: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == logger]


def test_each_request_has_an_id_and_one_line(app, client, caplog):
    with app.app_context():
        make_studio()
    caplog.set_level(logging.INFO, logger="portal.requests")
    caplog.clear()
    given = client.get("/s/melody-and-meter/api/packages", headers={"X-Request-ID": "req-from-the-balancer.1"})
    made = client.get("/s/melody-and-meter/", headers={"X-Request-ID": "<script>"})
    missing = client.get("/s/no-such-studio/")
    assert given.headers["X-Request-ID"] == "req-from-the-balancer.1"
    assert made.headers["X-Request-ID"] != "<script>" and len(made.headers["X-Request-ID"]) == 32
    assert missing.status_code == 404 and missing.headers["X-Request-ID"]

    first, second, third = _lines(caplog, "portal.requests")
    assert (first.request_id, first.route, first.status, first.studio, first.user_id) == (
        "req-from-the-balancer.1", "/s/<studio_slug>/api/packages", 200, "melody-and-meter", None)
    assert first.duration_ms >= 0 and first.method == "GET"
    assert (second.request_id, second.route) == (made.headers["X-Request-ID"], "/s/<studio_slug>/")
    assert (third.status, third.studio, third.request_id) == (404, None, missing.headers["X-Request-ID"])


def test_a_logged_in_users_id_is_on_the_line(app, client, auth, caplog):
    from tests.factories import make_user

    with app.app_context():
        user_id = make_user("ops@example.com", ops=True).id
    auth.login("ops@example.com", "test-password-1")
    caplog.set_level(logging.INFO, logger="portal.requests")
    assert client.get("/ops/").status_code == 200
    (line,) = [r for r in _lines(caplog, "portal.requests") if r.path == "/ops/"]
    assert line.user_id == user_id and line.route == "/ops/" and line.status == 200


def test_the_json_format_puts_one_object_per_line_with_the_fields(app, client, caplog):
    caplog.set_level(logging.INFO, logger="portal.requests")
    client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    (record,) = _lines(caplog, "portal.requests")
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "portal-json")
    line = handler.format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["request_id"] == "abc-123" and fields["route"] == "/healthz" and fields["status"] == 200
    assert fields["level"] == "INFO" and fields["logger"] == "portal.requests" and "duration_ms" in fields


def test_the_request_id_travels_into_the_job_it_queued(app, client, caplog):
    caplog.set_level(logging.INFO, logger="portal.jobs")
    response = signed_post(client, _event("evt_logs_1"))
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    drain(app)
    (line,) = [r for r in _lines(caplog, "portal.jobs") if r.job == "drain_webhook_events"]
    assert (line.request_id, line.outcome, line.job_id) == (request_id, "1 ignored", None)
    assert line.job_args == [] and line.duration_ms >= 0
    assert (line.studio, line.studio_id) == (None, None)  # an event about no studio's payment names none


def test_a_jobs_line_names_the_studio_it_concerns(app, client, studio, paid_lesson, caplog):
    """The webhook event that confirmed a lesson, the refund of its late cancellation and the notifications
    about it each name the lesson's studio; a sweep over every studio names none."""
    from datetime import timedelta, timezone

    from portal.jobs import sweeps
    from portal.services import lesson_changes
    from tests.lessons.conftest import days_ahead, local
    from tests.lessons.test_lessons import _service

    caplog.set_level(logging.INFO, logger="portal.jobs")
    start = local(studio, days_ahead(studio, 10, weekday=2), "15:00")
    booking_id = paid_lesson(start)
    _service(app, studio, lesson_changes.cancel, booking_id,
             now=start.astimezone(timezone.utc) - timedelta(hours=2))
    drain(app)
    with app.app_context():
        sweeps.release_expired_holds()

    lines = _lines(caplog, "portal.jobs")
    by_job = {}
    for line in lines:
        by_job.setdefault(line.job, []).append(line)
    for name in ("drain_webhook_events", "process_refund", "send_notification"):
        assert by_job.get(name), f"no {name} line in {sorted(by_job)}"
        assert {(line.studio, line.studio_id) for line in by_job[name]} == {(studio.slug, studio.id)}, name
    (sweep,) = by_job["release_expired_holds"]
    assert (sweep.studio, sweep.studio_id) == (None, None)
    handler = logs._json_handler()
    fields = json.loads(handler.format(by_job["process_refund"][0]))
    assert fields["studio"] == studio.slug and fields["studio_id"] == studio.id


@pytest.mark.redis
def test_the_request_id_travels_through_rq_to_the_worker_process(app_env, sqlite_database, tmp_path, redis_url,
                                                                 stripe_standin):
    import redis

    from tests.conftest import build_app, empty_tables

    redis.Redis.from_url(redis_url).flushdb()
    env = {**app_env, "REDIS_URL": redis_url}
    app = build_app(sqlite_database, tmp_path / "instance", env=env)
    try:
        response = signed_post(app.test_client(), _event("evt_logs_rq"), secret=STRIPE_WEBHOOK_SECRET)
        assert response.status_code == 200
        request_id = response.headers["X-Request-ID"]
        worker = subprocess.run(
            [sys.executable, "-m", "worker", "--burst"], cwd=PROJECT_ROOT, capture_output=True, text=True,
            timeout=120, env=python_env({**_plain_env(), **env, "PORTAL_ENV": "test", "SECRET_KEY": TEST_SECRET,
                                         "DATABASE_URL": sqlite_database,
                                         "PORTAL_INSTANCE_PATH": str(tmp_path / "instance")}))
        assert worker.returncode == 0, worker.stderr
        lines = [json.loads(line) for line in worker.stderr.splitlines() if line.startswith("{")]
        (job,) = [line for line in lines if line.get("job") == "drain_webhook_events"]
        assert job["request_id"] == request_id and job["outcome"] == "1 ignored" and job["job_id"]
    finally:
        empty_tables(app)


def _plain_env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}


def test_text_stays_the_default_and_a_bad_format_is_refused():
    from portal.config import ConfigError, load_settings

    assert load_settings(env={"PORTAL_ENV": "test"}).log_format == "text"
    with pytest.raises(ConfigError, match="LOG_FORMAT must be text or json"):
        load_settings(env={"PORTAL_ENV": "test", "LOG_FORMAT": "xml"})
    assert logs.current_request_id() is None  # nothing leaks out of the requests above
