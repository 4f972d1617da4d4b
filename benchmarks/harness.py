"""What the benchmarks share: a throwaway PostgreSQL database, nearest-rank percentiles, and the run/print/JSON
shape of `main()`."""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import tempfile
from typing import Callable

import psycopg

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def admin(sql: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)] if ordered else math.nan


def run_on_throwaway_database(prefix: str, run: Callable[[str, str], dict],
                              print_table: Callable[[dict, object], None], as_json: bool) -> int:
    """Create `<prefix>_<pid>`, call `run(database_url, temp_dir)`, drop the database whatever happens (SIGTERM
    included), then print the report as a table, and as JSON on stdout when asked (the table then on stderr)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` cleans up
    name = f"{prefix}_{os.getpid()}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
            report = run(ADMIN_URL.rsplit("/", 1)[0] + "/" + name, tmp)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print_table(report, sys.stderr if as_json else sys.stdout)
    if as_json:
        print(json.dumps(report, indent=2))
    return 0


# --- serving and load ------------------------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WRK_SCRIPT = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
    + summary.errors.status
  io.write(string.format("RESULT %d %d %f %f %f %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), errors))
end
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(app_spec: str, env: dict, log_path: str, workers: int = 4):
    """gunicorn with the shipped settings (`gunicorn.conf.py`: bind and worker count from GUNICORN_BIND and
    WEB_CONCURRENCY); returns (process, base URL) once it answers."""
    import subprocess
    import time
    import urllib.request

    port = free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)}
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", os.path.join(ROOT, "gunicorn.conf.py"),
                             "--control-socket", log_path + ".ctl", app_spec], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "/", timeout=2).close()
            return proc, base
        except urllib.error.HTTPError:
            return proc, base  # it answers (a 404 at / is an answer)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn {app_spec} did not start; see {log_path}") from None
            time.sleep(0.2)


def stop(proc) -> None:
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load(url: str, *, seconds: float, connections: int, headers: dict | None = None, tmp: str = "/tmp") -> dict:
    """Drive GET `url` for `seconds` with `connections` concurrent connections: `wrk` when installed, else a
    Python client. Returns requests/s, p50/p95/p99 (ms) and the count of errors (non-2xx/3xx, socket)."""
    import shutil
    import subprocess

    headers = headers or {}
    if shutil.which("wrk"):
        script = os.path.join(tmp, "report.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
        argv = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
                "-s", script]
        for name, value in headers.items():
            argv += ["-H", f"{name}: {value}"]
        out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 30).stdout
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        requests, duration_us, p50, p95, p99, errors = line.split()[1:]
        return {"client": "wrk", "requests": int(requests), "rps": round(int(requests) / (int(duration_us) / 1e6), 1),
                "p50_ms": round(float(p50) / 1000, 2), "p95_ms": round(float(p95) / 1000, 2),
                "p99_ms": round(float(p99) / 1000, 2), "errors": int(errors)}
    return python_load(url, seconds=seconds, connections=connections, headers=headers)


def _exchange(conn, parts, method: str, path: str, body, headers: dict):
    """One request on `conn` (opened when None); returns the connection to use next (None once closed) and whether
    the answer was a success (below 400)."""
    import http.client

    conn = conn or http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        with conn.getresponse() as response:
            response.read()
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
            return conn, response.status < 400
    except (OSError, http.client.HTTPException):
        conn.close()
        return None, False


def python_load(url: str, *, seconds: float, connections: int, headers: dict | None = None,
                method: str = "GET", body_for=None) -> dict:
    """The Python client: `connections` threads, each one connection kept open where the server allows.
    `body_for(i)` gives (body, headers) per request for POSTs (webhook deliveries are signed one by one)."""
    import threading
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    errors = [0]
    lock, counter = threading.Lock(), iter(range(10**9))
    deadline = time.monotonic() + seconds

    def client():
        conn, mine, failed = None, [], 0
        while time.monotonic() < deadline:
            body, extra = body_for(next(counter)) if body_for else (None, {})
            t0 = time.perf_counter()
            conn, ok = _exchange(conn, parts, method, path, body, {**(headers or {}), **extra})
            failed += not ok
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"client": "python", "requests": len(ordered), "rps": round(len(ordered) / elapsed, 1),
            "p50_ms": round(percentile(ordered, 0.5), 2), "p95_ms": round(percentile(ordered, 0.95), 2),
            "p99_ms": round(percentile(ordered, 0.99), 2), "errors": errors[0]}


def paced_load(url: str, *, rate: float, seconds: float, connections: int, method: str = "GET", body_for=None) -> dict:
    """Requests sent at a fixed `rate`/s for `seconds` (open loop: the schedule does not wait for answers), spread
    over `connections` threads with a connection each. A latency counts from the moment the request was due, not
    from when a busy thread got to send it, so a server that falls behind shows it (no coordinated omission). The
    bodies (`body_for(k)`, signed deliveries) are all made before the clock starts, so the client's own work while
    it measures is the sending alone. Returns the rate achieved, p50/p95/p99 (ms) and errors."""
    import threading
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    total = int(rate * seconds)
    requests = [body_for(k) if body_for else (None, {}) for k in range(total)]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.perf_counter() + 0.2

    def client(first: int):
        conn, mine, failed = None, [], 0
        for k in range(first, total, connections):
            due = start + k / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            body, extra = requests[k]
            conn, ok = _exchange(conn, parts, method, path, body, extra)
            failed += not ok
            mine.append((time.perf_counter() - due) * 1000)
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return {"client": "python, paced", "requests": len(ordered), "rate": rate, "rps": round(len(ordered) / elapsed, 1),
            "p50_ms": round(percentile(ordered, 0.5), 2), "p95_ms": round(percentile(ordered, 0.95), 2),
            "p99_ms": round(percentile(ordered, 0.99), 2), "errors": errors[0]}
