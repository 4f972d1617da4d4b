"""The iCalendar text itself: what a calendar app will read from a download or a subscription."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import BookingStatus, Role
from portal.services import calendars
from tests.calendar.conftest import make_booking, student_membership
from tests.factories import make_studio, make_user

NEW_YORK = ZoneInfo("America/New_York")
#: Lessons at 10:00 New York time next year (on the tests' clock), so ahead of any feed's cutoff: (month, day, the
#: UTC hour of 10:00 that day).
WINTER = (1, 14, 15)  # EST, UTC-5
SUMMER = (7, 15, 14)  # EDT, UTC-4


def events(ics: bytes) -> dict:
    return {str(e["uid"]): e for e in Calendar.from_ical(ics).walk("VEVENT")}


@pytest.fixture
def next_year():
    return utcnow().year + 1


@pytest.fixture
def winter(next_year):
    month, day, _utc_hour = WINTER
    return datetime(next_year, month, day, 10, 0, tzinfo=NEW_YORK)


@pytest.fixture
def summer(next_year):
    month, day, _utc_hour = SUMMER
    return datetime(next_year, month, day, 10, 0, tzinfo=NEW_YORK)


@pytest.fixture
def studio(app_ctx):
    return make_studio()


@pytest.fixture
def student(studio):
    return make_user("student@example.com", roles=[(studio, Role.STUDENT)])


@pytest.mark.parametrize("month,day,utc_hour", [WINTER, SUMMER], ids=["EST", "EDT"])
def test_confirmed_booking_is_one_event_at_its_utc_instants(studio, student, next_year, month, day, utc_hour):
    local_start = datetime(next_year, month, day, 10, 0, tzinfo=NEW_YORK)
    utc_start = datetime(next_year, month, day, utc_hour, 0, tzinfo=timezone.utc)
    booking = make_booking(studio, student, local_start, sequence=2)
    with tenancy.scoped(studio.id):
        ics = calendars.booking_calendar(booking)
    text = ics.decode()
    calendar = Calendar.from_ical(ics)
    (event,) = calendar.walk("VEVENT")

    assert str(calendar["version"]) == "2.0" and str(calendar["method"]) == "PUBLISH"
    assert str(calendar["calscale"]) == "GREGORIAN" and str(calendar["prodid"])
    assert str(calendar["x-wr-calname"]) == "Melody And Meter lessons"
    assert str(calendar["x-wr-timezone"]) == "America/New_York"
    assert str(event["uid"]) == f"booking-{booking.id}@melody-and-meter.studio-portal"
    assert str(event["summary"]) == "60-minute lesson at Melody And Meter"
    assert str(event["location"]) == "Piano"
    assert event.decoded("dtstart") == booking.start_at == utc_start
    assert event.decoded("dtend") == booking.end_at == utc_start + timedelta(hours=1)
    assert f"DTSTART:{utc_start:%Y%m%dT%H%M%S}Z" in text  # a UTC instant, not a floating or zoned time
    assert event.decoded("last-modified") == booking.updated_at.replace(microsecond=0)
    assert "DTSTAMP:" in text
    assert int(event["sequence"]) == 2
    assert str(event["status"]) == "CONFIRMED"
    description = str(event["description"])
    assert "10:00 AM – 11:00 AM" in description  # the studio's local time, EST or EDT alike
    assert local_start.tzname() in description


def test_cancelled_bookings_are_published_cancelled(studio, student, winter, summer):
    in_winter = make_booking(studio, student, winter, status=BookingStatus.CANCELLED, sequence=1)
    in_summer = make_booking(studio, student, summer, status=BookingStatus.CANCELLED, sequence=1)
    with tenancy.scoped(studio.id):
        for booking in (in_winter, in_summer):
            (event,) = events(calendars.booking_calendar(booking)).values()
            assert str(event["status"]) == "CANCELLED"
            assert "cancelled" in str(event["description"]).lower()


def test_feed_lists_only_this_students_confirmed_and_cancelled_lessons_in_this_studio(app_ctx):
    studio = make_studio()
    other_studio = make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("violin",))
    student = make_user("student@example.com", roles=[(studio, Role.STUDENT), (other_studio, Role.STUDENT)])
    rival = make_user("rival@example.com", roles=[(studio, Role.STUDENT)])
    now = utcnow()
    day = now.astimezone(NEW_YORK).replace(hour=10, minute=0, second=0, microsecond=0)
    confirmed = make_booking(studio, student, day + timedelta(days=7))
    cancelled = make_booking(studio, student, day + timedelta(days=8), status=BookingStatus.CANCELLED, sequence=1)
    recent = make_booking(studio, student, day - timedelta(days=30))
    make_booking(studio, student, day - timedelta(days=120))  # older than the feed reaches
    make_booking(studio, student, day + timedelta(days=9), status=BookingStatus.HELD)
    make_booking(studio, student, day + timedelta(days=10), status=BookingStatus.EXPIRED)
    make_booking(studio, rival, day + timedelta(days=11))
    make_booking(other_studio, student, day + timedelta(days=7), package="lesson-30", resource="violin")

    with tenancy.scoped(studio.id):
        listed = events(calendars.student_feed(studio, student.id, now))

    assert set(listed) == {calendars.event_uid(b) for b in (recent, confirmed, cancelled)}
    assert {str(e["status"]) for e in listed.values()} == {"CONFIRMED", "CANCELLED"}
    assert str(listed[calendars.event_uid(cancelled)]["status"]) == "CANCELLED"


def test_feed_of_another_studio_in_scope_is_empty(app_ctx, winter):
    """The explicit studio filter and the tenant scope agree; a mismatch shows nothing rather than leaking."""
    studio = make_studio()
    other_studio = make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("violin",))
    student = make_user("student@example.com", roles=[(studio, Role.STUDENT)])
    make_booking(studio, student, winter)
    with tenancy.scoped(other_studio.id):
        assert events(calendars.student_feed(studio, student.id, utcnow())) == {}


def test_cancellation_keeps_the_uid_and_raises_the_sequence(studio, student, winter):
    booking = make_booking(studio, student, winter)
    now = utcnow()
    uid = calendars.event_uid(booking)
    with tenancy.scoped(studio.id):
        before = events(calendars.student_feed(studio, student.id, now))[uid]
        booking.status = BookingStatus.CANCELLED
        booking.ical_sequence += 1
        db.session.commit()
        after = events(calendars.student_feed(studio, student.id, now))

    assert list(after) == [uid]
    assert str(before["status"]) == "CONFIRMED" and str(after[uid]["status"]) == "CANCELLED"
    assert int(after[uid]["sequence"]) == int(before["sequence"]) + 1


def test_moved_booking_shows_its_new_times_under_the_same_uid(studio, student, winter, summer, next_year):
    booking = make_booking(studio, student, winter)
    now = utcnow()
    with tenancy.scoped(studio.id):
        booking.start_at, booking.end_at = summer, summer + timedelta(minutes=60)
        booking.occupied_until = booking.end_at
        booking.ical_sequence += 1
        db.session.commit()
        (event,) = events(calendars.student_feed(studio, student.id, now)).values()

    assert str(event["uid"]) == calendars.event_uid(booking)
    assert event.decoded("dtstart") == datetime(next_year, 7, 15, 14, 0, tzinfo=timezone.utc)
    assert event.decoded("dtend") == datetime(next_year, 7, 15, 15, 0, tzinfo=timezone.utc)
    assert int(event["sequence"]) == 1 and str(event["status"]) == "CONFIRMED"


def test_feed_asks_subscribers_to_refresh(studio, student):
    with tenancy.scoped(studio.id):
        calendar = Calendar.from_ical(calendars.student_feed(studio, student.id, utcnow()))
    assert calendar.decoded("refresh-interval") == timedelta(hours=1)
    assert str(calendar["x-wr-calname"]) == "Melody And Meter lessons"


def test_tokens_are_created_once_regenerated_and_found_only_in_their_studio(app_ctx):
    studio = make_studio()
    other_studio = make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("violin",))
    student = make_user("student@example.com", roles=[(studio, Role.STUDENT)])
    make_user("admin@example.com", roles=[(studio, Role.ADMIN)])
    membership = student_membership(student, studio)

    token = calendars.ensure_token(membership)
    assert len(token) >= 43 and calendars.ensure_token(membership) == token
    with tenancy.scoped(studio.id):
        assert calendars.membership_for_token(token) is membership
        assert calendars.membership_for_token("not-" + token) is None
        assert calendars.membership_for_token("") is None
    with tenancy.scoped(other_studio.id):
        assert calendars.membership_for_token(token) is None
    assert calendars.membership_for_token(token) is None  # no studio in scope: nothing

    fresh = calendars.regenerate_token(membership)
    assert fresh != token
    with tenancy.scoped(studio.id):
        assert calendars.membership_for_token(token) is None
        assert calendars.membership_for_token(fresh) is membership


def test_deactivated_student_feed_stops(studio, student):
    token = calendars.ensure_token(student_membership(student, studio))
    student.active = False
    db.session.commit()
    with tenancy.scoped(studio.id):
        assert calendars.membership_for_token(token) is None
