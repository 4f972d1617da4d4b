"""How long a `/metrics` scrape takes on a large portal, and the utilisation anomaly endpoints on a year of history,
against a real, throwaway PostgreSQL.

Seeds 100 studios × 10 resources and 1,000,000 bookings (mostly confirmed, some late-cancelled, live holds; spread
over the weeks around today so the utilisation and live-booking gauges have work to do) plus 1,000,000 webhook
events (`benchmarks/bulk_data.py`), then reports p50/p95/max (ms) of:
- a scrape in one process with the database gauges read every time (METRICS_CACHE_SECONDS=0) and with the cache;
- a scrape over HTTP of gunicorn with two workers in multiprocess mode (PROMETHEUS_MULTIPROC_DIR), uncached;
- each anomaly endpoint over 365 days × 10 resources of one studio (about 4 lessons a resource a day).
Target: a scrape under 100 ms.

The database `portal_scrape_<pid>` is created on the server of BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test) and dropped at the end, also on errors, Ctrl-C and SIGTERM.
Run: .venv/bin/python -m benchmarks.metrics_scrape [--studios 100] [--bookings 1000000] [--iterations 20]
"""
from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time as clock
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import text

from benchmarks.bulk_data import fill
from benchmarks.harness import run_on_throwaway_database
from benchmarks.reconciliation import timed
from portal import create_app, tenancy
from portal.config import PROJECT_ROOT, load_settings
from portal.extensions import db
from portal.models import Package, Resource, ResourceKind, Studio, User
from portal.services import api_keys, configuration
from portal.services.audit import SYSTEM

RESOURCES_PER_STUDIO = 10
INSIGHT_DAYS = 365
#: The year of history ends where the portal-wide bookings (4 weeks back from now, hourly) begin, so they never
#: overlap (the database refuses overlapping bookings).
HISTORY_ENDS = timedelta(days=30)


def seed(now: datetime, studios: int, bookings: int, events: int) -> Studio:
    """The portal, and the studio whose year of history the anomaly endpoints read (the first one)."""
    with tenancy.all_tenants():
        student = User(email="bench-student@example.com", name="Bench", password_hash="!unusable")
        db.session.add(student)
        rows, resources, packages = [], [], []
        for n in range(studios):
            studio = Studio(slug=f"bench-{n:03d}", name=f"Bench {n}", timezone="America/New_York", currency="usd")
            db.session.add(studio)
            db.session.flush()
            package = Package(studio_id=studio.id, slug="lesson-60", name="60-minute lesson", duration_minutes=60,
                              price_minor=6500, currency="usd")
            rooms = [Resource(studio_id=studio.id, slug=f"room-{i}", name=f"Room {i}", kind=ResourceKind.ROOM,
                              capacity_minutes=600) for i in range(RESOURCES_PER_STUDIO)]
            db.session.add_all([package, *rooms])
            db.session.flush()
            configuration.start(studio, now=now)
            rows.append(studio)
            resources += [(studio.id, room.id, package.id) for room in rooms]
            packages.append(package)
        db.session.commit()
        # The portal's bookings, back to back per resource, from 4 weeks ago onwards.
        db.session.execute(text("""
            INSERT INTO bookings (studio_id, student_id, package_id, resource_id, start_at, end_at, occupied_until,
                                  status, hold_expires_at, price_minor, currency, updated_at, created_at,
                                  reschedule_count, ical_sequence, penalty_reason)
            SELECT (:studios)[1 + i % :k], :student, (:packages)[1 + i % :k], (:resources)[1 + i % :k],
                   :start + ((i / :k) * interval '1 hour'), :start + ((i / :k) * interval '1 hour') + interval '1 hour',
                   :start + ((i / :k) * interval '1 hour') + interval '1 hour',
                   CASE WHEN i % 500 = 1 THEN 'held' WHEN i % 20 = 3 THEN 'cancelled' WHEN i % 10 = 2 THEN 'expired'
                        ELSE 'confirmed' END,
                   :now + interval '20 minutes', 6500, 'usd', :now, :now, 0, 0,
                   CASE WHEN i % 40 = 3 THEN 'late_cancel' END
            FROM generate_series(1, :n) AS i"""),
            {"studios": [s for s, _, _ in resources], "resources": [r for _, r, _ in resources],
             "packages": [p for _, _, p in resources], "k": len(resources), "student": student.id,
             "start": now - timedelta(days=28), "now": now, "n": bookings})
        # A year of history on the first studio, ending a month ago: 2 to 6 lessons a resource a day.
        first = rows[0]
        first_rooms = [r for s, r, _ in resources if s == first.id]
        db.session.execute(text("""
            INSERT INTO bookings (studio_id, student_id, package_id, resource_id, start_at, end_at, occupied_until,
                                  status, price_minor, currency, updated_at, created_at, reschedule_count,
                                  ical_sequence)
            SELECT :studio, :student, :package, (:rooms)[1 + r], t, t + interval '1 hour', t + interval '1 hour',
                   'confirmed', 6500, 'usd', :now, :now, 0, 0
            FROM generate_series(0, :rooms_n - 1) AS r, generate_series(1, :days) AS d,
                 generate_series(0, 5) AS h,
                 LATERAL (SELECT :origin - (d * interval '1 day') + (h * interval '1 hour') AS t) x
            WHERE h < 2 + (d + r) % 5"""),
            {"studio": first.id, "student": student.id, "package": packages[0].id, "rooms": first_rooms,
             "rooms_n": len(first_rooms), "days": INSIGHT_DAYS, "now": now,
             "origin": datetime.combine((now - HISTORY_ENDS + timedelta(days=1)).date(), datetime.min.time(),
                                        timezone.utc) + timedelta(hours=14)})
        db.session.commit()
        fill(first.id, student.id, packages[0].id, first_rooms, bookings=0, events=events, now=now)
        return first


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def multiprocess_scrapes(database_url: str, instance_path: str, iterations: int) -> dict:
    """gunicorn with two workers in multiprocess mode; each scrape over HTTP, the database gauges uncached."""
    multiproc = Path(instance_path) / "prometheus"
    multiproc.mkdir()
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
           "PORTAL_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48), "DATABASE_URL": database_url,
           "PORTAL_INSTANCE_PATH": instance_path, "PORTAL_BASE_URL": "https://portal.bench.invalid",
           "PROMETHEUS_MULTIPROC_DIR": str(multiproc), "METRICS_CACHE_SECONDS": "0",
           "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"}
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py"),
                            "portal:create_app()"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = clock.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=30).read()
                break
            except OSError:
                if clock.monotonic() > deadline or web.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                clock.sleep(0.3)
        return timed(lambda: urllib.request.urlopen(url, timeout=30).read(), iterations)
    finally:
        web.terminate()
        web.wait(timeout=20)


