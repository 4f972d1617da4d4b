"""A weekly series is paid in one Checkout, recorded on its first week: the admin's partial refund and cancel of any
week refund from that week's own share of the payment, never more than is left of it."""
from __future__ import annotations

from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, Payment, Refund, RefundStatus, Studio, User
from portal.payments import get_provider
from portal.services import series
from tests.admin.bookings_support import days_ahead, local, page_form, row
from tests.admin.conftest import STUDIO
from tests.payments.helpers import deliver, drain, events, pay


def _post(admin, booking_id: int, action: str, **fields):
    return admin.post(f"{STUDIO}/admin/bookings/{booking_id}/{action}", data={"csrf_token": admin.csrf, **fields})


def _paid_series(app, client, standin, world, weeks: int = 3) -> list[int]:
    first = local(world, days_ahead(world, 10), "10:00")
    with app.app_context(), tenancy.scoped(world.a.id):
        studio = db.session.get(Studio, world.a.id)
        student = db.session.scalar(select(User).where(User.email == "student@example.com"))
        held = series.hold(studio=studio, student=student, package_slug="lesson-60", resource_slug="piano",
                           start_raw=first.isoformat(), weeks_raw=str(weeks), chosen_raw=None, now=utcnow())
        payment = series.start_checkout(series=held, student=student, provider=get_provider(), now=utcnow(),
                                        success_url="http://portal.test/ok", cancel_url="http://portal.test/no")
        series_id, session_id = held.id, payment.checkout_session_id
    pay(standin, session_id)
    deliver(app, client, standin, types=("checkout.session.completed",))
    with app.app_context(), tenancy.scoped(world.a.id):
        return [b.id for b in series.weeks_of(series_id)]


def _refunds(app, series_week_ids: list[int]) -> list[tuple[str, int, str]]:
    with app.app_context(), tenancy.all_tenants():
        payment = db.session.scalar(select(Payment).where(Payment.booking_id == series_week_ids[0]))
        return [(r.purpose_key.split(":")[1], r.amount_minor, r.status.value) for r in db.session.scalars(
            select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.id))]


def test_admin_refunds_and_cancels_of_later_weeks_use_their_share_of_the_series_payment(
        app, client, admin, world, stripe_standin):
    weeks = _paid_series(app, client, stripe_standin, world, weeks=3)
    second, third = weeks[1], weeks[2]
    page = admin.get(f"{STUDIO}/admin/bookings/{second}").get_data(as_text=True)
    assert "Refund part of the payment" in page and "at most $65.00" in page

    # Part of week 2: refunded from the series payment, once per form even when sent twice.
    form = page_form(admin, second)
    fields = {"amount": "20.00", "note": "Shortened lesson", **form}
    assert _post(admin, second, "refund", **fields).status_code == 303
    assert _post(admin, second, "refund", **fields).status_code == 303
    drain(app)  # the refund settles (the payment becomes partially refunded) before the next form is opened
    # More than is left of week 2's share (65.00 − 20.00) is refused and nothing is recorded.
    too_much = _post(admin, second, "refund", amount="45.01", note="again", **page_form(admin, second))
    assert too_much.status_code == 422 and "At most $45.00" in too_much.get_data(as_text=True)

    # Cancelling week 3 refunds its whole share; cancelling week 2 refunds what is left of its share.
    assert _post(admin, third, "cancel", note="Teacher ill", reason="Teacher ill.",
                 **page_form(admin, third)).status_code == 303
    drain(app)
    assert _post(admin, second, "cancel", note="Room closed", reason="Room closed.",
                 **page_form(admin, second)).status_code == 303
    drain(app)
    sent = sorted(e["data"]["object"]["amount"] for e in events(stripe_standin, ("refund.created",)))
    assert sent == [2000, 4500, 6500]  # each sent once (the queue may send them in any order)
    assert _refunds(app, weeks) == [(str(second), 2000, "succeeded"), (str(third), 6500, "succeeded"),
                                    (str(second), 4500, "succeeded")]
    assert row(app, second)["status"] == "cancelled" and row(app, third)["status"] == "cancelled"

    # Week 2 has nothing left; week 1 can still refund only its own share, not the whole payment.
    page = admin.get(f"{STUDIO}/admin/bookings/{second}").get_data(as_text=True)
    assert "Refund part of the payment" not in page
    over = _post(admin, weeks[0], "refund", amount="65.01", note="x", **page_form(admin, weeks[0]))
    assert over.status_code == 422 and "At most $65.00" in over.get_data(as_text=True)
    with app.app_context(), tenancy.all_tenants():
        payment = db.session.scalar(select(Payment).where(Payment.booking_id == weeks[0]))
        refunded = sum(r.amount_minor for r in payment.refunds if r.status == RefundStatus.SUCCEEDED)
        assert payment.paid_minor - refunded == 6500


def test_a_student_cancelling_a_week_the_studio_partly_refunded_gets_back_only_the_rest_of_its_share(
        app, client, admin, world, stripe_standin):
    from portal.services import lesson_changes

    weeks = _paid_series(app, client, stripe_standin, world, weeks=2)
    second = weeks[1]
    assert _post(admin, second, "refund", amount="15.00", note="Shortened lesson",
                 **page_form(admin, second)).status_code == 303
    drain(app)
    with app.app_context(), tenancy.scoped(world.a.id):
        booking = db.session.get(Booking, second)
        student = db.session.scalar(select(User).where(User.email == "student@example.com"))
        lesson_changes.cancel(booking=booking, actor=student, now=utcnow())  # 10 days ahead: a full refund is owed
    drain(app)
    assert _refunds(app, weeks) == [(str(second), 1500, "succeeded"), (str(second), 5000, "succeeded")]
    assert row(app, weeks[0])["status"] == "confirmed"
