"""Faults with real processes: a worker killed mid-job, Redis stopped, PostgreSQL refusing connections.

Each test runs its own `redis-server` on a free port and real `python -m worker` processes (RQ `SimpleWorker`
plus the sweeper) against a PostgreSQL database of this module's own. State is read straight from PostgreSQL
with psycopg, so the assertions see what a second process would see (committed rows only).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import psycopg
import pytest

from portal import tenancy
from portal.clock import utcnow
from portal.config import PROJECT_ROOT
from portal.extensions import db
from portal.models import Role
from portal.payments import get_provider
from portal.services import bookings, checkout, reconciliation
from stripe_standin import sign
from tests.conftest import (
    PG_ADMIN_URL,
    STRIPE_WEBHOOK_SECRET,
    TEST_SECRET,
    build_app,
    create_pg_database,
    drop_pg_database,
    empty_tables,
    require,
    stripe_env,
)
from tests.factories import make_studio, make_user, next_weekday
from tests.faults.conftest import attach_log
from tests.ops.conftest import log_in
from tests.payments.helpers import events, pay, signed_post
from tests.support.processes import python_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

QUEUE_KEY = "rq:queue:portal"
WAIT = 20.0  # seconds: the longest any poll waits
POLL = 0.1


# --- processes -------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_client(port: int):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries: a refused connection must answer at once (redis-py otherwise backs off for seconds).
    return redis.Redis(host="127.0.0.1", port=port, db=0, socket_connect_timeout=1, socket_timeout=2,
                       retry=Retry(NoBackoff(), 0))


def _stop(proc: subprocess.Popen, timeout: float = 5) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class RedisServer:
    """A private redis-server (no persistence) that a test can stop and start again on the same port."""

    def __init__(self, port: int, log_path: Path):
        self.port, self.log_path = port, log_path
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--save", "", "--appendonly", "no"],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}; see {self.log_path}")
            if self.ping():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.05)

    def ping(self) -> bool:
        import redis

        client = _redis_client(self.port)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def llen(self, key: str) -> int:
        client = _redis_client(self.port)
        try:
            return client.llen(key)
        finally:
            client.close()


class Workers:
    """Real `python -m worker` processes, each logging to its own file under tmp_path.

    Each worker leads a process group of its own: RQ's scheduler runs in a child process that outlives a
    SIGKILL of the worker, and teardown must end it too (by that group id, never by name).
    """

    def __init__(self, item, tmp_path: Path, base_env: dict[str, str]):
        self.item, self.tmp_path, self.base_env = item, tmp_path, base_env
        self.procs: list[subprocess.Popen] = []

    def start(self, **env) -> subprocess.Popen:
        number = len(self.procs) + 1
        log_path = self.tmp_path / f"worker-{number}.log"
        attach_log(self.item, f"worker-{number} log", log_path)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "worker", "--sweep-interval", "1"],
                                    env=python_env({**self.base_env, **env}), cwd=str(PROJECT_ROOT), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGTERM)  # the worker (if alive) and its scheduler child
        for proc in self.procs:
            _stop(proc)
            deadline = time.monotonic() + 1
            while _signal_group(proc.pid, 0) and time.monotonic() < deadline:
                time.sleep(0.05)
            _signal_group(proc.pid, signal.SIGKILL)  # whatever of this group is left


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal the process group `pgid` (one we created); False once no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


# --- fixtures --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_binary():
    path = shutil.which("redis-server")
    if path is None:
        require("redis-server", "binary not found on PATH (apt-get install -y redis-server)")
    return path


@pytest.fixture(scope="module")
def pg_url():
    url = create_pg_database("portal_faults")
    yield url
    drop_pg_database(url)


@pytest.fixture
def redis_server(redis_binary, tmp_path, request):
    server = RedisServer(_free_port(), tmp_path / "redis-server.log")
    attach_log(request.node, "redis-server log", server.log_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def app_env(stripe_standin, redis_server):
    return {**stripe_env(stripe_standin), "REDIS_URL": redis_server.url, "WEBHOOK_PROCESSING_LEASE_SEC": "2",
            "WEBHOOK_STUCK_AFTER_SEC": "2", "JOB_RETRY_DELAYS": "1,1"}


@pytest.fixture
def app(pg_url, tmp_path, app_env):
    app = build_app(pg_url, tmp_path / "instance", env=app_env)
    try:
        yield app
    finally:
        dispatcher = app.extensions["dispatcher"]
        if getattr(dispatcher, "_queue", None) is not None:
            dispatcher._queue.connection.close()
        empty_tables(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def workers(app, pg_url, tmp_path, app_env, request):
    """Starts workers with the app's environment; every one is stopped at teardown, even on failure."""
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR",)}
    env.update(app_env)
    env.update({"PORTAL_ENV": "test", "SECRET_KEY": TEST_SECRET, "DATABASE_URL": pg_url,
                "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"), "PYTHONUNBUFFERED": "1"})
    manager = Workers(request.node, tmp_path, env)
    try:
        yield manager
    finally:
        manager.stop_all()


