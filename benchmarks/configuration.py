"""What reading the published configuration costs a request, on 100 studios with 10 versions each (PostgreSQL).

Each studio has two rooms, two packages and 10 configuration versions (each published in turn). The benchmark
times, over requests spread across all studios, the studio home page (which renders the branding, the theme link
and the package display from the published document) and the one-day availability API; then it profiles the
home-page requests with cProfile and reports the share of their time spent looking the document up
(`configuration.versions.document_of`). The lookup is cached per (studio, version) in each process, so after the
first request per studio it should not show in the profile.

The database `portal_config_<pid>` is created on the server of BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test) and dropped at the end, also on errors, Ctrl-C and SIGTERM.
Run: .venv/bin/python -m benchmarks.configuration [--studios 100] [--versions 10] [--requests 1000] [--json]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import secrets
import time as clock
from datetime import datetime, time, timedelta, timezone

from flask_migrate import upgrade

from benchmarks.harness import percentile, run_on_throwaway_database
from portal import create_app, tenancy
from portal.config import load_settings
from portal.extensions import db
from portal.models import AvailabilityRule, Package, Resource, ResourceKind, Studio
from portal.services import configuration
from portal.services.audit import SYSTEM


def seed(now: datetime, studios: int, versions: int) -> list[str]:
    slugs = []
    with tenancy.all_tenants():
        for n in range(studios):
            studio = Studio(slug=f"studio-{n}", name=f"Studio {n}", timezone="America/New_York", currency="usd")
            db.session.add(studio)
            db.session.flush()
            for slug in ("room-a", "room-b"):
                room = Resource(studio_id=studio.id, slug=slug, name=slug.title(), kind=ResourceKind.ROOM)
                db.session.add(room)
                db.session.flush()
                db.session.add_all(AvailabilityRule(studio_id=studio.id, resource_id=room.id, weekday=wd,
                                                    start_time=time(9), end_time=time(18)) for wd in range(7))
            db.session.add_all([Package(studio_id=studio.id, slug=f"lesson-{m}", name=f"{m}-minute lesson",
                                        duration_minutes=m, price_minor=m * 100, currency="usd") for m in (30, 60)])
            db.session.flush()
            configuration.start(studio, now=now)
            db.session.commit()
            with tenancy.scoped(studio.id):
                for v in range(2, versions + 1):
                    colour = f"#{v:02x}3f{n % 256:02x}"
                    draft = configuration.create_draft(studio, {"branding": {"primary_color": colour}},
                                                       actor=SYSTEM, note=f"version {v}", now=now)
                    configuration.publish(studio, draft.version, actor=SYSTEM, note="", now=now)
                    db.session.refresh(studio)
            slugs.append(studio.slug)
    return slugs


def timed(fn, paths: list[str]) -> dict:
    samples = []
    for path in paths:
        started = clock.perf_counter()
        fn(path)
        samples.append((clock.perf_counter() - started) * 1000)
    ordered = sorted(samples)
    return {"requests": len(samples), "p50_ms": round(percentile(ordered, 0.5), 2),
            "p95_ms": round(percentile(ordered, 0.95), 2), "p99_ms": round(percentile(ordered, 0.99), 2)}


def run(args: argparse.Namespace, database_url: str, instance_path: str) -> dict:
    settings = load_settings(env={"PORTAL_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48),
                                  "DATABASE_URL": database_url, "PORTAL_INSTANCE_PATH": instance_path,
                                  "PORTAL_BASE_URL": "https://portal.bench.invalid"})
    app = create_app(settings)
    now = datetime.now(timezone.utc)
    with app.app_context():
        upgrade()
        started = clock.perf_counter()
        slugs = seed(now, args.studios, args.versions)
        seed_s = clock.perf_counter() - started
        db.session.remove()
    rng = random.Random(7)
    day = (now + timedelta(days=3)).date().isoformat()
    homes = [f"/s/{rng.choice(slugs)}/" for _ in range(args.requests)]
    slots = [f"/s/{rng.choice(slugs)}/api/availability?package=lesson-60&resource=room-a&date={day}"
             for _ in range(args.requests)]
    client = app.test_client()

    def get(path: str) -> None:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)

    for path in {f"/s/{slug}/" for slug in slugs}:  # each studio's first request fills the cache
        get(path)
    results = {"home page": timed(get, homes), "availability, 1 day": timed(get, slots)}
    profile = cProfile.Profile()
    profile.enable()
    for path in homes:
        get(path)
    profile.disable()
    stats = pstats.Stats(profile)
    total = stats.total_tt
    lookup = sum(entry[3] for func, entry in stats.stats.items()
                 if func[2] == "document_of" and func[0].endswith("configuration/versions.py"))
    return {"database": database_url.rsplit("/", 1)[1], "studios": len(slugs), "versions": args.versions,
            "seed_s": round(seed_s, 1), "results": results,
            "lookup_share_percent": round(100 * lookup / total, 3) if total else 0.0}


def print_table(report: dict, out) -> None:
    print(f"{report['studios']} studios x {report['versions']} versions, seeded in {report['seed_s']:.0f} s  "
          f"[db {report['database']}]\n", file=out)
    print(f"{'measure':<22}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}", file=out)
    for name, r in report["results"].items():
        print(f"{name:<22}{r['requests']:>6}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}{r['p99_ms']:>9.2f}", file=out)
    print(f"\nconfiguration lookup: {report['lookup_share_percent']}% of the home pages' time (cumulative, "
          "cProfile)", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studios", type=int, default=100)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="JSON on stdout (the table then goes to stderr)")
    args = parser.parse_args(argv)
    if min(args.studios, args.versions, args.requests) < 1:
        parser.error("counts must be at least 1")
    return run_on_throwaway_database("portal_config", lambda url, tmp: run(args, url, tmp), print_table, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