def run(args: argparse.Namespace, database_url: str, instance_path: str) -> dict:
    env = {"PORTAL_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48), "DATABASE_URL": database_url,
           "PORTAL_INSTANCE_PATH": instance_path, "PORTAL_BASE_URL": "https://portal.bench.invalid"}
    cold = create_app(load_settings(env={**env, "METRICS_CACHE_SECONDS": "0"}))
    warm = create_app(load_settings(env=env))
    now = datetime.now(timezone.utc)
    with cold.app_context():
        upgrade()
        started = clock.perf_counter()
        studio = seed(now, args.studios, args.bookings, args.events)
        seed_s = clock.perf_counter() - started
        counts = {"studios": args.studios, "resources": args.studios * RESOURCES_PER_STUDIO,
                  "bookings": db.session.scalar(text("SELECT count(*) FROM bookings")),
                  "events": db.session.scalar(text("SELECT count(*) FROM webhook_events"))}
        with tenancy.scoped(studio.id):
            _key, token = api_keys.create(db.session.get(Studio, studio.id), name="bench", scopes=["bookings:read"],
                                          actor=SYSTEM, now=now)
            db.session.commit()
        slug = studio.slug
        db.session.remove()
    with cold.app_context(), db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))  # what autovacuum does on a live database
    cold_client, warm_client = cold.test_client(), warm.test_client()
    body = cold_client.get("/metrics").get_data()
    results = {
        "scrape, one process, uncached": timed(lambda: cold_client.get("/metrics"), args.iterations),
        "scrape, one process, cached": timed(lambda: warm_client.get("/metrics"), args.iterations),
        "scrape, gunicorn 2 workers, multiprocess, uncached": multiprocess_scrapes(database_url, instance_path,
                                                                                   args.iterations),
    }
    headers = {"Authorization": f"Bearer {token}"}
    last = (now - HISTORY_ENDS).date()
    for endpoint in ("utilization-anomalies", "utilization-seasonal-anomalies", "utilization-persistence-anomalies",
                     "anomaly-severity"):
        url = f"/s/{slug}/api/admin/resources/{endpoint}?window={INSIGHT_DAYS}&to={last.isoformat()}"
        assert cold_client.get(url, headers=headers).status_code == 200, endpoint
        results[f"{endpoint} ({INSIGHT_DAYS} d × {RESOURCES_PER_STUDIO})"] = timed(
            lambda u=url: cold_client.get(u, headers=headers), max(3, args.iterations // 4))
    for app in (cold, warm):
        app.extensions["dispatcher"].shutdown()
        with app.app_context():
            db.engine.dispose()
    return {"database": database_url.rsplit("/", 1)[1], "seeded": counts, "seed_s": round(seed_s, 1),
            "scrape_bytes": len(body), "results": results}


def print_table(report: dict, out) -> None:
    seeded = report["seeded"]
    print(f"seeded {seeded['studios']} studios, {seeded['resources']:,} resources, {seeded['bookings']:,} bookings "
          f"and {seeded['events']:,} webhook events in {report['seed_s']:.0f} s; a scrape is "
          f"{report['scrape_bytes'] / 1024:.0f} KiB  [db {report['database']}]\n", file=out)
    print(f"{'measure':<58}{'p50':>9}{'p95':>9}{'max':>9}   (ms; scrape target < 100)", file=out)
    for name, r in report["results"].items():
        print(f"{name:<58}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['max_ms']:>9.1f}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studios", type=int, default=100)
    parser.add_argument("--bookings", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=20, help="timed runs of each measure")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (the table then goes to stderr)")
    args = parser.parse_args(argv)
    if min(args.studios, args.bookings, args.events, args.iterations) < 1:
        parser.error("counts and iterations must be at least 1")
    return run_on_throwaway_database("portal_scrape", lambda url, tmp: run(args, url, tmp), print_table, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
