"""The per-process studio cache never serves a stale or foreign answer.

Two gunicorn worker processes (each its own gunicorn, started with the shipped settings, so a request can be sent
to the one chosen) answer from PostgreSQL. Both are warmed first, so each holds the studio's catalogue and calendar
in its cache; then each kind of change is made (a publish, opening hours, a blackout, a package, a booking) and
the very next request on either process must show it.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from datetime import time as wall
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.config import PROJECT_ROOT
from portal.extensions import db
from portal.models import AvailabilityRule, Booking, BookingStatus, Package, Resource, Role, Studio
from portal.services import audit, catalogue, configuration, schedule, studio_cache
from tests.conftest import TEST_SECRET, build_app, empty_tables, stripe_env
from tests.factories import make_studio, make_user, next_weekday
from tests.support.processes import python_env

pytestmark = [pytest.mark.postgres]
STUDIO = "/s/melody-and-meter"
NEW_YORK = ZoneInfo("America/New_York")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_gunicorn(env: dict, log_path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py"), "portal:create_app()"],
        cwd=PROJECT_ROOT, env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"},
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).close()
            return process, base
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("gunicorn did not start:\n" + log_path.read_text())
            time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def workers(postgres_database, tmp_path, stripe_standin):
    """The app in this process (for making changes through the services) and two gunicorn workers."""
    app = build_app(postgres_database, tmp_path / "instance", env=stripe_env(stripe_standin))
    with app.app_context():
        make_studio(slot_interval_minutes=30, buffer_minutes=0, min_notice_minutes=60)
        make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("cello",),
                    packages=(("cello-45", 45, 4000),))
    env = python_env({
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        **stripe_env(stripe_standin), "PORTAL_ENV": "test", "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": postgres_database, "PORTAL_INSTANCE_PATH": str(tmp_path / "instance")})
    started = []
    try:
        for n in (1, 2):
            started.append(_start_gunicorn(env, tmp_path / f"gunicorn-{n}.log"))
        yield app, [base for _process, base in started]
    finally:
        for process, _base in started:
            _stop(process)
        empty_tables(app)


def _get(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())


def _day_slots(base: str, day, package="lesson-60", resource="piano") -> list[str]:
    body = _get(base, f"{STUDIO}/api/availability?package={package}&resource={resource}&from={day}&to={day}")
    return body["days"][0]["slots"]


def _package_slugs(base: str, studio=STUDIO) -> list[str]:
    return [p["slug"] for p in _get(base, f"{studio}/api/packages")["packages"]]


@contextlib.contextmanager
def changing(app):
    """The studio, in an app context and its tenant scope, as an admin's request would have it."""
    with app.app_context():
        with tenancy.all_tenants():
            studio = db.session.scalar(select(Studio).where(Studio.slug == "melody-and-meter"))
        with tenancy.scoped(studio.id):
            yield studio


