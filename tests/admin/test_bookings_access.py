"""Who may use the admin home, the bookings pages and actions, the team pages and the bookings API: the studio's
admins; platform ops may look at every page but change nothing; everyone else is turned away."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.clock import utcnow
from portal.extensions import db
from portal.models import AccountToken, AuditEntry, TokenPurpose, User
from tests.admin.bookings_support import add_booking, row
from tests.admin.conftest import STUDIO, bearer, log_in

PAGES = ["/admin/", "/admin/bookings", "/admin/bookings.csv", "/admin/bookings/{booking}",
         "/admin/bookings/{booking}/move", "/admin/team"]
ACTIONS = ["/admin/bookings/{booking}/cancel", "/admin/bookings/{booking}/refund",
           "/admin/bookings/{booking}/move", "/admin/bookings/{booking}/no-show", "/admin/team/invitations",
           "/admin/team/invitations/{invitation}/revoke", "/admin/team/admins/{admin}/remove"]
PEOPLE = [None, "student@example.com", "north-admin@example.com", "north-student@example.com", "ops@example.com",
          "admin@example.com"]


@pytest.fixture
def ids(app, world):
    booking = add_booking(app, world, utcnow() + timedelta(days=3))
    with app.app_context():
        second = db.session.scalar(select(User).where(User.email == "second-admin@example.com"))
        token = AccountToken(user_id=second.id, studio_id=world.a.id, purpose=TokenPurpose.INVITE,
                             expires_at=utcnow() + timedelta(hours=72))
        db.session.add(token)
        db.session.commit()
        return {"booking": booking, "invitation": token.id, "admin": second.id}


def _client(app, who):
    client = app.test_client()
    client.csrf = log_in(client, who) if who else None
    return client


@pytest.mark.parametrize("who", PEOPLE)
def test_pages(app, world, ids, who):
    client = _client(app, who)
    for path in PAGES:
        response = client.get(STUDIO + path.format(**ids))
        if who is None:
            assert response.status_code == 302 and "/login" in response.headers["Location"], path
        elif who in ("ops@example.com", "admin@example.com"):
            assert response.status_code == 200, path
            assert response.headers["Cache-Control"] == "private, no-store", path
        else:
            assert response.status_code == 403, (path, who)


@pytest.mark.parametrize("who", PEOPLE[:-1])
def test_actions_are_for_the_studios_admins_only(app, world, ids, who):
    client = _client(app, who)
    for path in ACTIONS:
        response = client.post(STUDIO + path.format(**ids),
                               data={"csrf_token": client.csrf or "", "note": "x", "email": "x@example.com",
                                     "amount": "1.00", "request_key": "abcdefgh12"})
        if who is None:
            assert response.status_code in (302, 400), path  # the login page (or the CSRF refusal first)
        else:
            assert response.status_code == 403, (path, who)
    assert row(app, ids["booking"])["status"] == "confirmed"
    with app.app_context():
        assert db.session.scalar(select(AuditEntry.id)) is None  # nothing at all was changed


def test_anonymous_actions_with_a_token_go_to_the_login(app, world, ids):
    client = app.test_client()
    from tests.conftest import csrf_token_from

    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    for path in ACTIONS:
        response = client.post(STUDIO + path.format(**ids), data={"csrf_token": token, "note": "x"})
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_ops_sees_the_pages_read_only(app, world, ids):
    client = _client(app, "ops@example.com")
    for path in [p for p in PAGES if not p.endswith(".csv")]:
        html = client.get(STUDIO + path.format(**ids)).get_data(as_text=True)
        assert "nothing can be changed here" in html, path
    booking = client.get(f"{STUDIO}/admin/bookings/{ids['booking']}").get_data(as_text=True)
    assert 'id="cancel-form"' not in booking and "Actions" not in booking
    team = client.get(f"{STUDIO}/admin/team").get_data(as_text=True)
    assert 'id="invite-form"' not in team and "Revoke" not in team
    move = client.get(f"{STUDIO}/admin/bookings/{ids['booking']}/move").get_data(as_text=True)
    assert 'form="move-form"' not in move


def test_another_studios_booking_is_not_found_for_this_studios_admin(app, world):
    theirs = add_booking(app, world, utcnow() + timedelta(days=3), email="north-student@example.com",
                         resource="violin", studio="b")
    client = _client(app, "admin@example.com")
    assert client.get(f"{STUDIO}/admin/bookings/{theirs}").status_code == 404
    assert client.get(f"{STUDIO}/admin/bookings/{theirs}/move").status_code == 404
    assert client.get(f"/s/north-strings/admin/bookings/{theirs}").status_code == 403


API = "/s/melody-and-meter/api/admin/bookings"


def test_the_bookings_api(app, world, make_api_key):
    anonymous = app.test_client().get(API)
    assert anonymous.status_code == 401 and anonymous.get_json()["error"] == "unauthenticated"
    for who in ("student@example.com", "north-admin@example.com", "ops@example.com"):
        assert _client(app, who).get(API).status_code == 403, who
    assert _client(app, "admin@example.com").get(API).status_code == 200
    client = app.test_client()
    other = client.get(API, headers=bearer(make_api_key(["bookings:read"], studio="b")))
    assert other.status_code == 403
    unscoped = client.get(API, headers=bearer(make_api_key(["config:read"])))
    assert unscoped.status_code == 403 and unscoped.get_json()["error"] == "scope_missing"
    assert client.get(API, headers=bearer("sp_nothing_real")).status_code == 401
    ok = client.get(API, headers=bearer(make_api_key(["bookings:read"])))
    assert ok.status_code == 200 and ok.get_json()["bookings"] == []
