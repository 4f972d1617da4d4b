"""Confirmed, paid lessons to move and cancel, made the way the product makes them: through Checkout."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, time, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, Payment, Role
from portal.payments import get_provider
from portal.services import bookings, checkout
from tests.factories import make_studio, make_user
from tests.payments.helpers import deliver, pay


@contextmanager
def within(app):
    with app.app_context(), tenancy.all_tenants():
        yield


@pytest.fixture
def app_env(stripe_standin):
    from tests.conftest import stripe_env

    return {**stripe_env(stripe_standin), "JOB_RETRY_DELAYS": "0,0"}


@pytest.fixture
def studio(app):
    with app.app_context():
        # Open around the clock, so "a lesson a few hours from now" exists whenever the tests run.
        studio = make_studio(buffer_minutes=0, reschedule_lead_hours=24, max_reschedules=2, cancel_window_hours=24,
                             late_cancel_fee_percent=50, booking_horizon_days=120, hours=("00:00", "23:30"))
        make_user("student@example.com", roles=[(studio, Role.STUDENT)])
        make_user("rival@example.com", roles=[(studio, Role.STUDENT)])
        return SimpleNamespace(id=studio.id, tz=studio.tz, slug=studio.slug)


def local(studio, day, hh_mm):
    return datetime.combine(day, time.fromisoformat(hh_mm), studio.tz)


@pytest.fixture
def paid_lesson(app, client, studio, stripe_standin):
    """Returns a function: (email, local start) -> booking id of a confirmed, paid lesson."""

    def make(start: datetime, email: str = "student@example.com", resource: str = "piano",
             package: str = "lesson-60") -> int:
        with app.app_context(), tenancy.scoped(studio.id):
            from portal.models import Studio, User

            studio_row = db.session.get(Studio, studio.id)
            student = db.session.scalar(select(User).where(User.email == email))
            now = utcnow()
            hold = bookings.hold_slot(studio=studio_row, student=student, package_slug=package,
                                      resource_slug=resource, start_raw=start.isoformat(), now=now)
            payment = checkout.start_checkout(booking=hold, student=student, provider=get_provider(), now=now,
                                              success_url="http://portal.test/ok", cancel_url="http://portal.test/x")
            booking_id, session_id = hold.id, payment.checkout_session_id
        pay(stripe_standin, session_id)
        deliver(app, client, stripe_standin, types=("checkout.session.completed",))
        with within(app):
            assert db.session.get(Booking, booking_id).status.value == "confirmed"
        return booking_id

    return make


def booking_row(app, booking_id):
    with within(app):
        booking = db.session.get(Booking, booking_id)
        payment = db.session.scalar(select(Payment).where(Payment.booking_id == booking_id))
        return SimpleNamespace(status=booking.status, start_at=booking.start_at, resource_id=booking.resource_id,
                               reschedule_count=booking.reschedule_count, penalty=booking.penalty_reason,
                               sequence=booking.ical_sequence,
                               payment_status=payment.status if payment else None,
                               refunded=payment.amount_refunded_minor if payment else 0,
                               refunds=[(r.amount_minor, r.status.value, r.attempts) for r in payment.refunds]
                               if payment else [])


def days_ahead(studio, days: int, weekday: int | None = None):
    day = utcnow().astimezone(studio.tz).date() + timedelta(days=days)
    if weekday is not None:
        day += timedelta(days=(weekday - day.weekday()) % 7)
    return day
