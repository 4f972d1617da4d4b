"""A job for worker tests: records when it ran, in Redis, around a wait (standing in for Stripe's latency)."""
from __future__ import annotations

import threading
import time

from rq import get_current_job


def wait_and_record(seconds: float, key: str) -> None:
    job = get_current_job()
    started = time.monotonic()
    time.sleep(seconds)
    job.connection.rpush(key, f"{started} {time.monotonic()} {threading.get_ident()}")
