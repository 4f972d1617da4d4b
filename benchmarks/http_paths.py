"""The hot paths over HTTP in production shape, each as a share of a bare Flask app under the same settings.

Production shape: gunicorn with the shipped settings (`gunicorn.conf.py`, WEB_CONCURRENCY=4 by default), PostgreSQL
(throwaway `portal_benchhttp_<pid>` on BENCH_POSTGRES_URL's server, dropped at the end), Redis db 12 (flushed), the
Stripe stand-in, Prometheus multiprocess mode; the data of `benchmarks.availability` (one studio, 5 rooms, 5,000
bookings over 60 days). Beside it, `benchmarks.bare_app` (one JSON route) under the same gunicorn settings. Both are
driven by the same load generator: `wrk` when installed, else a Python client; each path for --seconds at
--connections concurrent connections, after one warm-up request.

Each path is measured in --rounds slices alternating with the bare app's (bare, path, bare, path, ...; --seconds
in all for each side), so that the two see the same stretches of the machine's time: on a shared virtual machine
whose speed drifts within minutes, one bare figure measured before every path made the shares of the later paths
wander by a third. Printed per path: requests/s over its slices, the bare app's over the slices beside them, the
share, and p50/p95/p99 latency (ms; the median of the slices' figures). Webhook deliveries must each be signed
afresh (a repeated signed request is a replay), so they are driven by the Python client, and compared with the bare
app receiving the same deliveries from the same client (its POST route reads the body and answers JSON). Then
deliveries are sent at a fixed --webhook-rate (300/s) for --seconds, to the bare app and then to the portal, and
their latency printed (the bare app's shows what the client and the machine add by themselves).
Run: .venv/bin/python -m benchmarks.http_paths [--seconds 10] [--rounds 3] [--connections 4] [--workers 4] [--json]
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import secrets
import statistics
import sys
import time as clock
import urllib.request
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import redis
from flask_migrate import upgrade

import stripe_standin
from benchmarks.availability import SLUG, TZ_NAME, seed
from benchmarks.harness import load, paced_load, python_load, run_on_throwaway_database, start_gunicorn, stop
from portal import create_app, tenancy
from portal.config import load_settings
from portal.extensions import db

REDIS_URL = "redis://127.0.0.1:6379/12"


def machine() -> str:
    cpus = os.cpu_count()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{cpus} CPUs ({model})"


def run(args: argparse.Namespace, database_url: str, tmp: str) -> dict:
    cache = redis.Redis.from_url(REDIS_URL)
    cache.flushdb()
    secret = "whsec_" + secrets.token_hex(24)
    standin, standin_base = stripe_standin.start_server(port=0)
    multiproc = os.path.join(tmp, "prometheus")
    os.mkdir(multiproc)
    env = {**os.environ, "PORTAL_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48),
           "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "STRIPE_SECRET_KEY": "sk_test_bench",
           "STRIPE_API_BASE": standin_base, "STRIPE_WEBHOOK_SECRETS": secret, "STRIPE_WEBHOOK_SECRET": "",
           "PORTAL_INSTANCE_PATH": tmp, "PORTAL_BASE_URL": "https://portal.bench.invalid",
           "PROMETHEUS_MULTIPROC_DIR": multiproc}
    app = create_app(load_settings(env=env))
    now = datetime.now(timezone.utc)
    with app.app_context():
        upgrade()
        with tenancy.all_tenants():
            busy_day, seeded = seed(now)
        db.session.remove()
    first = now.astimezone(ZoneInfo(TZ_NAME)).date() + timedelta(days=1)
    report = {"machine": machine(), "workers": args.workers, "connections": args.connections,
              "seconds": args.seconds, "rounds": args.rounds, "seeded": seeded, "paths": {}}
    procs = []
    try:
        portal, base = start_gunicorn("portal:create_app()", env, os.path.join(tmp, "portal.log"), args.workers)
        procs.append(portal)
        bare, bare_base = start_gunicorn("benchmarks.bare_app:app", env, os.path.join(tmp, "bare.log"),
                                         args.workers)
        procs.append(bare)
        slice_seconds = args.seconds / args.rounds
        drive = dict(seconds=slice_seconds, connections=args.connections)
        availability = f"/s/{SLUG}/api/availability?package=lesson-60&resource=room-1"
        package = f"/s/{SLUG}/packages/lesson-60?resource=room-1&date={busy_day}"
        paths = {
            "availability, 1 day": (f"{availability}&date={busy_day}", {}),
            "availability, 31 days": (f"{availability}&from={first}&to={first + timedelta(days=30)}", {}),
            "studio page": (f"/s/{SLUG}/", {}),
            "package page": (package, {}),
            "package page, conditional": (package, {"If-None-Match": "<etag>"}),
            "/metrics": ("/metrics", {}),
        }
        for name, (path, headers) in paths.items():
            with urllib.request.urlopen(base + path, timeout=30) as warm:
                etag = warm.headers.get("ETag")
            if "If-None-Match" in headers:
                headers = {"If-None-Match": etag}
                repeat = urllib.request.Request(base + path, headers=headers)
                try:
                    urllib.request.urlopen(repeat, timeout=30)
                    status = 200
                except urllib.error.HTTPError as answer:
                    status = answer.code
                report["conditional_status"] = status
            report["paths"][name] = paired(
                args.rounds, functools.partial(load, base + path, headers=headers, tmp=tmp, **drive),
                lambda: load(bare_base + "/", tmp=tmp, **drive))

        sent_at = int(clock.time())
        numbers = itertools.count()  # one sequence across every slice: a repeated delivery would be a replay

        def delivery(_i: int):
            i = next(numbers)
            body = json.dumps({"id": f"evt_bench{i:08d}", "object": "event", "type": "customer.created",
                               "created": sent_at, "data": {"object": {"id": "cus_bench", "object": "customer"}}})
            return body.encode(), {"Content-Type": "application/json",
                                   "Stripe-Signature": stripe_standin.sign(body.encode(), secret, sent_at)}

        report["paths"]["webhook acknowledgement"] = paired(
            args.rounds,
            lambda: python_load(base + "/webhooks/stripe", method="POST", body_for=delivery, **drive),
            lambda: python_load(bare_base + "/", method="POST", body_for=delivery, **drive))
        paced = dict(rate=args.webhook_rate, seconds=args.seconds, connections=8, method="POST", body_for=delivery)
        report["paced_bare"] = paced_load(bare_base + "/", **paced)  # what the client and machine add by themselves
        report["paced"] = paced_load(base + "/webhooks/stripe", **paced)
        return report
    except BaseException:
        for log in ("portal.log", "bare.log"):
            path = os.path.join(tmp, log)
            if os.path.exists(path):
                print(f"--- {log} (tail)", *open(path).read().splitlines()[-30:], sep="\n", file=sys.stderr)
        raise
    finally:
        for proc in procs:
            stop(proc)
        standin.shutdown()
        cache.flushdb()


def paired(rounds: int, measure_path, measure_bare) -> dict:
    """`rounds` slices of the bare app and the path, alternating; the path's figures with the bare app's beside."""
    slices = {"path": [], "bare": []}
    for _ in range(rounds):
        slices["bare"].append(measure_bare())
        slices["path"].append(measure_path())
    path, bare = (_combined(slices[side]) for side in ("path", "bare"))
    return {**path, "bare": bare}


def _combined(slices: list[dict]) -> dict:
    """Requests/s over all the slices (their requests over their time); each latency percentile the median of the
    slices' (percentiles of separate runs do not add up, and a median is not swayed by one disturbed slice)."""
    requests = sum(s["requests"] for s in slices)
    seconds = sum(s["requests"] / s["rps"] for s in slices if s["rps"])
    combined = {"client": slices[0]["client"], "requests": requests, "rps": round(requests / seconds, 1) if seconds
                else 0.0, "errors": sum(s["errors"] for s in slices)}
    for name in ("p50_ms", "p95_ms", "p99_ms"):
        combined[name] = round(statistics.median(s[name] for s in slices), 2)
    return combined


