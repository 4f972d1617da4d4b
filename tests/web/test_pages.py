"""The student pages and the JSON API over HTTP: what a person and a client see, including bad input."""
from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest

from portal import formatting, tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, Role
from tests.factories import PASSWORD, make_studio, make_user, next_weekday

STUDIO = "/s/melody-and-meter"


@pytest.fixture
def studio(app_ctx):
    studio = make_studio(buffer_minutes=0)
    make_user("student@example.com", roles=[(studio, Role.STUDENT)])
    make_user("rival@example.com", roles=[(studio, Role.STUDENT)])
    return studio


def _start(studio, day, hh_mm="10:00"):
    return datetime.combine(day, time.fromisoformat(hh_mm), studio.tz).isoformat()


def test_studio_home_lists_active_packages(client, studio):
    page = client.get(f"{STUDIO}/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Melody And Meter" in html
    assert "30-minute lesson" in html and "$35.00" in html and "$65.00" in html


def test_unknown_studio_and_package_are_friendly_404_pages(client, studio):
    for path in ("/s/nowhere/", f"{STUDIO}/packages/nope"):
        page = client.get(path)
        assert page.status_code == 404
        assert "<h1>Not found</h1>" in page.get_data(as_text=True)


def test_package_page_shows_free_slots_for_the_chosen_day(client, studio):
    day = next_weekday(1)
    page = client.get(f"{STUDIO}/packages/lesson-60?resource=drums&date={day.isoformat()}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert formatting.day(day, "en_US") in html
    assert 'value="drums" selected' in html
    assert ">9:00 AM</a>" in html and ">5:00 PM</a>" in html
    assert ">5:30 PM</a>" not in html  # would end after 18:00
    assert 'hx-get="/s/melody-and-meter/packages/lesson-60"' in html


def test_htmx_request_gets_only_the_slot_fragment(client, studio):
    day = next_weekday(1)
    response = client.get(f"{STUDIO}/packages/lesson-30?resource=piano&date={day.isoformat()}",
                          headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="slots"') and "<html" not in html
    assert "HX-Request" in response.headers.get("Vary", "")
    boosted = client.get(f"{STUDIO}/packages/lesson-30", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in boosted.get_data(as_text=True)


def test_day_without_opening_hours_says_so(client, app_ctx):
    make_studio(weekdays=range(5))  # closed at weekends
    saturday = next_weekday(5)
    html = client.get(f"{STUDIO}/packages/lesson-30?date={saturday.isoformat()}").get_data(as_text=True)
    assert "No free times on this day" in html


def test_bad_date_is_a_form_error_not_a_crash(client, studio):
    for bad in ("31-12-2026", "2020-01-01"):
        response = client.get(f"{STUDIO}/packages/lesson-30?date={bad}")
        assert response.status_code == 422
        assert 'role="alert"' in response.get_data(as_text=True)


def test_anonymous_visitor_is_asked_to_log_in_to_hold(client, studio):
    day = next_weekday(1)
    html = client.get(f"{STUDIO}/packages/lesson-30?date={day.isoformat()}").get_data(as_text=True)
    assert "Log in or sign up to hold a time" in html
    assert "/login?next=" in html


def test_hold_goes_to_checkout_and_the_booking_page_offers_payment(client, auth, studio, stripe_standin):
    auth.login("student@example.com", PASSWORD)
    day = next_weekday(2)
    token = auth.csrf(f"{STUDIO}/")
    response = client.post(f"{STUDIO}/bookings", data={"package": "lesson-60", "resource": "piano",
                                                       "start": _start(studio, day, "16:00"), "csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"].startswith(stripe_standin.base_url + "/c/pay/cs_")
    with tenancy.scoped(studio.id):
        booking = db.session.scalars(db.select(Booking)).one()
        assert booking.status == BookingStatus.HELD
        assert booking.payment.checkout_url == response.headers["Location"]
        booking_id = booking.id
    page = client.get(f"{STUDIO}/bookings/{booking_id}").get_data(as_text=True)
    assert "Held" in page and "held until" in page
    assert "4:00 PM" in page and "$65.00" in page
    assert f'href="{response.headers["Location"]}"' in page  # the student can resume payment


def test_taken_slot_answers_409_with_a_refreshed_picker(client, auth, studio):
    day = next_weekday(2)
    start = _start(studio, day, "11:00")
    auth.login("rival@example.com", PASSWORD)
    token = auth.csrf(f"{STUDIO}/")
    assert client.post(f"{STUDIO}/bookings", data={"package": "lesson-60", "resource": "piano", "start": start,
                                                   "csrf_token": token}).status_code == 303
    auth.logout()
    auth.login("student@example.com", PASSWORD)
    token = auth.csrf(f"{STUDIO}/")
    response = client.post(f"{STUDIO}/bookings", data={"package": "lesson-30", "resource": "piano",
                                                       "start": start, "csrf_token": token})
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "someone has just taken that time" in html
    assert f'value="{start}"' not in html  # the taken time is gone from the refreshed list
    assert f'value="{_start(studio, day, "12:00")}"' in html


@pytest.mark.parametrize("form,status", [
    ({"package": "lesson-60", "resource": "piano", "start": "tomorrow at ten"}, 422),
    ({"package": "lesson-60", "resource": "piano", "start": ""}, 422),
    ({"package": "lesson-60", "resource": "piano", "start": "2030-01-01T10:00:00"}, 422),
    ({"package": "lesson-60", "resource": "tuba", "start": "2030-01-01T10:00:00-05:00"}, 422),
    ({"package": "gold", "resource": "piano", "start": "2030-01-01T10:00:00-05:00"}, 422),
    ({"package": "lesson-60", "resource": "piano", "start": "9999-12-31T23:00:00-23:00"}, 422),
    ({"package": "lesson-60", "resource": "piano", "start": "0001-01-01T00:30:00+01:00"}, 422),
    ({"resource": "piano", "start": "2030-01-01T10:00:00-05:00"}, 422),
])
def test_bad_booking_input_gets_a_clear_error(client, auth, studio, form, status):
    auth.login("student@example.com", PASSWORD)
    response = client.post(f"{STUDIO}/bookings", data={**form, "csrf_token": auth.csrf(f"{STUDIO}/")})
    assert response.status_code == status
    assert 'role="alert"' in response.get_data(as_text=True) or "<h1>" in response.get_data(as_text=True)
    with tenancy.scoped(studio.id):
        assert db.session.scalars(db.select(Booking)).all() == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_absurd_booking_ids_are_404_not_500(client, auth, studio):
    auth.login("student@example.com", PASSWORD)
    for path in ("/bookings/99999999999", "/bookings/9223372036854775808", "/bookings/99999999999.ics",
                 "/bookings/99999999999/cancel", "/bookings/99999999999/reschedule"):
        assert client.get(f"{STUDIO}{path}").status_code == 404, path


def test_oversized_bodies_are_refused(client, studio):
    response = client.post("/webhooks/stripe", data=b"x" * (1024 * 1024 + 1),
                           headers={"Stripe-Signature": "t=1,v1=ab"})
    assert response.status_code == 413


def test_security_headers_on_every_response(client, studio):
    # the studio page twice: rendered, then served as kept
    for path in ("/", f"{STUDIO}/", f"{STUDIO}/", "/healthz", "/s/nowhere/"):
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert headers["X-Frame-Options"] == "DENY" and "camera=()" in headers["Permissions-Policy"]
        for name in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"):
            assert len(headers.getlist(name)) == 1, (path, name)
        assert "Strict-Transport-Security" not in headers  # plain HTTP here
    secure = client.get(f"{STUDIO}/", base_url="https://localhost").headers
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_pages_have_no_inline_scripts(client, studio):
    html = client.get(f"{STUDIO}/packages/lesson-30").get_data(as_text=True)
    assert "<script>" not in html and " on" + "click=" not in html
    assert '<script src="/static/vendor/htmx-2.0.8.min.js"' in html


def test_login_redirect_keeps_only_local_next(client, studio):
    from tests.conftest import csrf_token_from

    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    evil = client.post("/login", data={"email": "student@example.com", "password": PASSWORD, "csrf_token": token,
                                       "next": "https://evil.example/"})
    assert evil.headers["Location"] == f"{STUDIO}/"


@pytest.mark.parametrize("app_env", [{"TRUSTED_PROXIES": "1"}])
def test_behind_a_proxy_the_limit_counts_each_client(client, studio, app_env):
    from tests.conftest import csrf_token_from

    token = csrf_token_from(client.get("/login").get_data(as_text=True))

    def attempt(client_ip):
        return client.post("/login", headers={"X-Forwarded-For": client_ip},
                           data={"email": "student@example.com", "password": "wrong-wrong", "csrf_token": token})

    assert [attempt("203.0.113.7").status_code for _ in range(11)][-1] == 429
    assert attempt("198.51.100.9").status_code == 422  # another client behind the same proxy is not locked out


def test_login_is_rate_limited(client, studio):
    from tests.conftest import csrf_token_from

    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    statuses = [client.post("/login", data={"email": "student@example.com", "password": "wrong-wrong",
                                            "csrf_token": token}).status_code for _ in range(11)]
    assert statuses[:10] == [422] * 10
    assert statuses[10] == 429


# --- JSON API ---------------------------------------------------------------------------------------------

def test_api_packages(client, studio):
    body = client.get(f"{STUDIO}/api/packages").get_json()
    assert body["studio"]["timezone"] == "America/New_York"
    assert [(p["slug"], p["duration_minutes"], p["price_minor"]) for p in body["packages"]] == [
        ("lesson-30", 30, 3500), ("lesson-60", 60, 6500)]
    assert {r["slug"] for r in body["resources"]} == {"piano", "drums"}


def test_api_availability_lists_slots_with_the_studio_offset(client, studio):
    day = next_weekday(2)
    body = client.get(f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={day}").get_json()
    assert body["slots"][0] == _start(studio, day, "09:00")
    assert body["slots"][-1] == _start(studio, day, "17:00")
    offset = datetime.fromisoformat(body["slots"][0]).utcoffset()
    assert offset in (timedelta(hours=-5), timedelta(hours=-4))


def test_api_availability_hides_held_slots(client, auth, studio):
    day = next_weekday(2)
    auth.login("student@example.com", PASSWORD)
    client.post(f"{STUDIO}/bookings", data={"package": "lesson-60", "resource": "piano",
                                            "start": _start(studio, day, "12:00"),
                                            "csrf_token": auth.csrf(f"{STUDIO}/")})
    slots = client.get(f"{STUDIO}/api/availability?package=lesson-30&resource=piano&date={day}").get_json()["slots"]
    assert _start(studio, day, "11:30") in slots and _start(studio, day, "13:00") in slots
    assert _start(studio, day, "12:00") not in slots and _start(studio, day, "12:30") not in slots


@pytest.mark.parametrize("query,status,code", [
    ("package=lesson-60&resource=piano", 422, "parameter_missing"),
    ("package=lesson-60&resource=piano&date=soon", 422, "date_invalid"),
    ("package=lesson-60&resource=piano&date=1999-01-01", 422, "date_out_of_range"),
    ("package=nope&resource=piano&date=2030-01-01", 404, "package_not_found"),
])
def test_api_errors_are_json(client, studio, query, status, code):
    response = client.get(f"{STUDIO}/api/availability?{query}")
    assert response.status_code == status
    assert response.get_json()["error"] == code and response.get_json()["detail"]


def test_healthz_and_readyz(client, studio):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"]["database"]["ok"] is True
    assert "redis" not in ready.get_json()["checks"]


def test_metrics_exposes_http_histogram(client, studio):
    client.get(f"{STUDIO}/")
    text = client.get("/metrics").get_data(as_text=True)
    assert "http_request_duration_seconds_bucket" in text
