"""Free slots of one resource for one package, from the database, with the clock passed in."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, bindparam, or_, select

from portal import formatting, freshness
from portal.extensions import db
from portal.models import Booking, BookingStatus, Package, Resource, Studio
from portal.services import slots, studio_cache
from portal.services.errors import InvalidInput, NotFound
from portal.services.timeinput import parse_date


@dataclass(frozen=True)
class Offer:
    """What the student picked: a package on a resource (ORM rows or their cached copies: only the columns are
    read)."""

    package: Package | studio_cache.CachedPackage
    resource: Resource | studio_cache.CachedResource


def find_offer(studio: Studio, package_slug: str, resource_slug: str) -> Offer:
    """Active package and resource of `studio`, by slug (404 otherwise)."""
    package = studio_cache.calendar(studio).package(package_slug)
    if package is None:
        raise NotFound("No such lesson package at this studio.", code="package_not_found", field="package")
    return Offer(package, find_resource(studio, resource_slug))


def find_resource(studio: Studio, resource_slug: str) -> studio_cache.CachedResource:
    """An active resource of `studio`, by slug (404 otherwise)."""
    resource = studio_cache.calendar(studio).resource(resource_slug)
    if resource is None:
        raise NotFound("No such room, instrument or teacher at this studio.", code="resource_not_found",
                       field="resource")
    return resource


def booking_window(studio: Studio, now: datetime) -> tuple[date, date]:
    """First and last studio-local dates a student may book on."""
    tz = studio.tz
    today = now.astimezone(tz).date()
    freshness.limit(datetime.combine(today + timedelta(days=1), time.min, tz).astimezone(timezone.utc))
    return today, today + timedelta(days=studio.booking_horizon_days)


def parse_day(raw: str | None, studio: Studio, now: datetime) -> date:
    """A `YYYY-MM-DD` date within the booking window; empty means today (studio-local)."""
    first, last = booking_window(studio, now)
    if not raw:
        return first
    day = parse_date(raw)
    if day < first or day > last:
        raise InvalidInput(f"Pick a date between {formatting.day(first, studio.locale)} and "
                           f"{formatting.day(last, studio.locale)}.", code="date_out_of_range", field="date")
    return day


def parse_range(from_raw: str | None, to_raw: str | None) -> tuple[date, date]:
    """`from`..`to` (inclusive `YYYY-MM-DD` dates), at most `slots.MAX_RANGE_DAYS` days, in order.

    The range may reach outside the booking window (a month view shows the whole month): days outside it simply
    have no free times, as `free_slots` answers.
    """
    first = parse_date(from_raw or "", field="from")
    last = parse_date(to_raw or "", field="to")
    if last < first:
        raise InvalidInput("The range ends before it starts: `to` must not be before `from`.",
                           code="range_reversed", field="to")
    if (last - first).days + 1 > slots.MAX_RANGE_DAYS:
        raise InvalidInput(f"Ask for at most {slots.MAX_RANGE_DAYS} days at once.", code="range_too_long",
                           field="to")
    return first, last


def days_in_range(studio: Studio, offer: Offer, first_day: date, last_day: date,
                  now: datetime) -> list[tuple[date, list[datetime]]]:
    """Every day from `first_day` to `last_day` with its free starts (empty outside the booking window)."""
    found = free_slots(studio, offer, first_day, last_day, now)
    return [(first_day + timedelta(days=n), found.get(first_day + timedelta(days=n), []))
            for n in range((last_day - first_day).days + 1)]


def _utc_span(studio: Studio, first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """UTC instants covering the local days, padded a day each side for buffers and DST."""
    tz = studio.tz
    start = datetime.combine(first_day - timedelta(days=1), time.min, tz).astimezone(timezone.utc)
    end = datetime.combine(last_day + timedelta(days=2), time.min, tz).astimezone(timezone.utc)
    return start, end


def inputs(studio: Studio, resource: Resource, first_day: date, last_day: date, now: datetime):
    """Opening hours and blackouts from the studio's cached calendar; the live bookings in one query."""
    span_start, span_end = _utc_span(studio, first_day, last_day)
    calendar = studio_cache.calendar(studio)
    rules = calendar.rules_for(resource.id)
    blackouts = calendar.blackouts_for(resource.id, span_start, span_end)
    if blackouts is None:
        blackouts = studio_cache.blackout_query(studio.id, resource.id, span_start, span_end)
    rows = db.session.execute(_LIVE_SPANS, {"studio_id": studio.id, "resource_id": resource.id, "now": now,
                                            "span_start": span_start, "span_end": span_end}).all()
    # A hold's time is free again when it expires: the answer holds until the first of them does.
    freshness.limit(min((expires for _, _, status, expires in rows if status == BookingStatus.HELD), default=None))
    busy = [slots.Interval(start, until) for start, until, _, _ in rows]
    return rules, blackouts, busy


_bookings = Booking.__table__.c
#: The live bookings of a resource overlapping a span: the one query an availability answer makes. Built once, on
#: the table's columns (a Core statement: no ORM compilation per request), so it names its studio itself: the
#: tenancy hook filters ORM queries only.
_LIVE_SPANS = select(_bookings.start_at, _bookings.occupied_until, _bookings.status, _bookings.hold_expires_at).where(
    _bookings.studio_id == bindparam("studio_id"), _bookings.resource_id == bindparam("resource_id"),
    or_(_bookings.status == BookingStatus.CONFIRMED,
        and_(_bookings.status == BookingStatus.HELD, _bookings.hold_expires_at > bindparam("now"))),
    _bookings.start_at < bindparam("span_end"), _bookings.occupied_until > bindparam("span_start"))


def free_slots(studio: Studio, offer: Offer, first_day: date, last_day: date, now: datetime,
               *, ignore_bookings: bool = False) -> dict[date, list[datetime]]:
    """Bookable starts per studio-local day, as aware datetimes in the studio's timezone.

    `ignore_bookings` answers "is this a bookable time at all?" (rules, blackouts, notice), which tells a
    malformed request (422) from a taken slot (409).
    """
    window_first, window_last = booking_window(studio, now)
    first_day, last_day = max(first_day, window_first), min(last_day, window_last)
    if last_day < first_day or not studio.active:  # a suspended studio offers no times
        return {}
    rules, blackouts, busy = inputs(studio, offer.resource, first_day, last_day, now)
    notice = timedelta(minutes=studio.min_notice_minutes)
    found = slots.free_slots_range(
        tz=studio.tz, first_day=first_day, last_day=last_day, rules=rules, blackouts=blackouts,
        busy=[] if ignore_bookings else busy,
        duration=timedelta(minutes=offer.package.duration_minutes), buffer=studio.buffer,
        notice=notice, step=timedelta(minutes=studio.slot_interval_minutes), now=now,
    )
    # The first time shown drops out when it comes within the notice period (a later one cannot go first).
    earliest = next((starts[0] for starts in found.values() if starts), None)
    freshness.limit(None if earliest is None else earliest - notice)
    return found


def free_slots_on(studio: Studio, offer: Offer, day: date, now: datetime) -> list[datetime]:
    return free_slots(studio, offer, day, day, now).get(day, [])


def first_free_day(studio: Studio, offer: Offer, now: datetime, *, chunk_days: int = 14) -> date | None:
    """The first studio-local day in the booking window with a free time for `offer`, or None."""
    first, last = booking_window(studio, now)
    while first <= last:
        until = min(first + timedelta(days=chunk_days - 1), last)
        days = free_slots(studio, offer, first, until, now)
        found = next((d for d in sorted(days) if days[d]), None)
        if found is not None:
            return found
        first = until + timedelta(days=1)
    return None
