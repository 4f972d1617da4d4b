"""What a new (or hostile) visitor runs into: times outside the calendar, private pages in caches, releasing what is
not a hold, asking twice for one's own time, oversized and too frequent requests, the first free day, one date
format, and pages that answer htmx with fragments."""
from __future__ import annotations

import ast
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from portal import formatting
from portal.clock import utcnow
from portal.config import PROJECT_ROOT
from portal.extensions import db
from portal.models import AvailabilityRule, Booking, Role, Studio
from tests.conftest import csrf_token_from
from tests.factories import PASSWORD, make_user
from tests.lessons.conftest import days_ahead, local, within

STUDIO = "/s/melody-and-meter"
OUT_OF_RANGE = ["0001-01-01T00:00:00+00:00", "0001-01-01T04:55:00+00:00", "0001-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59-14:00", "9999-12-31T18:00:00-05:00",
                "1969-12-31T23:59:59+00:00", "2999-01-01T10:00:00-05:00"]
OUT_OF_RANGE_DATES = ["0001-01-01", "9999-12-31", "1900-02-28"]


def _form(client, path):
    return csrf_token_from(client.get(path).get_data(as_text=True))


@pytest.mark.parametrize("start", OUT_OF_RANGE)
def test_a_time_outside_the_calendar_is_refused_on_every_route_that_takes_one(app, client, auth, studio,
                                                                            paid_lesson, start):
    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))
    auth.login("student@example.com", PASSWORD)
    token = _form(client, f"{STUDIO}/lessons")
    held = client.post(f"{STUDIO}/bookings", data={"package": "lesson-60", "resource": "piano", "start": start,
                                                   "csrf_token": token})
    assert held.status_code == 422 and "out of range" in held.get_data(as_text=True)
    moved = client.post(f"{STUDIO}/bookings/{booking_id}/reschedule",
                        data={"resource": "piano", "start": start, "csrf_token": token})
    assert moved.status_code == 422 and "out of range" in moved.get_data(as_text=True)
    picker = client.get(f"{STUDIO}/bookings/{booking_id}/reschedule?resource=piano&date={start}")
    assert picker.status_code == 422


@pytest.mark.parametrize("day", OUT_OF_RANGE_DATES)
def test_a_date_outside_the_calendar_is_refused_on_every_route_that_takes_one(app, client, auth, studio,
                                                                            paid_lesson, day):
    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))
    api = client.get(f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={day}")
    assert api.status_code == 422 and api.get_json()["error"] in ("date_out_of_range",)
    assert client.get(f"{STUDIO}/packages/lesson-60?resource=piano&date={day}").status_code == 422
    assert client.get(f"{STUDIO}/packages/lesson-60?resource=piano&date={day}",
                      headers={"HX-Request": "true"}).status_code == 422
    auth.login("student@example.com", PASSWORD)
    assert client.get(f"{STUDIO}/bookings/{booking_id}/reschedule?resource=piano&date={day}").status_code == 422


def test_dates_read_the_studios_way_in_pages_and_error_messages(app, client, studio):
    first = utcnow().astimezone(studio.tz).date()
    too_far = first + timedelta(days=400)
    page = client.get(f"{STUDIO}/packages/lesson-60?resource=piano&date={too_far.isoformat()}")
    html = page.get_data(as_text=True)
    assert page.status_code == 422
    assert f"Pick a date between {formatting.day(first, 'en_US')} and" in html
    shown = re.sub(r"<[^>]+>", " ", html.split("<main", 1)[1].split("</main>")[0])  # text only, no attributes
    assert not re.search(r"\d{4}-\d\d-\d\d", shown), shown
    with within(app):
        db.session.execute(update(Studio).values(locale="en_GB"))
        db.session.commit()
    uk = client.get(f"{STUDIO}/packages/lesson-60?resource=piano&date={too_far.isoformat()}").get_data(as_text=True)
    assert f"Pick a date between {formatting.day(first, 'en_GB')} and" in uk
    assert formatting.day(first, "en_GB") != formatting.day(first, "en_US")


def test_private_pages_are_never_stored_by_a_cache(app, client, auth, studio, paid_lesson):
    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))
    anonymous = client.get(f"{STUDIO}/")
    assert "no-store" not in anonymous.headers.get("Cache-Control", "")
    auth.login("student@example.com", PASSWORD)
    pages = [f"{STUDIO}/", f"{STUDIO}/lessons", f"{STUDIO}/bookings/{booking_id}",
             f"{STUDIO}/bookings/{booking_id}/reschedule", f"{STUDIO}/bookings/{booking_id}/cancel", "/account",
             f"{STUDIO}/packages/lesson-60"]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "private, no-store", path
        assert "Cookie" in response.headers["Vary"], path
    auth.logout()
    with within(app):
        make_user("admin@example.com", roles=[(db.session.get(Studio, studio.id), Role.ADMIN)])
        make_user("ops@example.com", ops=True)
    for email, path in (("admin@example.com", f"{STUDIO}/admin/"), ("ops@example.com", "/ops/")):
        auth.login(email, PASSWORD)
        response = client.get(path)
        assert response.status_code == 200 and response.headers["Cache-Control"] == "private, no-store", path
        auth.logout()


