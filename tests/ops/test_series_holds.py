"""The weeks of a weekly series wait for one Checkout together, so they are released together: by ops releasing any
week's hold, by the expiry sweep, never one week left held for a Checkout that can no longer be paid."""
from __future__ import annotations

from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import AuditEntry, Booking, BookingStatus, Payment, PaymentStatus, Studio, User
from portal.payments import get_provider
from portal.services import series, sweeps
from portal.services.states import payment as payment_states
from tests.conftest import BOTH
from tests.ops.conftest import later, lesson_start


def _held_series(app, studio, hh_mm: str, weeks: int = 3) -> tuple[list[int], int, str]:
    with app.app_context(), tenancy.scoped(studio.id):
        row = db.session.get(Studio, studio.id)
        student = db.session.scalar(select(User).where(User.email == "student@example.com"))
        held = series.hold(studio=row, student=student, package_slug="lesson-60", resource_slug="piano",
                           start_raw=lesson_start(studio, hh_mm=hh_mm).isoformat(), weeks_raw=str(weeks),
                           chosen_raw=None, now=utcnow())
        payment = series.start_checkout(series=held, student=student, provider=get_provider(), now=utcnow(),
                                        success_url="http://portal.test/ok", cancel_url="http://portal.test/no")
        return [b.id for b in series.weeks_of(held.id)], payment.id, payment.checkout_session_id


def _state(app, week_ids: list[int], payment_id: int) -> tuple[list[BookingStatus], PaymentStatus]:
    with app.app_context(), tenancy.all_tenants():
        weeks = [db.session.get(Booking, i).status for i in week_ids]
        return weeks, db.session.get(Payment, payment_id).status


def _releases(app, week_ids: list[int]) -> list[AuditEntry]:
    with app.app_context(), tenancy.all_tenants():
        return db.session.scalars(select(AuditEntry).where(AuditEntry.action == "booking.release",
                                                           AuditEntry.target_id.in_(week_ids))
                                  .order_by(AuditEntry.id)).all()


@BOTH
def test_ops_releasing_one_week_releases_every_held_week_and_the_one_checkout(app, studio, ops, stripe_standin):
    weeks, payment_id, session_id = _held_series(app, studio, "10:00")
    with later(45):  # the holds have expired; nothing swept them
        response = ops.post(f"/ops/bookings/{weeks[1]}/release",
                            data={"csrf_token": ops.csrf, "note": "Student gave up", "expected": "held"})
        assert response.status_code == 303, response.get_data(as_text=True)
        assert _state(app, weeks, payment_id) == ([BookingStatus.EXPIRED] * 3, PaymentStatus.EXPIRED)
        with app.app_context():
            assert get_provider().retrieve_checkout_session(session_id).status == "expired"
        audit = _releases(app, weeks)
        assert sorted(a.target_id for a in audit) == sorted(weeks)
        assert {a.actor_label for a in audit} == {"ops@example.com"}
        assert all("Student gave up" in a.note for a in audit)
        # Another week's release form, rendered before: nothing is held any more.
        again = ops.post(f"/ops/bookings/{weeks[0]}/release",
                         data={"csrf_token": ops.csrf, "note": "again", "expected": "held"})
        assert again.status_code == 409
        assert len(_releases(app, weeks)) == 3


@BOTH
def test_the_expiry_sweep_releases_a_series_together_and_expires_its_checkout_once(app, studio, stripe_standin):
    weeks, payment_id, session_id = _held_series(app, studio, "14:00", weeks=4)
    with later(45), app.app_context():
        assert sweeps.release_expired_holds(provider=get_provider(), now=utcnow()) == 4
        assert get_provider().retrieve_checkout_session(session_id).status == "expired"
    assert _state(app, weeks, payment_id) == ([BookingStatus.EXPIRED] * 4, PaymentStatus.EXPIRED)
    assert len(_releases(app, weeks)) == 4


@BOTH
def test_the_sweep_leaves_every_week_held_while_the_series_payment_is_under_way(app, client, studio,
                                                                                stripe_standin):
    weeks, payment_id, _ = _held_series(app, studio, "11:00")
    with app.app_context(), tenancy.all_tenants():
        payment_states.process(payment_id, now=utcnow())  # a delayed payment method: its webhook decides
        db.session.commit()
    with later(45), app.app_context():
        assert sweeps.release_expired_holds(provider=get_provider(), now=utcnow()) == 0
    assert _state(app, weeks, payment_id) == ([BookingStatus.HELD] * 3, PaymentStatus.PROCESSING)
