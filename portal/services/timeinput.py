"""Dates and times typed into forms and query strings, parsed once, with a clear refusal for anything else.

Python's datetimes stop at years 1 and 9999, and converting an instant near either end to a studio's timezone (or
adding a lesson's length to it) overflows. Every time a request carries is parsed here and refused unless it lies
in a span the portal can work with, so no later arithmetic can fail.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from portal.services.errors import InvalidInput

#: The instants and dates the portal accepts from a request. Bookings are further limited to the booking window.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)


def parse_instant(raw: str | None, *, field: str = "start", missing: str = "Pick a time.") -> datetime:
    """An ISO 8601 instant with a UTC offset (as the availability API gives it), returned in UTC."""
    if not raw or not raw.strip():
        raise InvalidInput(missing, code=f"{field}_missing", field=field)
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("Times look like 2026-12-31T16:00:00-05:00.", code=f"{field}_invalid",
                           field=field) from None
    if value.tzinfo is None:
        raise InvalidInput("The time must carry its UTC offset, like 2026-12-31T16:00:00-05:00.",
                           code=f"{field}_invalid", field=field)
    try:
        value = value.astimezone(timezone.utc)
    except OverflowError:  # an offset that pushes it past year 1 or 9999
        value = None
    if value is None or not EARLIEST <= value < LATEST:
        raise InvalidInput("That time is out of range.", code=f"{field}_out_of_range", field=field)
    return value


def parse_date(raw: str, *, field: str = "date") -> date:
    """A `YYYY-MM-DD` date within the span the portal accepts."""
    try:
        value = date.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidInput("Dates look like 2026-12-31.", code=f"{field}_invalid", field=field) from None
    if not EARLIEST.date() <= value < LATEST.date():
        raise InvalidInput("That date is out of range.", code=f"{field}_out_of_range", field=field)
    return value


# --- studio-local wall times -----------------------------------------------------------------------------------

_CLOCK = re.compile(r"^([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?\s*([ap]\.?m\.?)?$", re.IGNORECASE)


def parse_wall_time(raw: str | None, *, field: str, missing: str = "Type a time.") -> time:
    """A time of day as typed (`09:30`, `17:05`, also `9:30 AM`), the way opening hours are written."""
    text = (raw or "").strip()
    if not text:
        raise InvalidInput(missing, code=f"{field}_missing", field=field)
    match = _CLOCK.match(text)
    if match is None:
        raise InvalidInput("Times look like 09:30 or 17:00.", code=f"{field}_invalid", field=field)
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if match[4]:
        if not 1 <= hour <= 12:
            raise InvalidInput("With AM or PM, the hour is 1 to 12.", code=f"{field}_invalid", field=field)
        hour = hour % 12 + (12 if match[4].lower().startswith("p") else 0)
    if hour == 24 and minute == 0 and second == 0:
        raise InvalidInput("A day's hours end by 23:59: opening hours cannot run past midnight.",
                           code=f"{field}_out_of_range", field=field)
    if hour > 23 or minute > 59 or second > 59:
        raise InvalidInput("That is not a time of day (00:00 to 23:59).", code=f"{field}_out_of_range",
                           field=field)
    return time(hour, minute, second)


@dataclass(frozen=True)
class LocalInstant:
    """A date and time typed in a studio's timezone and the instant it was taken to mean.

    `kind` says how the wall time met the clock changes: `exact` (it happens once), `skipped` (the clocks jumped
    over it: it never happens, and the instant is the moment of the jump, when the clock first shows a later time)
    or `repeated` (the clocks went back: it happens twice, and `edge` chose which)."""

    utc: datetime
    wall: datetime  # naive, as typed
    kind: str


def parse_local(raw: str | None, tz: tzinfo, *, field: str, edge: str = "start",
                missing: str = "Pick a date and time.") -> LocalInstant:
    """A studio-local date and time (`2026-12-31T16:00`, as a `datetime-local` field sends it) in UTC.

    Around a clock change: a time the clocks skip means the moment they jump (a closure "from 2:30" on that night
    starts when the clock jumps to 3:00); a time that happens twice is its first occurrence for the `start` of a
    span and its second for the `end`, so a span typed across the repeated hour covers all of it.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidInput(missing, code=f"{field}_missing", field=field)
    try:
        wall = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError:
        raise InvalidInput("Dates and times look like 2026-12-31 16:00.", code=f"{field}_invalid",
                           field=field) from None
    if wall.tzinfo is not None:
        raise InvalidInput("Type the studio's local time, without a UTC offset.", code=f"{field}_invalid",
                           field=field)
    wall = wall.replace(second=0, microsecond=0)
    if not EARLIEST.date() < wall.date() < LATEST.date():
        raise InvalidInput("That date is out of range.", code=f"{field}_out_of_range", field=field)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    if first == second:
        return LocalInstant(first, wall, "exact")
    if first.astimezone(tz).replace(tzinfo=None) == wall:  # it happens twice: fold 0 is the earlier one
        return LocalInstant(first if edge == "start" else second, wall, "repeated")
    return LocalInstant(_jump(wall, tz, min(first, second), max(first, second)), wall, "skipped")


def _jump(wall: datetime, tz: tzinfo, low: datetime, high: datetime) -> datetime:
    """The first instant at which the local clock shows `wall` or later (the clock change), by bisection over the
    seconds between the two readings of a skipped wall time."""
    low_s, high_s = 0, int((high - low).total_seconds())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if (low + timedelta(seconds=middle)).astimezone(tz).replace(tzinfo=None) < wall:
            low_s = middle
        else:
            high_s = middle
    return low + timedelta(seconds=high_s)
