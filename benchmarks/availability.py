"""How long availability takes on a busy studio, against a real, throwaway PostgreSQL database.

Seeds one studio (America/New_York, 30-minute grid, 10-minute buffer) with 5 resources open 08:00-22:00 daily,
packages lesson-30 and lesson-60, and 5,000 live bookings (confirmed, and holds not yet expired) over the next
60 days: back to back but for one free stretch per resource and day, about 85% of the open minutes. Then it
reports p50/p95/mean/max wall time (ms) of lesson-60 availability on room-1:

  API, 1 day        GET /s/<studio>/api/availability?...&date=<busiest day>: the whole Flask request via the
                    test client (studio lookup, package and resource lookups, the service, JSON)
  service, 1 day    availability.free_slots_on() for that day (studio and offer already loaded)
  service, 31 days  availability.free_slots() for 31 days, split into its two halves:
    db fetch        availability.inputs(): rules, blackouts and ~550 busy spans from PostgreSQL
    compute         slots.free_slots_range() on those inputs (pure Python)

The database `portal_bench_<pid>` is created on the server of BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test) and dropped at the end, also on errors, Ctrl-C and SIGTERM.
Run: .venv/bin/python -m benchmarks.availability [--iterations 200] [--range-iterations 50] [--json]
"""
from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import time as clock
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask_migrate import upgrade
from sqlalchemy import insert

from benchmarks.harness import percentile, run_on_throwaway_database
from portal import create_app, tenancy
from portal.config import load_settings
from portal.extensions import db
from portal.models import AvailabilityRule, Booking, BookingStatus, Package, Resource, ResourceKind, Studio, User
from portal.services import availability, configuration, slots

TZ_NAME, SLUG, RESOURCES, DAYS, BOOKINGS = "America/New_York", "bench-studio", 5, 60, 5000
OPEN, CLOSE, BUFFER = time(8), time(22), 10
PACKAGES = (("lesson-30", 30, 3500), ("lesson-60", 60, 6500))


def seed(now: datetime) -> tuple[date, dict[str, int]]:
    """Studio, resources, rules, packages, a student and the bookings (in bulk); returns (busiest day, counts)."""
    rng = random.Random(20240601)
    studio = Studio(slug=SLUG, name="Bench Studio", timezone=TZ_NAME, currency="usd", buffer_minutes=BUFFER)
    db.session.add(studio)
    db.session.flush()
    student = User(email="bench-student@example.com", name="Bench", password_hash="!unusable")
    resources = [Resource(studio_id=studio.id, slug=f"room-{i}", name=f"Room {i}", kind=ResourceKind.ROOM)
                 for i in range(1, RESOURCES + 1)]
    packages = [Package(studio_id=studio.id, slug=s, name=f"{m}-minute lesson", duration_minutes=m,
                        price_minor=p, currency="usd") for s, m, p in PACKAGES]
    db.session.add_all([student, *resources, *packages])
    db.session.flush()
    configuration.start(studio, now=now)
    db.session.add_all([AvailabilityRule(studio_id=studio.id, resource_id=r.id, weekday=wd, start_time=OPEN,
                                         end_time=CLOSE) for r in resources for wd in range(7)])
    open_minutes = (CLOSE.hour - OPEN.hour) * 60
    first = now.astimezone(studio.tz).date() + timedelta(days=1)
    base, extra = divmod(BOOKINGS, RESOURCES * DAYS)
    rows, busiest = [], (0, 0, first)
    for k, (resource, offset) in enumerate((r, d) for r in resources for d in range(DAYS)):
        pkgs = [packages[1] if rng.random() < 0.1 else packages[0] for _ in range(base + (k < extra))]
        while (slack := open_minutes - sum(p.duration_minutes + BUFFER for p in pkgs)) < 0:
            pkgs[pkgs.index(packages[1])] = packages[0]  # too long a day: shorten one 60-minute lesson
        gaps = [0] * (len(pkgs) + 1)  # back to back, but for one free stretch at a random place
        gaps[rng.randrange(len(gaps))] = slack
        if resource is resources[0] and offset <= 30:  # the API's day: most lessons, then longest free stretch
            busiest = max(busiest, (len(pkgs), slack, first + timedelta(days=offset)))
        cursor = datetime.combine(first + timedelta(days=offset), OPEN)  # studio-local wall time
        for pkg, gap in zip(pkgs, gaps[:-1], strict=True):  # the last gap is the day's free end
            start = (cursor + timedelta(minutes=gap)).replace(tzinfo=studio.tz).astimezone(timezone.utc)
            end = start + timedelta(minutes=pkg.duration_minutes)
            held = rng.random() < 0.25
            rows.append(dict(studio_id=studio.id, student_id=student.id, package_id=pkg.id, resource_id=resource.id,
                             start_at=start, end_at=end, occupied_until=end + timedelta(minutes=BUFFER),
                             status=BookingStatus.HELD if held else BookingStatus.CONFIRMED,
                             hold_expires_at=now + timedelta(days=7) if held else None,
                             price_minor=pkg.price_minor, currency="usd"))
            cursor += timedelta(minutes=gap + pkg.duration_minutes + BUFFER)
    db.session.execute(insert(Booking), rows)
    db.session.commit()
    held = sum(r["status"] is BookingStatus.HELD for r in rows)
    return busiest[2], {"studios": 1, "resources": RESOURCES, "availability_rules": RESOURCES * 7,
                        "packages": len(PACKAGES), "users": 1, "bookings": len(rows),
                        "bookings_confirmed": len(rows) - held, "bookings_held": held}


