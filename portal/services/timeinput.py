"""Dates and times typed into forms and query strings, parsed once, with a clear refusal for anything else.

Python's datetimes stop at years 1 and 9999, and converting an instant near either end to a studio's timezone (or
adding a lesson's length to it) overflows. Every time a request carries is parsed here and refused unless it lies
in a span the portal can work with, so no later arithmetic can fail.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

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
