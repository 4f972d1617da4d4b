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
