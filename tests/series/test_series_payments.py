"""A weekly series paid in one Checkout through the Stripe stand-in: every week confirms; cancelling the rest
refunds exactly the weeks not yet taken, each under its own policy."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, Payment, PaymentStatus, Refund, Role, Studio, User
from portal.payments import get_provider
from portal.services import lesson_changes, series
from portal.services.errors import Conflict
from tests.credits.conftest import soon_start
from tests.factories import make_studio, make_user
from tests.payments.helpers import deliver, drain, pay

NY = ZoneInfo("America/New_York")


@pytest.fixture
def app_env(stripe_standin):
    from tests.conftest import stripe_env

    return {**stripe_env(stripe_standin), "JOB_RETRY_DELAYS": "0,0"}


@pytest.fixture
def studio(app):
    with app.app_context():
        studio = make_studio(buffer_minutes=0, hours=("00:00", "23:30"), cancel_window_hours=24,
                             late_cancel_fee_percent=50)
        make_user("student@example.com", roles=[(studio, Role.STUDENT)])
        return SimpleNamespace(id=studio.id)


def _paid_series(app, client, standin, studio, first, weeks=4):
    with app.app_context(), tenancy.scoped(studio.id):
        row = db.session.get(Studio, studio.id)
        student = db.session.scalar(select(User).where(User.email == "student@example.com"))
        held = series.hold(studio=row, student=student, package_slug="lesson-60", resource_slug="piano",
                           start_raw=first.isoformat(), weeks_raw=str(weeks), chosen_raw=None, now=utcnow())
        payment = series.start_checkout(series=held, student=student, provider=get_provider(), now=utcnow(),
                                        success_url="http://portal.test/ok", cancel_url="http://portal.test/no")
        series_id, session_id, amount = held.id, payment.checkout_session_id, payment.amount_minor
    assert amount == 6500 * weeks
    pay(standin, session_id)
    deliver(app, client, standin, types=("checkout.session.completed",))
    return series_id, session_id


def test_a_series_paid_in_one_checkout_confirms_every_week(app, client, studio, stripe_standin):
    first = datetime.combine((utcnow() + timedelta(days=3)).astimezone(NY).date(), time(16), NY)
    series_id, session_id = _paid_series(app, client, stripe_standin, studio, first, weeks=4)
    with app.app_context(), tenancy.scoped(studio.id):
        weeks = series.weeks_of(series_id)
        assert [b.status for b in weeks] == [BookingStatus.CONFIRMED] * 4
        assert all(b.policy and b.policy["cancel_window_hours"] == 24 for b in weeks)
        payment = db.session.scalar(select(Payment).where(Payment.series_id == series_id))
        assert payment.status == PaymentStatus.PAID and payment.paid_minor == 4 * 6500
        line = get_provider().retrieve_checkout_session(session_id)
        assert line.amount_total == 4 * 6500
    from portal.services import reconciliation

    with app.app_context(), tenancy.all_tenants():  # every week counts as paid for the ops invariant
        assert reconciliation.items("confirmed_without_payment", utcnow()) == []


def test_cancelling_one_week_refunds_that_week_and_the_rest_refunds_exactly_the_unused_weeks(
        app, client, studio, stripe_standin):
    # Week 1 starts within the cancel window (late: half refunded); weeks 2-4 are far enough ahead (full refund).
    soon = soon_start(NY, after_hours=6)
    series_id, _ = _paid_series(app, client, stripe_standin, studio, soon, weeks=4)
    with app.app_context(), tenancy.scoped(studio.id):
        weeks = series.weeks_of(series_id)
        student = db.session.get(User, weeks[0].student_id)
        lesson_changes.cancel(booking=weeks[2], actor=student, now=utcnow())  # one week alone, in time
        refunds = db.session.scalars(select(Refund)).all()
        assert [(r.amount_minor, r.purpose_key) for r in refunds] == [(6500, f"booking:{weeks[2].id}:cancel")]
        row = db.session.get(series.BookingSeries, series_id)
        preview = series.cancel_rest_terms(row, utcnow())
        assert [(w.booking.id, w.terms.late, w.terms.refund_minor) for w in preview] == [
            (weeks[0].id, True, 3250), (weeks[1].id, False, 6500), (weeks[3].id, False, 6500)]
        series.cancel_rest(series=row, actor=student, now=utcnow())
    drain(app)
    deliver(app, client, stripe_standin)
    with app.app_context(), tenancy.scoped(studio.id):
        statuses = db.session.scalars(select(Booking.status).where(Booking.series_id == series_id)).all()
        assert set(statuses) == {BookingStatus.CANCELLED}
        amounts = sorted(r.amount_minor for r in db.session.scalars(select(Refund)).all())
        assert amounts == [3250, 6500, 6500, 6500]
        assert db.session.scalar(select(func.count(Refund.id)).where(Refund.status != "succeeded")) == 0
        payment = db.session.scalar(select(Payment).where(Payment.series_id == series_id))
        assert payment.amount_refunded_minor == 3250 + 3 * 6500
        with pytest.raises(Conflict):
            series.cancel_rest(series=db.session.get(series.BookingSeries, series_id), actor=student, now=utcnow())