def test_releasing_a_paid_lesson_is_refused_with_a_reason(app, client, auth, studio, paid_lesson):
    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))
    auth.login("student@example.com", PASSWORD)
    refused = client.post(f"{STUDIO}/bookings/{booking_id}/release", data={"csrf_token": auth.csrf(f"{STUDIO}/")})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 409
    assert "paid and confirmed" in html and "Payment cancelled" not in html
    assert "Confirmed" in client.get(f"{STUDIO}/bookings/{booking_id}").get_data(as_text=True)


def test_asking_again_for_a_time_you_hold_says_it_is_yours(app, client, auth, studio, stripe_standin):
    start = local(studio, days_ahead(studio, 10), "10:00").isoformat()
    auth.login("student@example.com", PASSWORD)
    token = auth.csrf(f"{STUDIO}/")
    form = {"package": "lesson-60", "resource": "piano", "start": start, "csrf_token": token}
    first = client.post(f"{STUDIO}/bookings", data=form)
    assert first.status_code == 303
    again = client.post(f"{STUDIO}/bookings", data=form)
    html = again.get_data(as_text=True)
    assert again.status_code == 409
    assert "You are already holding this time" in html and "someone has just taken" not in html
    assert "Go to your booking to pay" in html and f"{STUDIO}/bookings/" in html
    auth.logout()
    auth.login("rival@example.com", PASSWORD)
    rival = client.post(f"{STUDIO}/bookings", data={**form, "csrf_token": auth.csrf(f"{STUDIO}/")})
    assert rival.status_code == 409 and "someone has just taken that time" in rival.get_data(as_text=True)


def test_a_student_gives_up_a_hold_from_the_booking_page(app, client, auth, studio, stripe_standin):
    auth.login("student@example.com", PASSWORD)
    held = client.post(f"{STUDIO}/bookings", data={
        "package": "lesson-60", "resource": "piano", "csrf_token": auth.csrf(f"{STUDIO}/"),
        "start": local(studio, days_ahead(studio, 10), "10:00").isoformat()})
    assert held.status_code == 303
    with within(app):
        booking_id = db.session.scalar(select(Booking.id))
    page = client.get(f"{STUDIO}/bookings/{booking_id}").get_data(as_text=True)
    assert "Give up this time" in page and f"/bookings/{booking_id}/release" in page
    released = client.post(f"{STUDIO}/bookings/{booking_id}/release", data={"csrf_token": csrf_token_from(page)},
                           follow_redirects=True)
    assert "Released" in released.get_data(as_text=True) and "Nothing was charged" in released.get_data(as_text=True)


def test_too_large_and_too_many_get_the_portals_own_page(app, client, studio):
    big = client.post("/login", data={"email": "x" * (2 * 1024 * 1024)})
    assert big.status_code == 413
    html = big.get_data(as_text=True)
    assert "more than we accept in one go" in html and 'class="site-header"' in html
    token = _form(client, "/login")
    statuses = [client.post("/login", data={"email": "student@example.com", "password": "wrong-wrong",
                                             "csrf_token": token}) for _ in range(11)]
    limited = statuses[-1]
    assert limited.status_code == 429
    text = limited.get_data(as_text=True)
    assert "Too many attempts. Please try again in" in text and "seconds" in text
    assert 'class="site-header"' in text and "per 1 minute" not in text
    assert 0 < int(limited.headers["Retry-After"]) <= 60


def test_the_package_page_opens_on_the_first_day_with_a_free_time(app, client, studio):
    today = utcnow().astimezone(studio.tz).date()
    open_day = today + timedelta(days=3)
    with within(app):  # every room opens on one weekday only: three days from now
        db.session.execute(delete(AvailabilityRule).where(AvailabilityRule.weekday != open_day.weekday()))
        db.session.commit()
    html = client.get(f"{STUDIO}/packages/lesson-60?resource=piano").get_data(as_text=True)
    assert f"Showing {formatting.day(open_day, 'en_US')}, the first day with a free time." in html
    assert f"Free times on {formatting.day(open_day, 'en_US')}" in html
    asked = client.get(f"{STUDIO}/packages/lesson-60?resource=piano&date={today.isoformat()}").get_data(as_text=True)
    assert "No free times on this day" in asked and "the first day with a free time" not in asked


# --- one page, two answers ------------------------------------------------------------------------------------

def test_every_page_that_also_answers_htmx_says_it_varies(app, client, auth, studio, paid_lesson):
    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))
    auth.login("student@example.com", PASSWORD)
    day = days_ahead(studio, 11).isoformat()
    for path in (f"{STUDIO}/packages/lesson-60?resource=piano&date={day}", f"{STUDIO}/bookings/{booking_id}",
                 f"{STUDIO}/bookings/{booking_id}/reschedule?resource=piano&date={day}"):
        page = client.get(path)
        fragment = client.get(path, headers={"HX-Request": "true"})
        assert "HX-Request" in page.headers["Vary"] and "HX-Request" in fragment.headers["Vary"], path
        assert "<html" in page.get_data(as_text=True) and "<html" not in fragment.get_data(as_text=True), path


def test_no_route_picks_a_fragment_by_itself():
    """Pages choose page-or-fragment only through `portal.http.render`, which sets `Vary` itself."""
    offenders = []
    for path in sorted((PROJECT_ROOT / "portal" / "blueprints").glob("*.py")):
        tree = ast.parse(Path(path).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "is_htmx":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
