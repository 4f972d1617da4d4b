"""The picker's month view: which days of a month have free times, from the same range computation as the
availability API, laid out in weeks the way the studio's locale starts them."""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from babel import Locale
from babel.dates import format_skeleton

from portal.models import Studio
from portal.services import availability


@dataclass(frozen=True)
class MonthDay:
    day: date
    slots: tuple[datetime, ...]
    bookable: bool  # inside the booking window

    @property
    def free(self) -> int:
        return len(self.slots)


@dataclass(frozen=True)
class WeekdayName:
    short: str
    full: str


@dataclass(frozen=True)
class Month:
    first: date  # the first of the month
    title: str  # "December 2026"
    weekdays: tuple[WeekdayName, ...]  # in the locale's order, e.g. Sunday first for en_US
    weeks: tuple[tuple[MonthDay | None, ...], ...]  # None pads the first and last week
    previous: date | None  # the day to open for the month before, None when it is outside the booking window
    next: date | None

    def slots_on(self, day: date) -> list[datetime]:
        return next((list(cell.slots) for week in self.weeks for cell in week if cell and cell.day == day), [])


def build(studio: Studio, offer: availability.Offer, day: date, now: datetime) -> Month:
    """The month containing `day`, every day with its free starts (one range query for the whole month)."""
    locale = Locale.parse(studio.locale or "en_US")
    first_day, last_day = availability.booking_window(studio, now)
    month_first = day.replace(day=1)
    month_last = day.replace(day=calendar.monthrange(day.year, day.month)[1])
    found = dict(availability.days_in_range(studio, offer, month_first, month_last, now))
    weeks = calendar.Calendar(firstweekday=locale.first_week_day).monthdatescalendar(day.year, day.month)
    cells = tuple(tuple(MonthDay(d, tuple(found[d]), first_day <= d <= last_day) if d.month == day.month else None
                        for d in week) for week in weeks)
    names = locale.days["format"]
    order = [(locale.first_week_day + n) % 7 for n in range(7)]
    previous_last = month_first - timedelta(days=1)
    next_first = month_last + timedelta(days=1)
    return Month(
        first=month_first,
        title=format_skeleton("yMMMM", month_first, locale=locale),
        weekdays=tuple(WeekdayName(names["abbreviated"][n], names["wide"][n]) for n in order),
        weeks=cells,
        previous=max(previous_last.replace(day=1), first_day) if previous_last >= first_day else None,
        next=next_first if next_first <= last_day else None,
    )