def test_every_change_is_seen_on_the_next_request_of_either_worker(workers):
    app, bases = workers
    day = next_weekday(2)

    def local(hh_mm: str) -> datetime:
        return datetime.combine(day, wall.fromisoformat(hh_mm), NEW_YORK)

    for base in bases:  # warm both caches
        assert _day_slots(base, day)[:2] == [local("09:00").isoformat(), local("09:30").isoformat()]
        assert _package_slugs(base) == ["lesson-30", "lesson-60"]
    now = utcnow()

    # Publishing a configuration: hourly starts, and lesson-30 hidden from students.
    with changing(app) as studio:
        draft = configuration.create_draft(studio, {"booking": {"slot_interval_minutes": 60},
                                                    "packages": {"lesson-30": {"visible": False}}},
                                           actor=audit.SYSTEM, note="hourly", now=now)
        configuration.publish(studio, draft.version, actor=audit.SYSTEM, note="hourly", now=now)
    for base in bases:
        assert _day_slots(base, day)[:2] == [local("09:00").isoformat(), local("10:00").isoformat()]
        assert _package_slugs(base) == ["lesson-60"]

    # Opening hours: the piano's hours that day now end at noon.
    with changing(app) as studio:
        piano_id = db.session.scalar(select(Resource.id).where(Resource.slug == "piano"))
        rule = db.session.scalar(select(AvailabilityRule).where(
            AvailabilityRule.resource_id == piano_id, AvailabilityRule.weekday == day.weekday()))
        assert schedule.change_span(studio, rule, "09:00", "12:00", actor=audit.SYSTEM, now=now)
    for base in bases:
        assert _day_slots(base, day)[-1] == local("11:00").isoformat()

    # A blackout over the morning's first hour.
    with changing(app) as studio:
        draft = schedule.parse_blackout(studio, resource_raw="piano", starts_raw=f"{day}T09:00",
                                        ends_raw=f"{day}T10:00", reason_raw="Tuning", now=now)
        schedule.create_blackout(studio, draft, lessons=None, previewed=[], actor=audit.SYSTEM, now=now)
    for base in bases:
        assert _day_slots(base, day) == [local("10:00").isoformat(), local("11:00").isoformat()]

    # A booking (a kept answer is checked against the bookings version the database raises).
    with changing(app) as studio:
        student = make_user("student@example.com", roles=[(studio, Role.STUDENT)])
        package = db.session.scalar(select(Package).where(Package.slug == "lesson-60"))
        db.session.add(Booking(studio_id=studio.id, student_id=student.id, package_id=package.id,
                               resource_id=piano_id, start_at=local("10:00"), end_at=local("11:00"),
                               occupied_until=local("11:00"), status=BookingStatus.CONFIRMED,
                               price_minor=6500, currency="usd"))
        db.session.commit()
    for base in bases:
        assert _day_slots(base, day) == [local("11:00").isoformat()]

    # The catalogue: a package renamed.
    with changing(app) as studio:
        package = db.session.scalar(select(Package).where(Package.slug == "lesson-60"))
        catalogue.save_package(studio, package, {"name": "Hour with a teacher", "slug": "lesson-60",
                                                 "duration_minutes": "60", "price": "65.00", "active": "1"},
                               actor=audit.SYSTEM, now=now)
    for base in bases:
        names = [p["name"] for p in _get(base, f"{STUDIO}/api/packages")["packages"]]
        assert names == ["Hour with a teacher"]
        assert "Hour with a teacher" in urllib.request.urlopen(f"{base}{STUDIO}/", timeout=10).read().decode()


def test_a_cached_calendar_of_one_studio_never_serves_another(workers):
    app, bases = workers
    for base in bases:  # each worker caches both studios, whose versions are equal
        assert _package_slugs(base) == ["lesson-30", "lesson-60"]
        assert _package_slugs(base, "/s/north-strings") == ["cello-45"]
        assert _package_slugs(base) == ["lesson-30", "lesson-60"]
        missing = urllib.request.Request(f"{base}/s/north-strings/api/availability?package=lesson-60"
                                         f"&resource=piano&date={next_weekday(2)}")
        with pytest.raises(urllib.error.HTTPError) as refused:  # the other studio's slugs mean nothing here
            urllib.request.urlopen(missing, timeout=10)
        assert refused.value.code == 404
    with app.app_context(), tenancy.all_tenants():
        melody, north = db.session.scalars(select(Studio).order_by(Studio.id)).all()
        assert (melody.config_version, melody.calendar_version) == (north.config_version, north.calendar_version)
        first, second = studio_cache.calendar(melody), studio_cache.calendar(north)
        assert (first.studio_id, second.studio_id) == (melody.id, north.id)
        assert {p.studio_id for p in first.packages} == {melody.id}
        assert {r.studio_id for r in second.resources} == {north.id}
        assert studio_cache.calendar(melody) is first  # a hit, and still the same studio's
