"""The environment of a Python process a test starts (a worker, gunicorn, the Stripe stand-in): on the test clock.

Tests run on a pinned clock (`tests/conftest.py`). A child process reads the real clock unless told otherwise, and
the processes of one test compare times with each other: webhook signature timestamps made in one are checked in
another within 300 s, hold expiry times written by one are swept by another. `python_env` adds what makes the child
read the same clock as the test at every moment: `PORTAL_TEST_CLOCK="<pinned now>@<real now>"` and
`tests/support/clock/` (its `sitecustomize.py`) on `PYTHONPATH`.
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import time_machine

CLOCK_VARIABLE = "PORTAL_TEST_CLOCK"
CLOCK_DIRECTORY = Path(__file__).resolve().parent / "clock"


def python_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (by default this process's environment) plus the test clock, for `subprocess.Popen(env=...)`."""
    result = dict(os.environ if env is None else env)
    result.pop(CLOCK_VARIABLE, None)
    if time_machine.escape_hatch.is_travelling():
        real = time_machine.escape_hatch.time.time()
        shown = time.time()
        result[CLOCK_VARIABLE] = f"{shown:.6f}@{real:.6f}"
        result["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLOCK_DIRECTORY), result.get("PYTHONPATH")]))
    return result
