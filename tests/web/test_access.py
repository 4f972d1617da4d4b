"""Tenant isolation and role checks: every protected route, every kind of outsider, never the data."""
from __future__ import annotations

from datetime import datetime, time

import pytest

from portal import tenancy
from portal.clock import utcnow
from portal.models import Role
from portal.services import bookings
from tests.factories import PASSWORD, make_user, next_weekday


@pytest.fixture
def world(two_studios):
    """Two studios; student A holds a lesson in studio A, student B one in studio B."""
    a, b = two_studios["a"], two_studios["b"]
    now = utcnow()
    day = next_weekday(2)
    with tenancy.scoped(a.id):
        booking_a = bookings.hold_slot(
            studio=a, student=two_studios["student_a"], package_slug="lesson-60", resource_slug="piano",
            start_raw=datetime.combine(day, time(10), a.tz).isoformat(), now=now)
        booking_a_id = booking_a.id
    with tenancy.scoped(b.id):
        booking_b = bookings.hold_slot(
            studio=b, student=two_studios["student_b"], package_slug="lesson-60", resource_slug="violin",
            start_raw=datetime.combine(day, time(11), b.tz).isoformat(), now=now)
        booking_b_id = booking_b.id
    other_student_a = make_user("other-a@example.com", roles=[(a, Role.STUDENT)])
    return {**two_studios, "booking_a": booking_a_id, "booking_b": booking_b_id,
            "other_student_a": other_student_a, "day": day}


ROUTES = {
    "admin_dashboard": ("GET", "/s/melody-and-meter/admin/"),
    "ops_console": ("GET", "/ops/"),
    "booking_page": ("GET", "/s/melody-and-meter/bookings/{booking_a}"),
    "cross_tenant_booking": ("GET", "/s/melody-and-meter/bookings/{booking_b}"),
    "hold_slot": ("POST", "/s/melody-and-meter/bookings"),
}

# (route, who) -> expected: "login" (redirect to /login), or a status code
MATRIX = [
    ("admin_dashboard", None, "login"),
    ("admin_dashboard", "student_a", 403),
    ("admin_dashboard", "admin_b", 403),
    ("admin_dashboard", "student_b", 403),
    ("ops_console", None, "login"),
    ("ops_console", "student_a", 403),
    ("ops_console", "admin_a", 403),
    ("ops_console", "admin_b", 403),
    ("booking_page", None, "login"),
    ("booking_page", "other_student_a", 404),
    ("booking_page", "student_b", 404),
    ("booking_page", "admin_b", 404),
    ("cross_tenant_booking", "admin_a", 404),
    ("cross_tenant_booking", "student_a", 404),
    ("cross_tenant_booking", "student_b", 404),  # B's own booking, asked for through studio A's address
    ("hold_slot", None, "login"),
    ("hold_slot", "admin_b", 403),
    ("hold_slot", "student_b", 403),
]


def _email(world, who):
    return world[who].email


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("route,who,expected", MATRIX, ids=[f"{r}-{w or 'anonymous'}" for r, w, _ in MATRIX])
def test_outsiders_never_see_the_data(client, auth, world, route, who, expected):
    if who:
        assert auth.login(_email(world, who), PASSWORD).status_code == 303
    method, path = ROUTES[route]
    path = path.format(**world)
    if method == "POST":
        token = auth.csrf("/s/melody-and-meter/" if who else "/login")  # anonymous pages carry no token
        day = world["day"]
        response = client.post(path, data={"package": "lesson-30", "resource": "piano", "csrf_token": token,
                                           "start": datetime.combine(day, time(15), world["a"].tz).isoformat()})
    else:
        response = client.get(path)
    body = response.get_data(as_text=True)
    if expected == "login":
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")
    else:
        assert response.status_code == expected
    # Whatever the answer, it never carries another person's booking details.
    assert "student-a@example.com" not in body and "student-b@example.com" not in body
    assert "Reference" not in body


def test_owner_and_studio_admin_do_see_the_booking(client, auth, world):
    path = f"/s/melody-and-meter/bookings/{world['booking_a']}"
    auth.login("student-a@example.com", PASSWORD)
    assert client.get(path).status_code == 200
    auth.logout()
    auth.login("admin-a@example.com", PASSWORD)
    page = client.get(path)
    assert page.status_code == 200 and f"#{world['booking_a']}" in page.get_data(as_text=True)
    listing = client.get("/s/melody-and-meter/admin/bookings").get_data(as_text=True)
    assert "Student-A" in listing or "student-a" in listing.lower()
    assert "Student-B" not in listing  # studio B's booking is not in studio A's list


def test_ops_sees_every_studio(client, auth, world):
    auth.login("ops@example.com", PASSWORD)
    page = client.get("/ops/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "melody-and-meter" in html and "north-strings" in html


def test_api_does_not_reach_across_tenants(client, world):
    day = world["day"].isoformat()
    own = client.get(f"/s/north-strings/api/availability?package=lesson-60&resource=violin&date={day}")
    assert own.status_code == 200
    foreign = client.get(f"/s/north-strings/api/availability?package=lesson-60&resource=piano&date={day}")
    assert foreign.status_code == 404
    assert foreign.get_json()["error"] == "resource_not_found"


def test_queries_outside_a_studio_scope_fail_loudly(app_ctx, world):
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Booking

    with pytest.raises(tenancy.TenantScopeError):
        db.session.scalars(select(Booking)).all()
    with tenancy.scoped(world["a"].id):
        ids = set(db.session.scalars(select(Booking.id)))
    assert ids == {world["booking_a"]}
    with tenancy.all_tenants():
        assert set(db.session.scalars(select(Booking.id))) == {world["booking_a"], world["booking_b"]}


def test_state_changing_posts_need_the_csrf_token(client, auth, world):
    auth.login("student-a@example.com", PASSWORD)
    start = datetime.combine(world["day"], time(15), world["a"].tz).isoformat()
    form = {"package": "lesson-30", "resource": "piano", "start": start}
    refused = client.post("/s/melody-and-meter/bookings", data=form)
    assert refused.status_code == 400
    assert "form expired" in refused.get_data(as_text=True)
    assert client.post("/logout").status_code == 400
    assert client.get(f"/s/melody-and-meter/bookings/{world['booking_a']}").status_code == 200  # still logged in
    # htmx sends the token in a header instead of the form
    token = auth.csrf("/s/melody-and-meter/")
    accepted = client.post("/s/melody-and-meter/bookings", data=form, headers={"X-CSRFToken": token})
    assert accepted.status_code == 303


def test_login_without_csrf_token_is_refused(client):
    response = client.post("/login", data={"email": "student-a@example.com", "password": PASSWORD})
    assert response.status_code == 400
