"""`python -m worker --threads N` runs N jobs at once in one process, with a real RQ worker and real events."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from datetime import time as wall

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.config import PROJECT_ROOT
from portal.dispatch import QUEUE_NAME
from portal.extensions import db
from portal.models import Booking, BookingStatus, Role, WebhookEvent
from portal.payments import get_provider
from portal.services import bookings, checkout
from tests.conftest import TEST_SECRET, build_app, empty_tables, stripe_env
from tests.factories import make_studio, make_user, next_weekday
from tests.payments.helpers import events, pay, signed_post
from tests.support.processes import python_env

pytestmark = [pytest.mark.redis]
KEY = "portal-tests:worker-threads"


def _run_worker(env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "worker", "--burst", "--sweep-interval", "0", *args],
                          cwd=PROJECT_ROOT, env=python_env(env), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _env(database_url: str, redis_url: str, tmp_path, extra: dict | None = None) -> dict:
    return {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}, "PORTAL_ENV": "test",
            "SECRET_KEY": TEST_SECRET, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "PORTAL_INSTANCE_PATH": str(tmp_path), **(extra or {})}


@pytest.fixture
def redis(redis_url):
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.mark.parametrize("threads", [1, 4])
def test_jobs_overlap_only_with_several_threads(redis, redis_url, tmp_path, threads):
    queue = Queue(QUEUE_NAME, connection=redis)
    for _ in range(4):
        queue.enqueue("tests.support.slow_jobs.wait_and_record", 0.8, KEY)
    database = f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    build_app(database, tmp_path)  # the worker's app needs a migrated database
    started = time.monotonic()
    _run_worker(_env(database, redis_url, tmp_path), "--threads", str(threads))
    elapsed = time.monotonic() - started
    runs = sorted(tuple(float(x) for x in line.split()[:2]) for line in
                  (raw.decode() for raw in redis.lrange(KEY, 0, -1)))
    assert len(runs) == 4 and len(queue) == 0
    thread_ids = {raw.decode().split()[2] for raw in redis.lrange(KEY, 0, -1)}
    if threads == 1:
        assert all(later[0] >= earlier[1] for earlier, later in zip(runs, runs[1:], strict=False))
        assert len(thread_ids) == 1
    else:
        assert max(start for start, _ in runs) < min(end for _, end in runs)  # all four at once
        assert len(thread_ids) == 4
        assert elapsed < 4 * 0.8 + 10  # not a proof of speed, only that nothing waited on the others


@pytest.mark.postgres
def test_a_threaded_worker_confirms_every_paid_booking_once(redis, redis_url, postgres_database, tmp_path,
                                                            stripe_standin):
    env = {**stripe_env(stripe_standin), "REDIS_URL": redis_url}
    app = build_app(postgres_database, tmp_path / "instance", env=env)
    try:
        client = app.test_client()
        day = next_weekday(2)
        booked = []
        with app.app_context():
            studio = make_studio(buffer_minutes=0)
            for hour in range(9, 17):
                student = make_user(f"student{hour}@example.com", roles=[(studio, Role.STUDENT)])
                with tenancy.scoped(studio.id):
                    booking = bookings.hold_slot(
                        studio=studio, student=student, package_slug="lesson-60", resource_slug="piano",
                        start_raw=datetime.combine(day, wall(hour), studio.tz).isoformat(), now=utcnow())
                    payment = checkout.start_checkout(booking=booking, student=student, provider=get_provider(),
                                                      success_url="http://127.0.0.1/paid",
                                                      cancel_url="http://127.0.0.1/", now=utcnow())
                    booked.append((booking.id, payment.checkout_session_id))
            db.session.remove()
        for _booking_id, session_id in booked:
            pay(stripe_standin, session_id)
        completed = events(stripe_standin, ("checkout.session.completed",))
        assert len(completed) == len(booked)
        for event in completed:
            assert signed_post(client, event).status_code == 200
        assert len(Queue(QUEUE_NAME, connection=redis)) == 1  # one drain job woken for the eight deliveries

        _run_worker(_env(postgres_database, redis_url, tmp_path / "instance", stripe_env(stripe_standin)),
                    "--threads", "4")
        with app.app_context(), tenancy.all_tenants():
            statuses = db.session.scalars(select(Booking.status).order_by(Booking.id)).all()
            assert statuses == [BookingStatus.CONFIRMED] * len(booked)
            rows = db.session.execute(select(WebhookEvent.status, WebhookEvent.attempts)).all()
            assert {(status.value, attempts) for status, attempts in rows} == {("processed", 1)}
            db.session.remove()
    finally:
        empty_tables(app)
