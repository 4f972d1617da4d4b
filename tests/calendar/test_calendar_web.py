"""Calendar export over HTTP: the .ics download, the token feed, and replacing the feed address."""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import g, render_template
from icalendar import Calendar

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import BookingStatus, Membership, Role
from portal.services import calendars
from tests.calendar.conftest import make_booking, student_membership
from tests.factories import PASSWORD, make_studio, make_user

STUDIO = "/s/melody-and-meter"
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def world(app_ctx):
    studio = make_studio()
    other_studio = make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("violin",))
    people = {
        "student": make_user("student@example.com", roles=[(studio, Role.STUDENT)]),
        "rival": make_user("rival@example.com", roles=[(studio, Role.STUDENT)]),
        "admin": make_user("admin@example.com", roles=[(studio, Role.ADMIN)]),
        "admin_b": make_user("admin-b@example.com", roles=[(other_studio, Role.ADMIN)]),
    }
    start = (utcnow().astimezone(NEW_YORK) + timedelta(days=10)).replace(hour=10, minute=0, second=0, microsecond=0)
    booking = make_booking(studio, people["student"], start)
    return {"studio": studio, "other_studio": other_studio, "booking": booking, **people}


def feed_events(response) -> dict:
    return {str(e["uid"]): e for e in Calendar.from_ical(response.data).walk("VEVENT")}


def fresh_token(membership: Membership) -> str:
    db.session.refresh(membership)
    return membership.calendar_token


