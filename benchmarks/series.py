"""Weekly series and lesson credits on a busy studio, against a real, throwaway PostgreSQL database.

Seeds one studio (America/New_York, 52-week series allowed) with one room open 08:00-22:00 daily, booked back to
back but for one free stretch a day for 40 weeks (about 3,600 live bookings), a blackout every fifth week, and a
student with 10,000 credit ledger rows (1,000 lots of 10 credits, 9,000 lessons booked with them). Then it reports
p50/p95/mean/max wall time (ms) of:

  plan, 40 weeks      series.plan(): every week's verdict (free, booked, blackout, closed) for one start
  API, 40 weeks       GET /s/<studio>/api/series-availability?...&weeks=40 through the test client
  balance             credits.usable(): the locked balance row
  ledger sum          credits.ledger_sum(): SUM over the student's 10,000 entries
  spend one           credit_states.take() of one credit (lock, open lots, append), rolled back each time
  history page        credits.history(limit=50): the newest entries for My lessons

The database `portal_bench_<pid>` is created on the server of BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test) and dropped at the end.
Run: .venv/bin/python -m benchmarks.series [--iterations 100] [--json]
"""
from __future__ import annotations

import argparse
import secrets
import sys
import time as clock
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask_migrate import upgrade
from sqlalchemy import insert, select, text

from benchmarks.availability import timed
from benchmarks.harness import run_on_throwaway_database
from portal import create_app, tenancy
from portal.config import load_settings
from portal.extensions import db
from portal.models import (
    AvailabilityRule,
    Blackout,
    Booking,
    BookingStatus,
    CreditBalance,
    CreditEntry,
    CreditKind,
    Package,
    Resource,
    ResourceKind,
    Studio,
    User,
)
from portal.services import audit, availability, configuration, credits, series
from portal.services.states import credit as credit_states

SLUG, WEEKS, LOTS, LOT_SIZE, SPENT = "bench-series", 40, 1000, 10, 9000
OPEN, CLOSE = time(8), time(22)