# --- data and polling ------------------------------------------------------------------------------------

def _rows(pg_url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(pg_url, autocommit=True, connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchall()


def _state(pg_url: str, booking_id: int) -> dict:
    """What another process sees now: the events, the booking and its payment rows."""
    return {
        "events": _rows(pg_url, "SELECT provider_event_id, status, attempts FROM webhook_events ORDER BY id"),
        "booking": _rows(pg_url, "SELECT status FROM bookings WHERE id = %s", (booking_id,))[0][0],
        "payments": _rows(pg_url, "SELECT status, paid_at IS NOT NULL FROM payments WHERE booking_id = %s",
                          (booking_id,)),
    }


def _wait_until(predicate, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(POLL)


def _wait_processed(pg_url: str, booking_id: int, event_id: str) -> dict:
    last = {}

    def done():
        last.update(_state(pg_url, booking_id))
        statuses = {e[0]: e[1] for e in last["events"]}
        return statuses.get(event_id) == "processed" and last["booking"] == "confirmed"

    try:
        _wait_until(done, f"{event_id} is processed and booking {booking_id} confirmed")
    except AssertionError as error:
        raise AssertionError(f"{error}; last state: {last}") from None
    return last


def _paid_booking(app, server) -> tuple[int, int, dict]:
    """A held booking with an open Checkout Session, paid on the stand-in: (booking id, payment id, event)."""
    with app.app_context():
        studio = make_studio(buffer_minutes=0)
        student = make_user("student@example.com", roles=[(studio, Role.STUDENT)])
        now = utcnow()
        start = datetime.combine(next_weekday(2), dtime(10), studio.tz)
        with tenancy.scoped(studio.id):
            booking = bookings.hold_slot(studio=studio, student=student, package_slug="lesson-60",
                                         resource_slug="piano", start_raw=start.isoformat(), now=now)
            payment = checkout.start_checkout(booking=booking, student=student, provider=get_provider(),
                                              success_url="http://127.0.0.1/paid", cancel_url="http://127.0.0.1/",
                                              now=now)
            booking_id, payment_id, session_id = booking.id, payment.id, payment.checkout_session_id
        db.session.remove()
    assert pay(server, session_id)["session"]["payment_status"] == "paid"
    [event] = events(server, ("checkout.session.completed",))
    assert event["data"]["object"]["id"] == session_id
    return booking_id, payment_id, event


def _lock_waiters(pg_url: str) -> list[tuple]:
    """Backends of the app's database waiting for a row lock (a worker blocked on our lock)."""
    name = pg_url.rsplit("/", 1)[1]
    return _rows(PG_ADMIN_URL, "SELECT pid, query FROM pg_stat_activity WHERE datname = %s "
                               "AND wait_event_type = 'Lock'", (name,))


# --- the tests -------------------------------------------------------------------------------------------

def _worker_killed_mid_job(app, client, stripe_standin, redis_server, workers, pg_url) -> tuple[int, int, dict]:
    """A paid booking whose `checkout.session.completed` job was claimed by a worker that was then SIGKILLed
    before it committed: (booking id, payment id, event)."""
    booking_id, payment_id, event = _paid_booking(app, stripe_standin)
    response = signed_post(client, event)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert _state(pg_url, booking_id)["events"] == [(event["id"], "received", 0)]  # received until claimed
    assert redis_server.llen(QUEUE_KEY) == 1

    # The stand-in has no latency switch, so the job is made slow by holding the payment's row lock: the worker
    # claims the event (committed: `processing`), then blocks when it writes the payment.
    lock = psycopg.connect(pg_url, connect_timeout=3)
    try:
        lock.execute("SELECT id FROM payments WHERE id = %s FOR UPDATE", (payment_id,))
        first = workers.start()
        _wait_until(lambda: _state(pg_url, booking_id)["events"][0][1] == "processing" and _lock_waiters(pg_url),
                    "the first worker has claimed the event and is blocked on the payment's row lock")
        assert first.poll() is None
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(5) == -signal.SIGKILL
    finally:
        lock.rollback()
        lock.close()

    # The killed worker's transaction never committed: the event is still claimed, nothing was confirmed.
    state = _state(pg_url, booking_id)
    assert state["events"] == [(event["id"], "processing", 1)]
    assert state["booking"] == "held"
    assert state["payments"] == [("pending", False)]
    # Its server backend goes away once it notices the closed socket; nothing waits on a lock any more.
    _wait_until(lambda: not _lock_waiters(pg_url), "no backend waits on a row lock")
    return booking_id, payment_id, event


def test_worker_killed_mid_job_event_is_processed_after_restart(app, client, stripe_standin, redis_server, workers,
                                                                 pg_url):
    booking_id, _payment_id, event = _worker_killed_mid_job(app, client, stripe_standin, redis_server, workers,
                                                            pg_url)

    # A new worker's sweep re-queues the event once its lease (2 s) is over, and the event is taken over.
    workers.start()
    state = _wait_processed(pg_url, booking_id, event["id"])
    assert state["payments"] == [("paid", True)]  # one Payment row, paid once
    [(_, _, attempts)] = state["events"]
    assert attempts >= 2
    assert _rows(pg_url, "SELECT count(*) FROM payments")[0][0] == 1
    assert not stripe_standin.store.refunds  # nothing was refunded: the money was taken once and kept
    # The worker process wrote its own clock's time, and that clock is the tests' pinned one.
    [(processed_at,)] = _rows(pg_url, "SELECT processed_at FROM webhook_events")
    assert timedelta(0) <= utcnow() - processed_at < timedelta(minutes=1)


def test_worker_killed_mid_job_is_found_by_ops_and_replayed(app, client, stripe_standin, redis_server, workers,
                                                            pg_url):
    booking_id, _payment_id, event = _worker_killed_mid_job(app, client, stripe_standin, redis_server, workers,
                                                            pg_url)
    with app.app_context():
        make_user("ops@example.com", ops=True)
    ops = app.test_client()
    token = log_in(ops, "ops@example.com")

    def stuck() -> list[dict]:
        with app.app_context():
            return reconciliation.items("stuck_events", utcnow())

    # Past this deployment's lease (2 s) the claimed event is listed among the events not processed.
    [item] = _wait_until(stuck, "the abandoned event is listed as stuck")
    assert (item["provider_event_id"], item["status"], item["attempts"]) == (event["id"], "processing", 1)
    assert event["id"] in ops.get("/ops/queries/stuck_events").get_data(as_text=True)
    form = {"csrf_token": token, "note": "worker was killed during a deploy", "expected": "processing"}
    assert ops.post(f"/ops/events/{item['id']}/replay", data=form).status_code == 303

    workers.start()  # the replayed job is waiting on the queue
    state = _wait_processed(pg_url, booking_id, event["id"])
    assert state["payments"] == [("paid", True)]
    assert stuck() == []
    assert _rows(pg_url, "SELECT actor_label, note, before->>'status', after->>'status' FROM audit_log "
                         "WHERE action = 'webhook_event.replay'") == [
        ("ops@example.com", "worker was killed during a deploy", "processing", "queued")]
    again = ops.post(f"/ops/events/{item['id']}/replay", data=form)
    assert again.status_code == 409 and "reload" in again.get_data(as_text=True).lower()
    assert _rows(pg_url, "SELECT count(*) FROM audit_log WHERE action = 'webhook_event.replay'") == [(1,)]


def test_redis_stopped_while_webhook_arrives_event_is_swept_later(app, client, stripe_standin, redis_server,
                                                                   workers, pg_url):
    booking_id, _payment_id, event = _paid_booking(app, stripe_standin)
    redis_server.stop()
    assert not redis_server.ping()

    response = signed_post(client, event)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"received": True, "duplicate": False}
    state = _state(pg_url, booking_id)
    assert state["events"] == [(event["id"], "received", 0)]  # stored, but not queued
    assert state["booking"] == "held"

    redis_server.start()  # same port, empty: the job was never queued anywhere
    assert redis_server.llen(QUEUE_KEY) == 0
    workers.start(WEBHOOK_STUCK_AFTER_SEC="1")
    state = _wait_processed(pg_url, booking_id, event["id"])
    assert state["payments"] == [("paid", True)]
    assert [e[2] for e in state["events"]] == [1]  # processed by the one re-queued job


def test_postgres_unreachable_answers_5xx_and_writes_nothing(app, client, stripe_standin, pg_url):
    _booking_id, _payment_id, event = _paid_booking(app, stripe_standin)
    body = json.dumps(event).encode()
    name = pg_url.rsplit("/", 1)[1]
    now = int(time.time())

    admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    try:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            with app.app_context():
                db.engine.dispose()
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(pg_url, connect_timeout=3).close()  # really refused, for everyone

            response = signed_post(client, body, header=sign(body, STRIPE_WEBHOOK_SECRET, now - 5))
            assert 500 <= response.status_code <= 599, response.get_data(as_text=True)
            assert response.get_json()["error"] == "storage_unavailable"
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        admin.close()

    count = "SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM webhook_signatures)"
    assert _rows(pg_url, count) == [(0, 0)]  # nothing half-written

    # Stripe retries later with a fresh signature: stored once, not a duplicate.
    response = signed_post(client, body, header=sign(body, STRIPE_WEBHOOK_SECRET, now))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"received": True, "duplicate": False}
    assert _rows(pg_url, count) == [(1, 1)]
    assert _rows(pg_url, "SELECT provider_event_id, status, deliveries FROM webhook_events") == [
        (event["id"], "received", 1)]
