"""Until when an answer being built stays true as the clock moves on, with nothing written in between.

An answer with free times changes without any write: a hold expires and its time is free again, a shown time
comes within the notice period and drops out, the studio's day ends and the booking window moves. The code that
reads the clock for such an answer calls `limit(instant)` with the first instant at which its part would read
differently; `measured()` collects the earliest of them while a view runs, for `portal.http.public(reuse=...)`.
Outside a measured block (jobs, the CLI, logged-in pages) `limit` does nothing.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import datetime


class Freshness:
    """The earliest limit seen; None: nothing read the clock, true until the inputs change."""

    def __init__(self) -> None:
        self.until: datetime | None = None

    def limit(self, instant: datetime) -> None:
        if self.until is None or instant < self.until:
            self.until = instant


_current: contextvars.ContextVar[Freshness | None] = contextvars.ContextVar("freshness", default=None)


def limit(instant: datetime | None) -> None:
    """The answer being measured (if any) holds only before `instant`."""
    current = _current.get()
    if current is not None and instant is not None:
        current.limit(instant)


@contextlib.contextmanager
def measured() -> Iterator[Freshness]:
    found = Freshness()
    token = _current.set(found)
    try:
        yield found
    finally:
        _current.reset(token)
