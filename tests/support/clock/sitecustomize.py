"""Test-only start-up hook: a Python process started by a test reads the test's pinned clock.

`tests/support/processes.py` puts this directory first on `PYTHONPATH` and sets `PORTAL_TEST_CLOCK` to
`"<pinned>@<real>"` (Unix seconds): the instant the test process showed and the real time at that moment. Python
imports `sitecustomize` as it starts, before any program code, so from its first reading on this interpreter's clock
shows `pinned + (real now - real)`, ticking on in real time, like the test process's own clock. Forked children
(gunicorn's workers, RQ's work horses) inherit the travel; a newly started interpreter computes the same clock again
from the variable. Without the variable this file does nothing.

This directory shadows any other `sitecustomize` on the path, so that one is run afterwards.
"""
import os
import sys


def _pin_the_clock() -> None:
    value = os.environ.get("PORTAL_TEST_CLOCK")
    if not value:
        return
    import time

    import time_machine

    pinned, real = (float(part) for part in value.split("@"))
    time_machine.travel(pinned + (time.time() - real), tick=True).start()
    time.time()  # a ticking travel starts counting at its first reading: make that now, not at the program's


def _run_the_shadowed_sitecustomize() -> None:
    from importlib.machinery import PathFinder

    here = os.path.dirname(os.path.abspath(__file__))
    path = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = sys.modules[__name__]
        spec.loader.exec_module(module)  # its names land in this module, as if it had been imported itself


_pin_the_clock()
_run_the_shadowed_sitecustomize()