def test_owner_downloads_the_lesson_as_ics(client, auth, world):
    booking = world["booking"]
    auth.login("student@example.com", PASSWORD)
    response = client.get(f"{STUDIO}/bookings/{booking.id}.ics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert response.headers["Content-Disposition"] == f"attachment; filename=lesson-{booking.id}.ics"
    (event,) = Calendar.from_ical(response.data).walk("VEVENT")
    assert str(event["uid"]) == f"booking-{booking.id}@melody-and-meter.studio-portal"
    assert event.decoded("dtstart") == booking.start_at and str(event["status"]) == "CONFIRMED"


def test_studio_admin_may_download_any_lesson_of_the_studio(client, auth, world):
    auth.login("admin@example.com", PASSWORD)
    assert client.get(f"{STUDIO}/bookings/{world['booking'].id}.ics").status_code == 200


@pytest.mark.parametrize("email", ["rival@example.com", "admin-b@example.com"])
def test_other_people_get_404_for_the_download(client, auth, world, email):
    auth.login(email, PASSWORD)
    response = client.get(f"{STUDIO}/bookings/{world['booking'].id}.ics")
    assert response.status_code == 404
    assert b"BEGIN:VCALENDAR" not in response.data


def test_download_under_another_studio_is_404(client, auth, world):
    auth.login("student@example.com", PASSWORD)
    assert client.get(f"/s/north-strings/bookings/{world['booking'].id}.ics").status_code == 404


def test_anonymous_download_redirects_to_login(client, world):
    path = f"{STUDIO}/bookings/{world['booking'].id}.ics"
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    assert "lesson" not in response.headers.get("Content-Disposition", "")


def test_feed_by_token_needs_no_login_and_shows_the_students_lessons(client, world):
    token = calendars.ensure_token(student_membership(world["student"], world["studio"]))
    make_booking(world["studio"], world["rival"], world["booking"].start_at + timedelta(days=1))
    response = client.get(f"{STUDIO}/calendar/{token}.ics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert response.headers["Cache-Control"] == "private, max-age=300"
    assert list(feed_events(response)) == [calendars.event_uid(world["booking"])]


def test_feed_follows_cancellation_and_moves(client, world):
    booking = world["booking"]
    token = calendars.ensure_token(student_membership(world["student"], world["studio"]))
    path = f"{STUDIO}/calendar/{token}.ics"
    uid = calendars.event_uid(booking)
    assert int(feed_events(client.get(path))[uid]["sequence"]) == 0

    moved_to = booking.start_at + timedelta(days=2, hours=3)
    with tenancy.scoped(world["studio"].id):
        booking.start_at, booking.end_at = moved_to, moved_to + timedelta(hours=1)
        booking.occupied_until = booking.end_at
        booking.ical_sequence += 1
        db.session.commit()
    moved = feed_events(client.get(path))[uid]
    assert moved.decoded("dtstart") == moved_to and moved.decoded("dtend") == moved_to + timedelta(hours=1)
    assert int(moved["sequence"]) == 1 and str(moved["status"]) == "CONFIRMED"

    with tenancy.scoped(world["studio"].id):
        booking.status = BookingStatus.CANCELLED
        booking.ical_sequence += 1
        db.session.commit()
    listed = feed_events(client.get(path))
    assert list(listed) == [uid]
    assert str(listed[uid]["status"]) == "CANCELLED" and int(listed[uid]["sequence"]) == 2


@pytest.mark.parametrize("token", ["wrong", "x" * 43])
def test_wrong_token_is_404(client, world, token):
    calendars.ensure_token(student_membership(world["student"], world["studio"]))
    response = client.get(f"{STUDIO}/calendar/{token}.ics")
    assert response.status_code == 404 and b"BEGIN:VCALENDAR" not in response.data


def test_token_works_only_under_its_own_studio(client, world):
    token = calendars.ensure_token(student_membership(world["student"], world["studio"]))
    assert client.get(f"/s/north-strings/calendar/{token}.ics").status_code == 404


def test_regenerating_revokes_the_old_address(client, auth, world):
    membership = student_membership(world["student"], world["studio"])
    old = calendars.ensure_token(membership)
    auth.login("student@example.com", PASSWORD)
    response = client.post(f"{STUDIO}/calendar/token",
                           data={"csrf_token": auth.csrf(f"{STUDIO}/"), "next": f"{STUDIO}/my-lessons?tab=1"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"{STUDIO}/my-lessons?tab=1"
    new = fresh_token(membership)
    assert new and new != old
    assert client.get(f"{STUDIO}/calendar/{old}.ics").status_code == 404
    assert client.get(f"{STUDIO}/calendar/{new}.ics").status_code == 200


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/x", "", None])
def test_regenerate_redirects_only_to_local_paths(client, auth, world, next_url):
    auth.login("student@example.com", PASSWORD)
    data = {"csrf_token": auth.csrf(f"{STUDIO}/")}
    if next_url is not None:
        data["next"] = next_url
    response = client.post(f"{STUDIO}/calendar/token", data=data)
    assert response.status_code == 303 and response.headers["Location"] == f"{STUDIO}/"


def test_regenerate_without_csrf_is_refused(client, auth, world):
    membership = student_membership(world["student"], world["studio"])
    token = calendars.ensure_token(membership)
    auth.login("student@example.com", PASSWORD)
    response = client.post(f"{STUDIO}/calendar/token", data={"next": f"{STUDIO}/"})
    assert response.status_code == 400
    assert fresh_token(membership) == token


def test_regenerate_needs_a_student_of_this_studio(client, auth, world):
    assert client.post(f"{STUDIO}/calendar/token",
                       data={"csrf_token": auth.csrf("/login")}).status_code == 302  # anonymous → login
    auth.login("admin-b@example.com", PASSWORD)
    assert client.post(f"{STUDIO}/calendar/token", data={"csrf_token": auth.csrf(f"{STUDIO}/")}).status_code == 403


def test_calendar_links_fragment(app, world):
    token = calendars.ensure_token(student_membership(world["student"], world["studio"]))
    with app.test_request_context(f"{STUDIO}/my-lessons"):
        g.studio = world["studio"]
        html = render_template("studio/_calendar_links.html", calendar_token=token)
    assert f'value="http://localhost{STUDIO}/calendar/{token}.ics" readonly' in html
    assert "anyone with this address can see your lesson times" in html.lower()
    assert f'action="{STUDIO}/calendar/token"' in html and 'method="post"' in html
    assert 'name="csrf_token"' in html and f'name="next" value="{STUDIO}/my-lessons"' in html
    assert "stops working" in html and "Get a new address" in html
    assert "<script" not in html and " on" + "click=" not in html
