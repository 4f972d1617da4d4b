"""Calendar export: one lesson as an .ics file, and each student's private iCalendar feed per studio.

Times go out as UTC instants (`...Z`), so no VTIMEZONE is needed and every calendar app shows them in its own
zone; the studio's local time is repeated in the DESCRIPTION for people reading the raw event. A booking keeps
one UID for life and its `ical_sequence` grows on every move or cancellation, so subscribed calendars update
the event in place and drop it when the feed says STATUS:CANCELLED.

The feed's secret is `Membership.calendar_token`; regenerating it revokes the old address.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from portal import formatting, tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, Membership, Role, Studio, User

PRODID = "-//Studio Portal//Lesson calendar//EN"
UID_DOMAIN = "studio-portal"
#: How far back the feed reaches: enough for "what did I have last month", small enough to stay light.
FEED_HISTORY = timedelta(days=90)
#: Bookings a feed carries: lessons that happen, and ones that no longer do (so subscribers remove them).
FEED_STATUSES = (BookingStatus.CONFIRMED, BookingStatus.CANCELLED)
#: How often subscribing apps should poll (many ignore it; the feed's Cache-Control matches it roughly).
REFRESH_INTERVAL = timedelta(hours=1)


def event_uid(booking: Booking) -> str:
    return f"booking-{booking.id}@{booking.studio.slug}.{UID_DOMAIN}"


def event_status(booking: Booking) -> str:
    if booking.status == BookingStatus.CONFIRMED:
        return "CONFIRMED"
    if booking.status == BookingStatus.HELD:
        return "TENTATIVE"  # waiting for payment; only the single-booking download can show one
    return "CANCELLED"


def _local_description(booking: Booking) -> str:
    studio = booking.studio
    tz, locale = studio.tz, studio.locale
    end = booking.end_at.astimezone(tz)
    when = (f"{formatting.day(booking.start_at, locale, tz)}, {formatting.clock(booking.start_at, locale, tz)} – "
            f"{formatting.clock(end, locale, tz)} {end.tzname() or ''}".rstrip()
            + f" ({studio.timezone.replace('_', ' ')} time)")
    lines = [
        f"{booking.package.name} at {studio.name}",
        when,
        f"Where: {booking.resource.name}",
        f"Booking reference: #{booking.id}",
    ]
    if event_status(booking) == "CANCELLED":
        lines.insert(0, "This lesson is cancelled.")
    return "\n".join(lines)


def _event(booking: Booking, stamp: datetime) -> Event:
    event = Event()
    event.add("uid", event_uid(booking))
    event.add("dtstamp", stamp)
    event.add("dtstart", booking.start_at)
    event.add("dtend", booking.end_at)
    event.add("summary", f"{booking.package.name} at {booking.studio.name}")
    event.add("location", booking.resource.name)
    event.add("description", _local_description(booking))
    event.add("last-modified", booking.updated_at)
    event.add("sequence", booking.ical_sequence)
    event.add("status", event_status(booking))
    event.add("transp", "OPAQUE")
    return event


def _calendar(studio: Studio, bookings: Iterable[Booking], stamp: datetime, *, feed: bool) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", f"{studio.name} lessons")
    calendar.add("x-wr-timezone", studio.timezone)
    if feed:
        calendar.add("refresh-interval", REFRESH_INTERVAL, parameters={"VALUE": "DURATION"})
        calendar.add("x-published-ttl", REFRESH_INTERVAL)
    for booking in bookings:
        calendar.add_component(_event(booking, stamp))
    return calendar.to_ical()


def booking_calendar(booking: Booking, now: datetime | None = None) -> bytes:
    """One lesson as an iCalendar file. DTSTAMP is `now` when given, else the booking's last change."""
    return _calendar(booking.studio, [booking], now or booking.updated_at, feed=False)


def student_feed(studio: Studio, student_id: int, now: datetime) -> bytes:
    """The student's lessons in `studio` (the one in scope) from 90 days ago on: confirmed ones, and cancelled
    ones so that subscribed calendars drop them. Held and expired bookings never were lessons: left out."""
    bookings = db.session.scalars(
        select(Booking)
        .where(Booking.studio_id == studio.id, Booking.student_id == student_id,
               Booking.status.in_(FEED_STATUSES), Booking.start_at >= now - FEED_HISTORY)
        .options(selectinload(Booking.package), selectinload(Booking.resource))
        .order_by(Booking.start_at, Booking.id)
    ).all()
    return _calendar(studio, bookings, now, feed=True)


# --- the feed's secret --------------------------------------------------------------------------------------

def new_token() -> str:
    return secrets.token_urlsafe(32)


def student_membership(user: User, studio: Studio) -> Membership | None:
    """`user`'s student membership in `studio`: what owns the calendar token."""
    return next((m for m in user.memberships if m.studio_id == studio.id and m.role == Role.STUDENT), None)


def ensure_token(membership: Membership) -> str:
    """The membership's feed token, created on first use."""
    if not membership.calendar_token:
        membership.calendar_token = new_token()
        db.session.commit()
    return membership.calendar_token


def regenerate_token(membership: Membership) -> str:
    """A new feed address; the old one stops working at once."""
    membership.calendar_token = new_token()
    db.session.commit()
    return membership.calendar_token


def membership_for_token(token: str) -> Membership | None:
    """The active student membership of the studio in scope that owns `token`, or None."""
    studio_id = tenancy.current_studio_id()
    if not token or studio_id is None:
        return None
    return db.session.scalar(
        select(Membership).join(User, Membership.user_id == User.id)
        .where(Membership.calendar_token == token, Membership.studio_id == studio_id,
               Membership.role == Role.STUDENT, User.active.is_(True)))
