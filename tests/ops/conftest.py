"""A studio with students, an ops user and the Stripe stand-in; helpers to make lessons the way the product does."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, time, timedelta
from types import SimpleNamespace

import pytest
import time_machine
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Payment, Role
from tests.conftest import csrf_token_from, stripe_env
from tests.factories import PASSWORD, make_studio, make_user

STUDIO = "/s/melody-and-meter"


@pytest.fixture
def app_env(stripe_standin):
    return {**stripe_env(stripe_standin), "JOB_RETRY_DELAYS": "0,0"}


@contextmanager
def within(app):
    with app.app_context(), tenancy.all_tenants():
        yield


@contextmanager
def later(minutes: float):
    """The clock moved on by `minutes` (and ticking), for everything in this process, the stand-in included."""
    with time_machine.travel(utcnow() + timedelta(minutes=minutes), tick=True):
        yield


@pytest.fixture
def studio(app):
    with app.app_context():
        studio = make_studio(buffer_minutes=0, booking_horizon_days=120)
        make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("violin",))
        make_user("student@example.com", roles=[(studio, Role.STUDENT)])
        make_user("rival@example.com", roles=[(studio, Role.STUDENT)])
        make_user("admin@example.com", roles=[(studio, Role.ADMIN)])
        make_user("ops@example.com", ops=True)
        return SimpleNamespace(id=studio.id, tz=studio.tz, slug=studio.slug)


def log_in(client, email: str) -> str:
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    assert client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token}).status_code == 303
    return csrf_token_from(client.get("/").get_data(as_text=True))


@pytest.fixture
def ops(app, studio):
    client = app.test_client()
    client.csrf = log_in(client, "ops@example.com")
    return client


def lesson_start(studio, days: int = 10, hh_mm: str = "10:00") -> datetime:
    day = utcnow().astimezone(studio.tz).date() + timedelta(days=days)
    return datetime.combine(day, time.fromisoformat(hh_mm), studio.tz)


def hold(app, studio, email: str = "student@example.com", start: datetime | None = None) -> tuple[int, int, str]:
    """A student holds a lesson through the booking form: (booking id, payment id, Checkout Session id)."""
    client = app.test_client()
    token = log_in(client, email)
    start = start or lesson_start(studio)
    response = client.post(f"{STUDIO}/bookings", data={"package": "lesson-60", "resource": "piano",
                                                       "start": start.isoformat(), "csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)
    with within(app):
        payment = db.session.scalar(select(Payment).where(Payment.checkout_url == response.headers["Location"]))
        return payment.booking_id, payment.id, payment.checkout_session_id