def print_table(report: dict, out) -> None:
    print(f"[{report['machine']}; gunicorn -c gunicorn.conf.py, {report['workers']} workers; "
          f"{report['connections']} connections, {report['seconds']} s per path and as much of the bare app beside "
          f"it, in {report['rounds']} alternating slices; {report['seeded']['bookings']} bookings]", file=out)
    print(f"{'path':<30}{'req/s':>9}{'bare':>9}{'of bare':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
          "  client", file=out)
    for name, r in report["paths"].items():
        bare = r["bare"]["rps"]
        share = f"{100 * r['rps'] / bare:.0f}%" if bare else "-"
        print(f"{name:<30}{r['rps']:>9}{bare:>9}{share:>9}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}"
              f"{r['errors']:>8}  {r['client']}", file=out)
    one, month = report["paths"]["availability, 1 day"], report["paths"]["availability, 31 days"]
    print(f"\nat {report['paced']['rate']:g} deliveries/s (paced, 8 connections, latency from when each was due):",
          file=out)
    for name, key in (("webhook acknowledgement", "paced"), ("bare app, same deliveries", "paced_bare")):
        paced = report[key]
        print(f"  {name:<28}{paced['rps']:>7} /s   p50 {paced['p50_ms']} / p95 {paced['p95_ms']} / p99 "
              f"{paced['p99_ms']} ms, {paced['errors']} errors", file=out)
    print(f"\n31 days / 1 day, p50: {month['p50_ms'] / one['p50_ms']:.2f}x; conditional repeat answered "
          f"{report.get('conditional_status')}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of load per path")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating slices of the bare app and each path (--seconds split among them)")
    parser.add_argument("--webhook-rate", type=float, default=300.0,
                        help="deliveries/s of the paced webhook acknowledgement run")
    parser.add_argument("--connections", type=int, default=4, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (the table then goes to stderr)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or min(args.connections, args.workers, args.rounds) < 1:
        parser.error("seconds, rounds, connections and workers must be positive")
    return run_on_throwaway_database("portal_benchhttp", lambda url, tmp: run(args, url, tmp), print_table,
                                     args.json)


if __name__ == "__main__":
    sys.exit(main())
