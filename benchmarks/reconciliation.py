"""How long the ops console's reconciliation queries take on a large portal, against a real, throwaway PostgreSQL.

Seeds one studio with 20 rooms, 1,000,000 bookings with their payments (and refunds for the cancelled ones) and
1,000,000 webhook events, mostly healthy with a few per thousand in the states the queries look for
(`benchmarks/bulk_data.py`), vacuums them as autovacuum would, then reports p50/p95/max (ms) of, for each query, its
count and oldest age (what the dashboard shows) and its first page of 50 items; and of the whole dashboard overview.
Target: each under 50 ms.

The database `portal_recon_<pid>` is created on the server of BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test) and dropped at the end, also on errors, Ctrl-C and SIGTERM.
Run: .venv/bin/python -m benchmarks.reconciliation [--bookings 1000000] [--events 1000000] [--iterations 20]
"""
from __future__ import annotations

import argparse
import secrets
import time as clock
from datetime import datetime, timezone

from flask_migrate import upgrade
from sqlalchemy import select, text

from benchmarks.bulk_data import fill
from benchmarks.harness import percentile, run_on_throwaway_database
from portal import create_app, tenancy
from portal.config import load_settings
from portal.extensions import db
from portal.models import Package, Resource, ResourceKind, Studio, User
from portal.services import configuration, reconciliation


def seed(now: datetime, bookings: int, events: int) -> None:
    with tenancy.all_tenants():
        studio = Studio(slug="bench-recon", name="Bench Reconciliation", timezone="UTC", currency="usd")
        db.session.add(studio)
        db.session.flush()
        student = User(email="bench-student@example.com", name="Bench", password_hash="!unusable")
        package = Package(studio_id=studio.id, slug="lesson-60", name="60-minute lesson", duration_minutes=60,
                          price_minor=6500, currency="usd")
        rooms = [Resource(studio_id=studio.id, slug=f"room-{i}", name=f"Room {i}", kind=ResourceKind.ROOM)
                 for i in range(1, 21)]
        db.session.add_all([student, package, *rooms])
        db.session.flush()
        configuration.start(studio, now=now)
        db.session.commit()
        fill(studio.id, student.id, package.id, [r.id for r in rooms], bookings=bookings, events=events, now=now)


def timed(fn, iterations: int) -> dict:
    samples = []
    for _ in range(iterations):
        started = clock.perf_counter()
        fn()
        samples.append((clock.perf_counter() - started) * 1000)
    ordered = sorted(samples)
    return {"p50_ms": round(percentile(ordered, 0.5), 2), "p95_ms": round(percentile(ordered, 0.95), 2),
            "max_ms": round(ordered[-1], 2)}


def run(args: argparse.Namespace, database_url: str, instance_path: str) -> dict:
    settings = load_settings(env={"PORTAL_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48),
                                  "DATABASE_URL": database_url, "PORTAL_INSTANCE_PATH": instance_path,
                                  "PORTAL_BASE_URL": "https://portal.bench.invalid"})
    app = create_app(settings)
    now = datetime.now(timezone.utc)
    results: dict[str, dict] = {}
    with app.app_context():
        upgrade()
        started = clock.perf_counter()
        seed(now, args.bookings, args.events)
        seed_s = clock.perf_counter() - started
        db.session.remove()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))  # what autovacuum does on a live database
        with tenancy.all_tenants():
            counts = {"bookings": db.session.scalar(select(db.func.count()).select_from(db.table("bookings"))),
                      "events": db.session.scalar(select(db.func.count()).select_from(db.table("webhook_events")))}
        for name in reconciliation.QUERIES:
            summary = reconciliation.summarize(name, now)
            results[name] = {"count": summary.count,
                             "summary": timed(lambda n=name: reconciliation.summarize(n, now), args.iterations),
                             "first_page": timed(lambda n=name: reconciliation.items(n, now, limit=50),
                                                 args.iterations)}
        results["dashboard (all queries)"] = {"count": None,
                                              "summary": timed(lambda: reconciliation.overview(now), args.iterations),
                                              "first_page": None}
        db.session.remove()
        db.engine.dispose()
    return {"database": database_url.rsplit("/", 1)[1], "seeded": counts, "seed_s": round(seed_s, 1),
            "results": results}


def print_table(report: dict, out) -> None:
    seeded = report["seeded"]
    print(f"seeded {seeded['bookings']:,} bookings and {seeded['events']:,} webhook events in "
          f"{report['seed_s']:.0f} s  [db {report['database']}]\n", file=out)
    print(f"{'query':<28}{'items':>7}{'count p50':>11}{'p95':>8}{'page p50':>10}{'p95':>8}   (ms; target < 50)",
          file=out)
    for name, r in report["results"].items():
        page = r["first_page"]
        page_cols = f"{page['p50_ms']:>10.2f}{page['p95_ms']:>8.2f}" if page else f"{'':>18}"
        count = "" if r["count"] is None else r["count"]
        print(f"{name:<28}{count:>7}{r['summary']['p50_ms']:>11.2f}{r['summary']['p95_ms']:>8.2f}{page_cols}",
              file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=20, help="timed runs of each measure")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (the table then goes to stderr)")
    args = parser.parse_args(argv)
    if min(args.bookings, args.events, args.iterations) < 1:
        parser.error("counts and iterations must be at least 1")
    return run_on_throwaway_database("portal_recon", lambda url, tmp: run(args, url, tmp), print_table, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