def seed(now: datetime) -> dict:
    studio = Studio(slug=SLUG, name="Bench Series", timezone="America/New_York", currency="usd", buffer_minutes=0,
                    series_max_weeks=52)
    db.session.add(studio)
    db.session.flush()
    student = User(email="bench-series@example.com", name="Bench", password_hash="!unusable")
    room = Resource(studio_id=studio.id, slug="room-1", name="Room 1", kind=ResourceKind.ROOM)
    package = Package(studio_id=studio.id, slug="lesson-60", name="60-minute lesson", duration_minutes=60,
                      price_minor=6500, currency="usd")
    db.session.add_all([student, room, package])
    db.session.flush()
    configuration.start(studio, now=now)
    db.session.add_all([AvailabilityRule(studio_id=studio.id, resource_id=room.id, weekday=wd, start_time=OPEN,
                                         end_time=CLOSE) for wd in range(7)])
    first = now.astimezone(studio.tz).date() + timedelta(days=1)
    rows = []
    for offset in range(WEEKS * 7 + 7):
        day = first + timedelta(days=offset)
        free_hour = 9 if offset % 14 == 2 else 8 + offset % 14  # one free hour a day; 09:00 every other week
        for hour in range(8, 22):
            if hour == free_hour:
                continue
            start = datetime.combine(day, time(hour), studio.tz).astimezone(timezone.utc)
            rows.append(dict(studio_id=studio.id, student_id=student.id, package_id=package.id, resource_id=room.id,
                             start_at=start, end_at=start + timedelta(hours=1),
                             occupied_until=start + timedelta(hours=1), status=BookingStatus.CONFIRMED,
                             price_minor=6500, currency="usd"))
    db.session.execute(insert(Booking), rows)
    for week in range(0, WEEKS, 5):
        day = first + timedelta(days=2, weeks=week)  # the series' weekday
        db.session.add(Blackout(studio_id=studio.id, resource_id=None, reason="bench",
                                starts_at=datetime.combine(day, time(0), studio.tz),
                                ends_at=datetime.combine(day, time(23), studio.tz)))
    balance = CreditBalance(studio_id=studio.id, student_id=student.id, minutes=60,
                            balance=LOTS * LOT_SIZE - SPENT, updated_at=now)
    db.session.add(balance)
    db.session.flush()
    lots = [dict(studio_id=studio.id, balance_id=balance.id, student_id=student.id, minutes=60,
                 kind=CreditKind.PURCHASE, amount=LOT_SIZE, expires_at=now + timedelta(days=365 + k),
                 actor_label="bench", note="", created_at=now - timedelta(days=400) + timedelta(minutes=k))
            for k in range(LOTS)]
    db.session.execute(insert(CreditEntry), lots)
    lot_ids = db.session.scalars(select(CreditEntry.id).where(CreditEntry.balance_id == balance.id)
                                 .order_by(CreditEntry.id)).all()
    debits = [dict(studio_id=studio.id, balance_id=balance.id, student_id=student.id, minutes=60,
                   kind=CreditKind.BOOKING, amount=-1, lot_id=lot_ids[k // LOT_SIZE], actor_label="bench", note="",
                   created_at=now - timedelta(days=300) + timedelta(minutes=k)) for k in range(SPENT)]
    db.session.execute(insert(CreditEntry), debits)
    db.session.commit()
    db.session.execute(text("ANALYZE"))  # statistics as a running database has them
    db.session.commit()
    return {"bookings": len(rows), "ledger_rows": LOTS + SPENT, "balance": LOTS * LOT_SIZE - SPENT,
            "student_id": student.id, "first_day": first}


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
            seeded = seed(now)
        seed_ms = (clock.perf_counter() - t0) * 1000
        db.session.remove()
    start = datetime.combine(seeded.pop("first_day") + timedelta(days=2), time(9), ZoneInfo("America/New_York"))
    r: dict[str, dict] = {}
    client = app.test_client()
    url = (f"/s/{SLUG}/api/series-availability?package=lesson-60&resource=room-1&weeks={WEEKS}"
           f"&start={start.isoformat().replace('+', '%2B')}")

    def api_call():
        response = client.get(url)
        assert response.status_code == 200, (response.status_code, response.get_data(as_text=True)[:300])
        return response.get_json()

    r["api_40w"], body = timed(api_call, args.iterations, args.warmup)
    r["api_40w"]["free_weeks"] = sum(o["free"] for o in body["occurrences"])
    with app.app_context():
        studio = db.session.scalar(select(Studio).where(Studio.slug == SLUG))
        student_id = seeded["student_id"]
        with tenancy.scoped(studio.id):
            offer = availability.find_offer("lesson-60", "room-1")
            r["plan_40w"], planned = timed(lambda: series.plan(studio, offer, start, WEEKS, now), args.iterations,
                                           args.warmup)
            r["plan_40w"]["reasons"] = ",".join(sorted({o.reason or "free" for o in planned}))
            r["balance"], value = timed(lambda: credits.usable(student_id, 60), args.iterations, args.warmup)
            r["balance"]["value"] = value
            r["ledger_sum"], value = timed(lambda: credits.ledger_sum(student_id), args.iterations, args.warmup)
            r["ledger_sum"]["value"] = value

            def spend():
                try:
                    return credit_states.take(studio_id=studio.id, student_id=student_id, minutes=60, count=1,
                                              kind=CreditKind.BOOKING, now=now, actor=audit.SYSTEM, note="bench")
                finally:
                    db.session.rollback()

            r["spend_one"], _ = timed(spend, args.iterations, args.warmup)
            r["history_page"], _ = timed(lambda: credits.history(student_id, limit=50), args.iterations, args.warmup)
        db.session.remove()
        db.engine.dispose()
    return {"database": database_url.rsplit("/", 1)[1], "seeded": seeded, "seed_ms": round(seed_ms, 1),
            "start": start.isoformat(), "results": r}


LABELS = {"plan_40w": "plan, 40 weeks", "api_40w": "API, 40 weeks", "balance": "balance",
          "ledger_sum": "ledger sum", "spend_one": "spend one", "history_page": "history page"}


def print_table(report: dict, out) -> None:
    s = report["seeded"]
    print(f"seeded {s['bookings']} bookings on one room and {s['ledger_rows']} ledger rows (balance "
          f"{s['balance']}) in {report['seed_ms']:.0f} ms  [db {report['database']}]; series from "
          f"{report['start']}\n", file=out)
    print(f"{'measure':<18}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'max ms':>9}   work", file=out)
    for name in LABELS:
        r = report["results"][name]
        work = ", ".join(f"{k}={r[k]}" for k in ("free_weeks", "reasons", "value") if k in r)
        print(f"{LABELS[name]:<18}{r['iterations']:>5}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}{r['mean_ms']:>9.2f}"
              f"{r['max_ms']:>9.2f}   {work}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100, help="timed runs of each measure")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before each measure")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (the table then goes to stderr)")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.warmup < 0:
        parser.error("iterations must be at least 1 and warmup not negative")
    return run_on_throwaway_database("portal_bench", lambda url, tmp: run(args, url, tmp), print_table, args.json)


if __name__ == "__main__":
    sys.exit(main())
