"""How money, dates and times read on screen and in emails: one format, the studio's locale.

Dates and times follow the studio's CLDR locale through Babel (`en_US`: "Thu, Dec 3, 2026, 4:00 PM EST";
`en_GB`: "Thu, 3 Dec 2026, 16:00 GMT"), always in the studio's timezone. Pages, emails, calendar descriptions and
error messages all use these functions, so a date reads the same wherever a student meets it.
"""
from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta, tzinfo

from babel.dates import format_skeleton, format_time
from flask import Flask, g, has_app_context

SYMBOLS = {"usd": "$", "gbp": "£", "eur": "€", "cad": "CA$", "aud": "A$"}
ZERO_DECIMAL = {"jpy", "krw"}
DEFAULT_LOCALE = "en_US"
#: CLDR puts a narrow no-break space before AM/PM; plain-text mail and copy-paste fare better with a plain one.
_NARROW_NBSP = "\u202f"


def money(minor: int, currency: str) -> str:
    """Integer minor units to a display string, without passing through floats."""
    code = (currency or "").lower()
    sign = "-" if minor < 0 else ""
    minor = abs(int(minor))
    symbol = SYMBOLS.get(code, code.upper() + " ")
    if code in ZERO_DECIMAL:
        return f"{sign}{symbol}{minor:,}"
    return f"{sign}{symbol}{minor // 100:,}.{minor % 100:02d}"


def _studio_setting(name: str, default):
    studio = g.get("studio") if has_app_context() else None
    return getattr(studio, name) if studio is not None else default


def _locale(locale: str | None) -> str:
    return locale or _studio_setting("locale", DEFAULT_LOCALE)


def _local(value: datetime, tz: tzinfo | None) -> datetime:
    tz = tz if tz is not None else _studio_setting("tz", None)
    return value.astimezone(tz) if tz is not None else value


def day(value: date | datetime, locale: str | None = None, tz: tzinfo | None = None) -> str:
    """`Thu, Dec 3, 2026` (en_US). A datetime is first put in `tz` (default: the studio of the request)."""
    if isinstance(value, datetime):
        value = _local(value, tz).date()
    return _day_text(value, _locale(locale))


def clock(value: datetime, locale: str | None = None, tz: tzinfo | None = None) -> str:
    """`4:00 PM` (en_US) or `16:00` (en_GB), in `tz` (default: the studio of the request)."""
    local = _local(value, tz)
    return _clock_text(local.hour, local.minute, _locale(locale))


# A month view writes dozens of dates and times; Babel builds each from its pattern anew, so the texts are kept
# (keyed by plain values: a date, a wall-clock hour and minute, never an aware datetime, whose equality ignores
# its zone).
@functools.lru_cache(maxsize=4096)
def _day_text(value: date, locale: str) -> str:
    return format_skeleton("yMMMEd", value, locale=locale)


@functools.lru_cache(maxsize=4096)
def _clock_text(hour: int, minute: int, locale: str) -> str:
    return format_time(time(hour, minute), "short", locale=locale).replace(_NARROW_NBSP, " ")


def when(value: datetime, tz: tzinfo | None = None, locale: str | None = None) -> str:
    """`Thu, Dec 3, 2026, 4:00 PM EST`: day, time and the zone's abbreviation."""
    local = _local(value, tz)
    return f"{day(local, locale)}, {clock(local, locale)} {local.tzname() or ''}".rstrip()


def age(seconds: float | None) -> str:
    """A duration in words, to the unit that matters: `45 s`, `12 min`, `3 h 5 min`, `4 days`."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{seconds // 86400} days"


def local_date_iso(value: datetime, tz: tzinfo | None = None) -> str:
    """The studio-local date of an instant as `YYYY-MM-DD`, for links (never shown as text)."""
    return _local(value, tz).date().isoformat()


def init_app(app: Flask) -> None:
    app.add_template_filter(money)
    app.add_template_filter(clock)
    app.add_template_filter(when)
    app.add_template_filter(day)
    app.add_template_filter(local_date_iso)
    app.add_template_filter(age)
    app.jinja_env.globals["timedelta"] = timedelta
