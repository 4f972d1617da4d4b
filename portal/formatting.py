"""Template filters: money from minor units, instants in the studio's timezone."""
from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo

from flask import Flask, g

SYMBOLS = {"usd": "$", "gbp": "£", "eur": "€", "cad": "CA$", "aud": "A$"}
ZERO_DECIMAL = {"jpy", "krw"}


def money(minor: int, currency: str) -> str:
    """Integer minor units to a display string, without passing through floats."""
    code = (currency or "").lower()
    sign = "-" if minor < 0 else ""
    minor = abs(int(minor))
    symbol = SYMBOLS.get(code, code.upper() + " ")
    if code in ZERO_DECIMAL:
        return f"{sign}{symbol}{minor:,}"
    return f"{sign}{symbol}{minor // 100:,}.{minor % 100:02d}"


def _local(value: datetime) -> datetime:
    studio = g.get("studio")
    return value.astimezone(studio.tz) if studio is not None else value


def clock(value: datetime) -> str:
    """`4:00 PM` in the studio's timezone."""
    return _local(value).strftime("%-I:%M %p")


def when(value: datetime, tz: tzinfo | None = None) -> str:
    """`Mon 23 Nov 2026, 4:00 PM EST` in `tz`, by default the timezone of the studio of the request."""
    local = value.astimezone(tz) if tz is not None else _local(value)
    return local.strftime("%a %-d %b %Y, %-I:%M %p ") + (local.tzname() or "")


def long_date(value: date) -> str:
    return value.strftime("%A %-d %B %Y")


def init_app(app: Flask) -> None:
    app.add_template_filter(money)
    app.add_template_filter(clock)
    app.add_template_filter(when)
    app.add_template_filter(long_date)
    app.jinja_env.globals["timedelta"] = timedelta
