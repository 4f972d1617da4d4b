"""Stripe webhooks end to end: how fast gunicorn acknowledges them, and how long a payment takes to confirm a booking.

Real PostgreSQL (throwaway `portal_benchwh_<pid>` on BENCH_POSTGRES_URL's server, default
postgresql://postgres@127.0.0.1:5432/test, dropped at the end also on errors, Ctrl-C and SIGTERM), Redis db 12 (or
--redis-db; flushed before and after), `gunicorn -w 4` (PORTAL_ENV=production), `python -m worker`; the Stripe
stand-in runs here, delivering up to --standin-senders webhooks at once (Stripe delivers concurrently too).

1. acknowledgement   N distinct signed `customer.created` events POSTed to /webhooks/stripe by C client threads, no
   worker running. Per-request latency as the client sees it: with C > 4 it includes waiting for a free gunicorn
   sync worker. events/s is the verify + store + enqueue throughput; `stored` must be N and non-200 must be 0.
2. pay -> confirmed  K held bookings with Checkout Sessions are paid through the stand-in's control API at --rate/s;
   each figure runs from the pay call until the booking reads `confirmed` (one poller, every 20 ms). The stand-in
   sends only the event types the portal handles. Run with 1 worker, then 2, fresh bookings each. The p50 split,
   from webhook_events' timestamps: deliver = pay -> webhook received; queue = received -> batch claimed (wake,
   RQ wait); work = job started -> seen confirmed (incl. re-fetching the session, and up to one poll interval).
3. throughput        D bookings paid with no worker running (their events stored, one drain job woken), then 2 worker
   processes drain the queue: events/s from the first job's start to the last booking seen confirmed, and steady:
   the rate of the middle 80% of job starts (without one process's start-up and the last stragglers). Then where
   the machine's CPU went per event, from /proc (Linux): the worker processes, PostgreSQL, Redis and this process
   (mostly the stand-in), counted from both workers being ready to the last confirmation.
4. stand-in ceiling  Checkout Session retrievals (what a worker asks Stripe per event) from 2 client processes of 4
   threads, as the two workers ask them: the most the stand-in answers per second here (its clients share the
   cores with it, as the workers do). Part 3 must stay below it, or the stand-in is what is measured.
Read p95/max against p50: a wide gap is queueing; a large `queue` means the workers cannot keep up with --rate.
Run: .venv/bin/python -m benchmarks.webhooks [--events 2000] [--concurrency 16] [--bookings 100] [--rate 20]
     [--worker-threads 2] [--drain 600] [--standin-senders 8] [--redis-db 12] [--json]
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import secrets
import socket
import subprocess
import sys
import threading
import time as clock
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import psycopg
import redis
from flask_migrate import upgrade
from rq import Worker

import stripe_standin
from benchmarks.harness import percentile, run_on_throwaway_database
from portal import create_app, tenancy
from portal.clock import utcnow
from portal.config import load_settings
from portal.extensions import db
from portal.models import AvailabilityRule, Package, Resource, ResourceKind, Studio, User
from portal.payments import get_provider
from portal.services import bookings, checkout, configuration, fulfilment

ROOT = Path(__file__).resolve().parent.parent
REDIS_BASE = "redis://127.0.0.1:6379"
RESOURCES, OPEN, CLOSE = 5, 8, 20  # a UTC studio, 30-minute lessons back to back (no buffer): 120 slots a day
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def summary(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms) or [math.nan]
    rank = lambda p: round(percentile(ordered, p), 1)  # noqa: E731
    return {"n": len(samples_ms), "p50_ms": rank(0.5), "p95_ms": rank(0.95), "p99_ms": rank(0.99), "max_ms": rank(1)}


def post_json(url: str, body: dict) -> dict:
    with _OPENER.open(urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"}),
                      timeout=30) as response:
        return json.load(response)


def wait_until(check, what: str, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = clock.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        if clock.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        clock.sleep(0.1)


def answers(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_proc(argv: list[str], env: dict, log_path: str) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_procs(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()  # gunicorn: graceful stop; RQ: warm shutdown (a no-op once a process has exited)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def send_events(port: int, secret: str, n: int, concurrency: int) -> dict:
    """N signed events from C threads, one keep-alive connection each (gunicorn's sync workers close it anyway)."""
    now, local = int(clock.time()), threading.local()

    def send(i: int) -> tuple[float, int | str]:
        body = json.dumps({"id": f"evt_bench{i:07d}", "object": "event", "type": "customer.created", "created": now,
                           "data": {"object": {"id": f"cus_bench{i:07d}", "object": "customer"}}}).encode()
        headers = {"Content-Type": "application/json", "Stripe-Signature": stripe_standin.sign(body, secret, now)}
        conn = local.conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t0 = clock.perf_counter()
        try:
            conn.request("POST", "/webhooks/stripe", body=body, headers=headers)
            with conn.getresponse() as response:
                response.read()
                status = response.status
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            status = type(error).__name__
        return (clock.perf_counter() - t0) * 1000, status

    t0 = clock.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies, statuses = zip(*pool.map(send, range(n)), strict=True)
    seconds = clock.perf_counter() - t0
    return {"events": n, "concurrency": concurrency, "seconds": round(seconds, 2),
            "events_per_s": round(n / seconds, 1), **summary(list(latencies)),
            "non_200": {str(s): statuses.count(s) for s in set(statuses) if s != 200}}


def seed_studio() -> int:
    with tenancy.all_tenants():
        studio = Studio(slug="bench-wh", name="Bench Webhooks", timezone="UTC", currency="usd", buffer_minutes=0)
        db.session.add(studio)
        db.session.flush()
        for i in range(1, RESOURCES + 1):
            room = Resource(studio_id=studio.id, slug=f"room-{i}", name=f"Room {i}", kind=ResourceKind.ROOM)
            db.session.add(room)
            db.session.flush()
            db.session.add_all(AvailabilityRule(studio_id=studio.id, resource_id=room.id, weekday=wd,
                                                start_time=time(OPEN), end_time=time(CLOSE)) for wd in range(7))
        db.session.add(Package(studio_id=studio.id, slug="lesson-30", name="30-minute lesson", duration_minutes=30,
                               price_minor=3500, currency="usd"))
        db.session.flush()
        configuration.start(studio, now=utcnow())
        db.session.commit()
        return studio.id


def all_slots(day):
    """(resource slug, UTC start) pairs from `day` on, each handed out once over the whole run."""
    while True:
        for half_hour in range((CLOSE - OPEN) * 2):
            start = datetime.combine(day, time(OPEN), timezone.utc) + timedelta(minutes=30 * half_hour)
            yield from ((f"room-{r}", start) for r in range(1, RESOURCES + 1))
        day += timedelta(days=1)


def hold_and_checkout(studio_id: int, slots, k: int, run: str) -> list[tuple[int, str]]:
    """K holds (3 per student, the open-hold limit) with their Checkout Sessions: [(booking id, session id)]."""
    now, pairs = datetime.now(timezone.utc), []
    students = [User(email=f"bench-{run}-{i}@example.com", name="Bench", password_hash="!unusable")
                for i in range(math.ceil(k / bookings.MAX_OPEN_HOLDS))]
    db.session.add_all(students)
    db.session.commit()
    with tenancy.scoped(studio_id):
        studio = db.session.get(Studio, studio_id)
        for i in range(k):
            student, (resource, start) = students[i // bookings.MAX_OPEN_HOLDS], next(slots)
            booking = bookings.hold_slot(studio=studio, student=student, package_slug="lesson-30",
                                         resource_slug=resource, start_raw=start.isoformat(), now=now)
            payment = checkout.start_checkout(booking=booking, student=student, provider=get_provider(), now=now,
                                              success_url="http://127.0.0.1/ok", cancel_url="http://127.0.0.1/no")
            pairs.append((booking.id, payment.checkout_session_id))
    db.session.remove()
    return pairs


def pay_and_time(standin_base: str, database_url: str, pairs, rate: float, timeout: float) -> dict:
    """Pay each session at `rate`/s while one poller notes when each booking reads `confirmed`."""
    paid, seen, lock, done = {}, {}, threading.Lock(), threading.Event()  # booking id -> (perf_counter, wall clock)

    def poll() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not done.wait(0.02):
                with lock:
                    pending = [b for b in paid if b not in seen]
                rows = conn.execute("SELECT id FROM bookings WHERE id = ANY(%s) AND status = 'confirmed'",
                                    (pending,)).fetchall() if pending else []
                now = clock.perf_counter(), clock.time()
                with lock:
                    seen.update((row[0], now) for row in rows)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        next_at = clock.perf_counter()
        for booking_id, session_id in pairs:
            clock.sleep(max(0.0, next_at - clock.perf_counter()))
            next_at += 1 / rate
            with lock:
                paid[booking_id] = clock.perf_counter(), clock.time()
            post_json(f"{standin_base}/_standin/checkout/sessions/{session_id}/pay", {"outcome": "pay"})
        wait_until(lambda: len(seen) == len(pairs) or clock.perf_counter() > next_at + timeout, "confirmations",
                   timeout=timeout + 5)
    finally:
        done.set()
        poller.join()
    with psycopg.connect(database_url) as conn:  # where the time went: the webhook's received and job-start times
        rows = conn.execute("SELECT p.booking_id, e.received_at, e.processed_at FROM webhook_events e JOIN payments p "
                            "ON p.checkout_session_id = e.payload->'data'->'object'->>'id' "
                            "WHERE e.type = 'checkout.session.completed' AND e.processed_at IS NOT NULL").fetchall()
    split = [(got.timestamp() - paid[b][1], (started - got).total_seconds(), seen[b][1] - started.timestamp())
             for b, got, started in rows if b in paid and b in seen]
    return {**summary([(seen[b][0] - paid[b][0]) * 1000 for b in seen]), "unconfirmed": len(pairs) - len(seen),
            **{f"{part}_p50_ms": summary([x[i] * 1000 for x in split])["p50_ms"]
               for i, part in enumerate(("deliver", "queue", "work"))}}


def start_workers(n: int, args: argparse.Namespace, env: dict, tmp: str) -> list[subprocess.Popen]:
    return [start_proc([sys.executable, "-m", "worker", "--sweep-interval", "0", "--threads", str(args.worker_threads)],
                       env, f"{tmp}/worker.log") for _ in range(n)]


def cpu_seconds(worker_pids: set[int]) -> dict[str, float] | None:
    """CPU time so far (user + system, from /proc) of the processes a drain keeps busy, by kind: the worker
    processes, PostgreSQL's processes, Redis, and this one (the stand-in answering the workers, and the poller).
    None where /proc cannot be read (not Linux)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found = {"workers": 0.0, "postgres": 0.0, "redis": 0.0, "stand-in (this process)": 0.0}
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat, open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                fields, command = stat.read().rsplit(")", 1)[1].split(), cmdline.read()
        except OSError:  # gone meanwhile
            continue
        kind = ("workers" if pid in worker_pids else "stand-in (this process)" if pid == os.getpid() else
                "postgres" if command.startswith(b"postgres") or b"/postgres" in command.split(b"\0")[0] else
                "redis" if b"redis-server" in command else None)
        if kind:
            found[kind] += (int(fields[11]) + int(fields[12])) / tick
    return found


def drain(app, studio_id: int, slots, standin_base: str, database_url: str, args, env: dict, tmp: str,
          procs: list) -> dict:
    """Pay D bookings with no worker running, wait until their events are stored and queued, then time 2 worker
    processes emptying the queue."""
    with app.app_context():
        pairs = hold_and_checkout(studio_id, slots, args.drain, "drain")
    booking_ids = [booking_id for booking_id, _ in pairs]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda pair: post_json(f"{standin_base}/_standin/checkout/sessions/{pair[1]}/pay",
                                             {"outcome": "pay"}), pairs))
    with psycopg.connect(database_url, autocommit=True) as conn:
        def count(sql: str) -> int:
            return conn.execute(sql, (booking_ids,)).fetchone()[0]

        stored_sql = ("SELECT count(*) FROM webhook_events e JOIN payments p ON p.checkout_session_id = e.object_id "
                      "WHERE p.booking_id = ANY(%s) AND e.type = 'checkout.session.completed'")
        wait_until(lambda: count(stored_sql) >= len(pairs), "the drain's events stored", timeout=120)
        group = start_workers(2, args, env, tmp)
        procs.extend(group)
        pids = {proc.pid for proc in group}
        cache = redis.Redis.from_url(env["REDIS_URL"])
        # Start counting CPU once both processes are ready, so their start-up is not charged to the events.
        wait_until(lambda: Worker.count(connection=cache) >= 2 * args.worker_threads, "2 RQ worker processes",
                   group[0], timeout=60)
        confirmed_sql = "SELECT count(*) FROM bookings WHERE id = ANY(%s) AND status = 'confirmed'"
        cpu_before, confirmed_before = cpu_seconds(pids), count(confirmed_sql)
        wait_until(lambda: count(confirmed_sql) >= len(pairs), "the drain's bookings confirmed", group[0],
                   timeout=args.timeout + 60)
        done = clock.time()
        cpu_after = cpu_seconds(pids)
        starts = sorted(row[0].timestamp() for row in conn.execute(
            "SELECT e.processed_at FROM webhook_events e JOIN payments p ON p.checkout_session_id = e.object_id "
            "WHERE p.booking_id = ANY(%s) AND e.processed_at IS NOT NULL", (booking_ids,)))
    stop_procs(group)
    seconds = done - starts[0]
    # The middle 80% of job starts: the rate once both processes run, without one's start-up or the last stragglers.
    low, high = starts[len(starts) // 10], starts[len(starts) * 9 // 10]
    steady = (len(starts) * 9 // 10 - len(starts) // 10) / (high - low) if high > low else math.nan
    counted = len(pairs) - confirmed_before
    cpu_ms = ({kind: round(1000 * (cpu_after[kind] - cpu_before[kind]) / counted, 2) for kind in cpu_before}
              if cpu_before is not None and cpu_after is not None and counted > 0 else None)
    return {"events": len(pairs), "workers": 2, "threads": args.worker_threads, "seconds": round(seconds, 2),
            "events_per_s": round(len(pairs) / seconds, 1), "steady_events_per_s": round(steady, 1),
            "cpu_ms_per_event": cpu_ms, "cpu_counted_events": counted}


def _retrieve_sessions(api_base: str, session_ids: list[str], threads: int, calls: int) -> float:
    """In a client process: `calls` Checkout Session retrievals from `threads` threads through the portal's own
    Stripe client; returns the seconds they took."""
    from portal.payments.stripe_provider import StripeProvider

    provider, each = StripeProvider("sk_test_bench", api_base), max(1, calls // threads)

    def client(n: int) -> None:
        for i in range(each):
            provider.retrieve_checkout_session(session_ids[(n * each + i) % len(session_ids)])

    t0 = clock.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(client, range(threads)))
    return clock.perf_counter() - t0


def standin_ceiling(standin_base: str, session_ids: list[str], processes: int = 2, threads: int = 4,
                    calls: int = 2000) -> dict:
    """Checkout Session retrievals from `processes` client processes of `threads` threads each, as the workers ask
    them: the stand-in (in this process) serves alone, as it does during the drain."""
    import multiprocessing

    each = calls // processes
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.apply(_retrieve_sessions, (standin_base, session_ids, 1, 10))  # both started and warm
        t0 = clock.perf_counter()
        pool.starmap(_retrieve_sessions, [(standin_base, session_ids, threads, each)] * processes)
        seconds = clock.perf_counter() - t0
    done = (each // threads) * threads * processes
    return {"calls": done, "processes": processes, "threads": threads, "calls_per_s": round(done / seconds, 1)}


def run(args: argparse.Namespace, database_url: str, tmp: str) -> dict:
    redis_url = f"{REDIS_BASE}/{args.redis_db}"
    secret, cache = "whsec_" + secrets.token_hex(24), redis.Redis.from_url(redis_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base, procs = f"http://127.0.0.1:{port}", []
    report = {"database": database_url.rsplit("/", 1)[1], "redis_db": args.redis_db}
    cache.flushdb()
    standin, standin_base = stripe_standin.start_server(port=0)
    try:
        env = {**os.environ, "PORTAL_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48),
               "DATABASE_URL": database_url, "REDIS_URL": redis_url, "STRIPE_SECRET_KEY": "sk_test_bench",
               "STRIPE_API_BASE": standin_base, "STRIPE_WEBHOOK_SECRETS": secret, "STRIPE_WEBHOOK_SECRET": "",
               "PORTAL_INSTANCE_PATH": tmp, "SMTP_HOST": "",  # mail goes to .eml files in tmp
               "PORTAL_BASE_URL": "https://portal.bench.invalid"}  # production requires one (links in mail only)
        app = create_app(load_settings(env=env))
        with app.app_context():
            upgrade()
            studio_id = seed_studio()
        procs.append(start_proc([str(ROOT / ".venv/bin/gunicorn"), "-w", "4", "-b", f"127.0.0.1:{port}",
                                 "--control-socket", f"{tmp}/gunicorn.ctl",  # not the shared ~/.gunicorn one
                                 "portal:create_app()"], env, f"{tmp}/gunicorn.log"))
        wait_until(lambda: answers(base + "/readyz"), "gunicorn /readyz", procs[0])

        report["ack"] = ack = send_events(port, secret, args.events, args.concurrency)
        with psycopg.connect(database_url) as conn:
            stored = dict(conn.execute("SELECT status, count(*) FROM webhook_events GROUP BY status").fetchall())
            ack.update(stored=sum(stored.values()), stored_by_status=stored,
                       rq_queued=cache.llen("rq:queue:portal"))
            # Those trivial events (and their drain job) would only delay part 2: a drain takes the oldest first.
            conn.execute("DELETE FROM webhook_events")
        cache.flushdb()

        handled = fulfilment.SESSION_EVENTS | fulfilment.REFUND_EVENTS
        post_json(f"{standin_base}/_standin/webhook", {"url": f"{base}/webhooks/stripe", "secret": secret,
                                                       "enabled_events": sorted(handled)})
        post_json(f"{standin_base}/_standin/config", {"senders": args.standin_senders})
        slots = all_slots(datetime.now(timezone.utc).date() + timedelta(days=2))
        for workers in (1, 2):
            with app.app_context():
                pairs = hold_and_checkout(studio_id, slots, args.bookings, f"w{workers}")
            group = start_workers(workers, args, env, tmp)
            procs.extend(group)
            wait_until(lambda count=workers * args.worker_threads: Worker.count(connection=cache) >= count,
                       f"{workers} RQ worker process(es)",
                       group[0])
            report[f"pay_to_confirmed_w{workers}"] = {
                "workers": workers, "rate_per_s": args.rate,
                **pay_and_time(standin_base, database_url, pairs, args.rate, args.timeout)}
            stop_procs(group)
        cache.flushdb()  # the confirmation mails left queued would only delay part 3
        if args.drain:
            report["drain"] = drain(app, studio_id, slots, standin_base, database_url, args, env, tmp, procs)
        report["standin"] = standin_ceiling(standin_base, [session_id for _, session_id in pairs])
        return report
    except BaseException:
        for log in sorted(Path(tmp).glob("*.log")):
            print(f"--- {log.name} (tail)", *log.read_text().splitlines()[-30:], sep="\n", file=sys.stderr)
        raise
    finally:  # the caller drops the database WITH (FORCE), closing this process's pooled connections too
        stop_procs(procs)
        standin.shutdown()
        cache.flushdb()


def print_table(report: dict, out) -> None:
    a = report["ack"]
    print(f"[db {report['database']}, gunicorn -w 4, Redis db {report['redis_db']}]\n\n"
          f"1. acknowledgement: {a['events']} events from "
          f"{a['concurrency']} threads in {a['seconds']} s = {a['events_per_s']} events/s\n   latency ms: p50 "
          f"{a['p50_ms']}  p95 {a['p95_ms']}  p99 {a['p99_ms']}  max {a['max_ms']}\n   non-200: "
          f"{sum(a['non_200'].values())} {a['non_200'] or ''}  stored rows: {a['stored']} {a['stored_by_status']}"
          f"  RQ queued: {a['rq_queued']}\n\n2. pay -> confirmed, ms{'p50 split:':>53}", file=out)
    print(f"   {'workers':>7}{'n':>5}{'p50':>8}{'p95':>8}{'max':>8}{'unconf.':>9}{'deliver':>10}{'queue':>8}"
          f"{'work':>8}", file=out)
    for r in (report["pay_to_confirmed_w1"], report["pay_to_confirmed_w2"]):
        print(f"   {r['workers']:>7}{r['n']:>5}{r['p50_ms']:>8}{r['p95_ms']:>8}{r['max_ms']:>8}{r['unconfirmed']:>9}"
              f"{r['deliver_p50_ms']:>10}{r['queue_p50_ms']:>8}{r['work_p50_ms']:>8}   (paid at {r['rate_per_s']}/s)",
              file=out)
    if "drain" in report:
        d = report["drain"]
        print(f"\n3. throughput: {d['events']} queued events drained by {d['workers']} worker processes "
              f"({d['threads']} threads each) in {d['seconds']} s = {d['events_per_s']} events/s (steady "
              f"{d['steady_events_per_s']}/s)", file=out)
        if d.get("cpu_ms_per_event"):
            parts = ", ".join(f"{kind} {ms}" for kind, ms in d["cpu_ms_per_event"].items())
            print(f"   CPU ms per event (the last {d['cpu_counted_events']}, both processes ready): {parts}; "
                  f"all {sum(d['cpu_ms_per_event'].values()):.2f} on {os.cpu_count()} CPUs", file=out)
    c = report["standin"]
    print(f"\n4. stand-in ceiling: {c['calls']} Checkout Session retrievals from {c['processes']} client processes "
          f"of {c['threads']} threads = {c['calls_per_s']} calls/s", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="signed events for part 1")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads for part 1")
    parser.add_argument("--bookings", type=int, default=100, help="bookings paid per worker count in part 2")
    parser.add_argument("--rate", type=float, default=20.0, help="payments per second in part 2")
    parser.add_argument("--worker-threads", type=int, default=2,
                        help="jobs each worker process runs at once (python -m worker --threads)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for confirmations after paying")
    parser.add_argument("--drain", type=int, default=600, help="events drained by 2 workers in part 3 (0: skip)")
    parser.add_argument("--standin-senders", type=int, default=8, help="webhooks the stand-in delivers at once")
    parser.add_argument("--redis-db", type=int, default=12, help="Redis database to use (flushed before and after)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (the table then goes to stderr)")
    args = parser.parse_args(argv)
    if min(args.events, args.concurrency, args.bookings) < 1 or args.rate <= 0:
        parser.error("events, concurrency, bookings and rate must be positive")
    return run_on_throwaway_database("portal_benchwh", lambda url, tmp: run(args, url, tmp), print_table, args.json)


if __name__ == "__main__":
    sys.exit(main())
