"""The tests' clock: pinned to PORTAL_TEST_NOW (or the default instant), ticking, the same in child processes."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import time_machine

from portal.clock import utcnow
from tests.conftest import REAL_START
from tests.support.processes import python_env

TOLERANCE = timedelta(seconds=2)

#: Prints what a child process reads: the portal's clock, then the same read in a forked grandchild (as gunicorn's
#: workers and RQ's work horses are forked).
CHILD = """
import os, time
from portal.clock import utcnow
print(utcnow().isoformat(), flush=True)
pid = os.fork()
if pid == 0:
    print(utcnow().isoformat(), time.time(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def expected_now(pytestconfig, pinned_clock) -> datetime:
    """The pinned instant plus the real time since the session's clock started."""
    return pinned_clock + timedelta(seconds=time_machine.escape_hatch.time.time() - pytestconfig.stash[REAL_START])


def test_the_clock_reads_the_pinned_instant_and_ticks(pytestconfig, pinned_clock):
    assert pinned_clock.utcoffset() is not None
    now = utcnow()
    assert abs(now - expected_now(pytestconfig, pinned_clock)) < TOLERANCE
    assert pinned_clock <= now
    assert abs(datetime.now(timezone.utc) - now) < TOLERANCE and abs(time.time() - now.timestamp()) < 2
    time.sleep(0.2)
    assert timedelta(seconds=0.2) <= utcnow() - now < timedelta(seconds=0.2) + TOLERANCE  # it ticks


def test_a_child_process_and_its_forks_read_the_same_clock(pytestconfig, pinned_clock):
    before = utcnow()
    child = subprocess.run([sys.executable, "-c", CHILD], env=python_env(), capture_output=True, text=True,
                           timeout=60)
    after = utcnow()
    assert child.returncode == 0, child.stderr
    own, forked = child.stdout.splitlines()
    forked_now, forked_time = forked.split()
    for seen in (datetime.fromisoformat(own), datetime.fromisoformat(forked_now),
                 datetime.fromtimestamp(float(forked_time), timezone.utc)):
        assert before - TOLERANCE <= seen <= after + TOLERANCE, (seen, before, after)
    assert abs(after - expected_now(pytestconfig, pinned_clock)) < TOLERANCE
