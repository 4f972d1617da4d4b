"""Under gunicorn with several workers and a separate RQ worker, one scrape counts what every process did."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from email.utils import parsedate_to_datetime

import pytest

from portal.clock import utcnow
from portal.config import PROJECT_ROOT
from stripe_standin import sign
from tests.conftest import STRIPE_WEBHOOK_SECRET, TEST_SECRET, build_app, empty_tables, stripe_env
from tests.support.processes import python_env

pytestmark = [pytest.mark.redis]
EVENTS = 12


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sample(text: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


@pytest.fixture
def stack(tmp_path, redis_url, stripe_standin):
    """gunicorn (2 workers) on a SQLite file, with Redis and a shared PROMETHEUS_MULTIPROC_DIR."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    database = f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    port = _free_port()
    env = python_env({
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        **stripe_env(stripe_standin), "PORTAL_ENV": "test", "SECRET_KEY": TEST_SECRET, "DATABASE_URL": database,
        "REDIS_URL": redis_url, "PROMETHEUS_MULTIPROC_DIR": str(multiproc), "PORTAL_INSTANCE_PATH": str(tmp_path),
        "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"})
    app = build_app(database, tmp_path, env={"REDIS_URL": redis_url})  # applies the migrations
    log = open(tmp_path / "gunicorn.log", "w")
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py"),
                            "--control-socket", str(tmp_path / "gunicorn.ctl"), "portal:create_app()"],
                           cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or web.poll() is not None:
                    pytest.fail("gunicorn did not start:\n" + (tmp_path / "gunicorn.log").read_text())
                time.sleep(0.2)
        yield {"base": base, "env": env, "tmp": tmp_path}
    finally:
        web.terminate()
        try:
            web.wait(timeout=10)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()
        log.close()
        empty_tables(app)


def _post_event(base: str, event_id: str) -> int:
    body = json.dumps({"id": event_id, "object": "event", "type": "customer.created", "created": int(time.time()),
                       "data": {"object": {"id": "cus_1", "object": "customer"}}}).encode()
    request = urllib.request.Request(f"{base}/webhooks/stripe", data=body, method="POST",
                                     headers={"Stripe-Signature": sign(body, STRIPE_WEBHOOK_SECRET),
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_one_scrape_adds_up_web_and_worker_processes(stack):
    base = stack["base"]
    assert all(_post_event(base, f"evt_multiproc_{i}") == 200 for i in range(EVENTS))
    worker = subprocess.run([sys.executable, "-m", "worker", "--burst"], cwd=PROJECT_ROOT, env=stack["env"],
                            capture_output=True, text=True, timeout=120)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    # Several scrapes land on different gunicorn workers; each one sees the whole picture.
    for _ in range(4):
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            text = response.read().decode()
            # The forked gunicorn workers keep the tests' clock (their signature checks above depended on it).
            assert abs(parsedate_to_datetime(response.headers["Date"]) - utcnow()) < timedelta(seconds=5)
        assert _sample(text, "webhook_events_total", 'status="received"') == EVENTS
        assert _sample(text, "webhook_events_total", 'status="ignored"') == EVENTS  # counted in the RQ worker
        assert _sample(text, "melody_webhook_signature_valid_total") == EVENTS
        assert _sample(text, "http_request_duration_seconds_count",
                       'endpoint="webhooks.stripe_webhook",method="POST",status="200"') == EVENTS
        assert _sample(text, "webhook_backlog", 'status="queued"') == 0
        # All were stored before the worker started: one drain job, woken by the first, processed them (RQ worker).
        assert _sample(text, "job_duration_seconds_count", 'job="drain_webhook_events"') == 1
        assert _sample(text, "job_failures_total", 'job="drain_webhook_events"') == 0
        assert _sample(text, "rq_queue_depth", 'queue="portal"') == 0
        assert _sample(text, "db_pool_size") > 0  # the live web workers' pools, added up