def timed(fn, iterations: int, warmup: int) -> tuple[dict[str, float], object]:
    for _ in range(warmup):
        fn()
    samples, result = [], None
    for _ in range(iterations):
        t0 = clock.perf_counter()
        result = fn()
        samples.append((clock.perf_counter() - t0) * 1000)
    ordered = sorted(samples)
    figures = {"p50_ms": percentile(ordered, 0.5), "p95_ms": percentile(ordered, 0.95),
               "mean_ms": statistics.fmean(samples), "max_ms": ordered[-1]}
    return {"iterations": iterations, **{k: round(v, 3) for k, v in figures.items()}}, result


def run(args: argparse.Namespace, database_url: str, instance_path: str) -> dict:
    settings = load_settings(env={"PORTAL_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48),
                                  "DATABASE_URL": database_url, "PORTAL_INSTANCE_PATH": instance_path,
                                  "PORTAL_BASE_URL": "https://portal.bench.invalid"})
    app = create_app(settings)
    now = datetime.now(timezone.utc)
    with app.app_context():
        upgrade()
        t0 = clock.perf_counter()
        with tenancy.all_tenants():
            busy_day, seeded = seed(now)
        seed_ms = (clock.perf_counter() - t0) * 1000
        db.session.remove()
    first_day = now.astimezone(ZoneInfo(TZ_NAME)).date() + timedelta(days=1)
    last_day, resource, r = first_day + timedelta(days=30), "room-1", {}

    # (a) the JSON API, outside any app context so each request gets its own context and session, as in production
    client = app.test_client()
    url = f"/s/{SLUG}/api/availability?package=lesson-60&resource={resource}&date={busy_day.isoformat()}"

    def api_call():
        response = client.get(url)
        assert response.status_code == 200, (response.status_code, response.get_data(as_text=True)[:300])
        return response.get_json()

    r["api_day"], body = timed(api_call, args.iterations, args.warmup)
    r["api_day"]["slots"] = len(body["slots"])

    # (b) the service in a tenant scope, then its two halves: database fetch and pure-Python computation
    with app.app_context():
        studio = db.session.scalar(db.select(Studio).where(Studio.slug == SLUG))
        with tenancy.scoped(studio.id):
            offer = availability.find_offer(studio, "lesson-60", resource)
            r["service_day"], found = timed(lambda: availability.free_slots_on(studio, offer, busy_day, now),
                                            args.iterations, args.warmup)
            r["service_day"]["slots"] = len(found)
            r["service_31d"], by_day = timed(lambda: availability.free_slots(studio, offer, first_day, last_day, now),
                                             args.range_iterations, args.warmup)
            r["service_31d"].update(days=len(by_day), slots=sum(map(len, by_day.values())))
            r["service_31d_db_fetch"], (rules, blackouts, busy) = timed(
                lambda: availability.inputs(studio, offer.resource, first_day, last_day, now),
                args.range_iterations, args.warmup)
            r["service_31d_db_fetch"]["busy_spans"] = len(busy)
            r["service_31d_compute"], by_day = timed(lambda: slots.free_slots_range(
                tz=studio.tz, first_day=first_day, last_day=last_day, rules=rules, blackouts=blackouts, busy=busy,
                duration=timedelta(minutes=offer.package.duration_minutes), buffer=studio.buffer,
                notice=timedelta(minutes=studio.min_notice_minutes),
                step=timedelta(minutes=studio.slot_interval_minutes), now=now), args.range_iterations, args.warmup)
            r["service_31d_compute"]["slots"] = sum(map(len, by_day.values()))
        db.session.remove()
        db.engine.dispose()
    return {"database": database_url.rsplit("/", 1)[1], "seeded": seeded, "seed_ms": round(seed_ms, 1),
            "package": "lesson-60", "resource": resource, "busy_day": busy_day.isoformat(),
            "range": [first_day.isoformat(), last_day.isoformat()], "results": r}


LABELS = {"api_day": "API, 1 day", "service_day": "service, 1 day", "service_31d": "service, 31 days",
          "service_31d_db_fetch": "  db fetch", "service_31d_compute": "  compute"}


def print_table(report: dict, out) -> None:
    s = report["seeded"]
    print(f"seeded {s['bookings']} bookings ({s['bookings_confirmed']} confirmed, {s['bookings_held']} held) on "
          f"{s['resources']} resources, {s['availability_rules']} rules, {s['packages']} packages "
          f"in {report['seed_ms']:.0f} ms  [db {report['database']}]", file=out)
    print(f"{report['package']} on {report['resource']}: day {report['busy_day']}, range "
          f"{report['range'][0]}..{report['range'][1]}\n", file=out)
    print(f"{'measure':<18}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'max ms':>9}   work", file=out)
    for name, r in report["results"].items():
        work = ", ".join(f"{k}={r[k]}" for k in ("days", "slots", "busy_spans") if k in r)
        print(f"{LABELS[name]:<18}{r['iterations']:>5}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}{r['mean_ms']:>9.2f}"
              f"{r['max_ms']:>9.2f}   {work}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200, help="timed runs of the one-day measures")
    parser.add_argument("--range-iterations", type=int, default=50, help="timed runs of the 31-day measures")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before each measure")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (the table then goes to stderr)")
    args = parser.parse_args(argv)
    if min(args.iterations, args.range_iterations) < 1 or args.warmup < 0:
        parser.error("iterations must be at least 1 and warmup not negative")
    return run_on_throwaway_database("portal_bench", lambda url, tmp: run(args, url, tmp), print_table, args.json)


if __name__ == "__main__":
    sys.exit(main())
