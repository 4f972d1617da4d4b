"""Two studios with their people, logged-in clients by role, and API keys: what every admin test starts from.

No app context stays pushed in the test thread (requests would share its session, and on SQLite its open
transaction would hold the write lock while jobs wait); fixtures return plain values.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Role, Studio
from portal.services import api_keys
from portal.services.audit import SYSTEM
from tests.conftest import csrf_token_from, stripe_env
from tests.factories import PASSWORD, make_studio, make_user

STUDIO = "/s/melody-and-meter"
OTHER = "/s/north-strings"


@pytest.fixture
def app_env(stripe_standin):
    return {**stripe_env(stripe_standin), "JOB_RETRY_DELAYS": "0,0"}


@pytest.fixture
def world(app):
    """Studio A (melody-and-meter, New York: piano and drums open 09:00-18:00 every day, 30- and 60-minute lessons)
    and studio B (north-strings, London), each with an admin and a student, plus a platform ops user."""
    with app.app_context(), tenancy.all_tenants():
        a = make_studio(buffer_minutes=0, booking_horizon_days=120)
        b = make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("violin",))
        make_user("admin@example.com", roles=[(a, Role.ADMIN)])
        make_user("second-admin@example.com", roles=[(a, Role.ADMIN)])
        make_user("student@example.com", roles=[(a, Role.STUDENT)])
        make_user("rival@example.com", roles=[(a, Role.STUDENT)])
        make_user("north-admin@example.com", roles=[(b, Role.ADMIN)])
        make_user("north-student@example.com", roles=[(b, Role.STUDENT)])
        make_user("ops@example.com", ops=True)
        return SimpleNamespace(a=SimpleNamespace(id=a.id, slug=a.slug, tz=a.tz),
                               b=SimpleNamespace(id=b.id, slug=b.slug, tz=b.tz))


def log_in(client, email: str) -> str:
    """Log `client` in as `email` (password of the factories); returns a CSRF token for its forms."""
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)
    return csrf_token_from(client.get(f"{STUDIO}/").get_data(as_text=True))


@pytest.fixture
def admin(app, world):
    """A client logged in as studio A's admin, with `.csrf` for forms and the X-CSRFToken header."""
    client = app.test_client()
    client.csrf = log_in(client, "admin@example.com")
    return client


@pytest.fixture
def make_api_key(app, world):
    """Returns a function: (scopes, studio="a") -> bearer token of a new key of that studio."""

    def make(scopes, studio: str = "a", name: str = "test key") -> str:
        with app.app_context(), tenancy.all_tenants():
            row = db.session.get(Studio, getattr(world, studio).id)
            with tenancy.scoped(row.id):
                _key, token = api_keys.create(row, name=name, scopes=list(scopes), actor=SYSTEM, now=utcnow())
        return token

    return make


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
