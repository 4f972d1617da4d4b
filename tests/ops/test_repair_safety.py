"""The repairs cannot make things worse: no refund is sent twice, a list shows what is really stuck (and only that),
a resolution lasts only until its item changes, and odd input gets a clear answer."""
from __future__ import annotations

from sqlalchemy import select

from portal.clock import utcnow
from portal.dispatch import DispatchError
from portal.extensions import db
from portal.models import (
    AuditEntry,
    Booking,
    BookingStatus,
    EventStatus,
    Payment,
    PaymentFlag,
    PaymentStatus,
    Refund,
    RefundStatus,
    Studio,
    WebhookEvent,
)
from portal.payments import get_provider
from portal.payments.stripe_provider import StripeProvider
from portal.services import refunds, sweeps
from tests.conftest import BOTH, STRIPE_API_KEY
from tests.ops.conftest import STUDIO, hold, later, lesson_start, log_in, within
from tests.ops.test_reconciliation import audited, ids, listed, paid_lesson, repair, status_of
from tests.payments.helpers import control, deliver, drain, pay


def cancel_as_student(app, booking_id: int) -> None:
    student = app.test_client()
    token = log_in(student, "student@example.com")
    assert student.post(f"{STUDIO}/bookings/{booking_id}/cancel", data={"csrf_token": token}).status_code == 303
    drain(app)


def stripe_refunds(stripe_standin) -> list[tuple[int, str]]:
    return sorted((r["amount"], r["status"]) for r in stripe_standin.store.refunds.values())


def store_without_queueing(app, client, stripe_standin, types=("checkout.session.completed",)) -> None:
    """Deliver events while the queue is down: they are stored and answered 200 but never reach a worker."""
    real_enqueue = app.extensions["dispatcher"].enqueue

    def queue_down(*_args):
        raise DispatchError("redis is down")

    app.extensions["dispatcher"].enqueue = queue_down
    app.extensions["dispatcher"].wake = queue_down
    try:
        deliver(app, client, stripe_standin, types=types)
    finally:
        app.extensions["dispatcher"].enqueue = real_enqueue
        del app.extensions["dispatcher"].wake


@BOTH
def test_a_refund_whose_answer_was_lost_is_found_at_stripe_and_never_sent_twice(app, client, studio, ops,
                                                                                 stripe_standin):
    booking_id, payment_id, _session = paid_lesson(app, client, studio, stripe_standin)
    control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "lost"})  # made at Stripe, answer lost
    cancel_as_student(app, booking_id)
    (stuck,) = listed(app, "stuck_refunds")
    assert stuck["status"] == "failed"
    with within(app):
        assert db.session.get(Payment, payment_id).flag == PaymentFlag.REFUND_FAILED
    assert stripe_refunds(stripe_standin) == [(6500, "succeeded")]  # the student did get the money back

    refused = repair(ops, f"/ops/refunds/{stuck['id']}/retry", expected="failed")
    assert refused.status_code == 409 and "Stripe already has this refund" in refused.get_data(as_text=True)
    drain(app)
    assert stripe_refunds(stripe_standin) == [(6500, "succeeded")]  # nothing was sent again
    assert status_of(app, Refund, stuck["id"]) == RefundStatus.SUCCEEDED  # Stripe's word was taken instead
    assert status_of(app, Payment, payment_id) == PaymentStatus.REFUNDED
    with within(app):
        assert db.session.get(Payment, payment_id).flag is None
    assert ids(app, "stuck_refunds") == [] and ids(app, "external_refunds") == []
    assert audited(app, "refund.retry", stuck["id"]) == []


@BOTH
def test_a_retried_refund_is_not_undone_by_the_attempt_it_superseded(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, _session = paid_lesson(app, client, studio, stripe_standin)
    control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "failed"})
    cancel_as_student(app, booking_id)
    (stuck,) = listed(app, "stuck_refunds")
    assert repair(ops, f"/ops/refunds/{stuck['id']}/retry", expected="failed").status_code == 303
    drain(app)
    assert stripe_refunds(stripe_standin) == [(6500, "failed"), (6500, "succeeded")]
    attempts = sorted(r["metadata"]["attempt"] for r in stripe_standin.store.refunds.values())
    assert attempts == ["0", "1"]
    deliver(app, client, stripe_standin, types=("charge.refunded", "refund.failed"))  # Stripe's whole story
    with within(app):
        assert refunds.reconcile(payment_id, get_provider(), now=utcnow()) == []
    with within(app):
        rows = db.session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all()
        assert [(r.id, r.status, r.reason) for r in rows] == [
            (stuck["id"], RefundStatus.SUCCEEDED, "requested_by_customer")]
    assert ids(app, "external_refunds") == [] and ids(app, "stuck_refunds") == []


@BOTH
def test_a_failed_refund_made_outside_the_portal_is_not_ours_to_retry(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, _session = paid_lesson(app, client, studio, stripe_standin)
    control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "failed"})
    with within(app):
        intent = db.session.get(Payment, payment_id).payment_intent_id
        get_provider().create_refund(payment_intent_id=intent, amount_minor=1000, reason="requested_by_customer",
                                     metadata={}, idempotency_key="dashboard-refund")
    deliver(app, client, stripe_standin, types=("refund.failed",))
    (external,) = listed(app, "external_refunds")
    assert (external["status"], external["booking_id"]) == ("failed", booking_id)
    assert ids(app, "stuck_refunds") == []
    refused = repair(ops, f"/ops/refunds/{external['id']}/retry", expected="failed")
    assert refused.status_code == 409 and "outside the portal" in refused.get_data(as_text=True)
    assert stripe_refunds(stripe_standin) == [(1000, "failed")]


@BOTH
def test_refund_in_full_is_for_amount_mismatches_only(app, client, studio, ops, stripe_standin):
    _booking_id, payment_id, _session = paid_lesson(app, client, studio, stripe_standin)
    refused = repair(ops, f"/ops/payments/{payment_id}/refund")
    assert refused.status_code == 409 and "studio admin" in refused.get_data(as_text=True)
    assert status_of(app, Payment, payment_id) == PaymentStatus.PAID and stripe_refunds(stripe_standin) == []


@BOTH
def test_a_delayed_payment_under_way_keeps_its_hold_off_every_list(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, session_id = hold(app, studio)
    pay(stripe_standin, session_id, outcome="async_success")  # a bank debit: "completed" now, paid later
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    assert status_of(app, Payment, payment_id) == PaymentStatus.PROCESSING
    with later(45):
        assert ids(app, "unreleased_holds") == []
        assert ids(app, "paid_unconfirmed") == []
        assert status_of(app, Booking, booking_id) == BookingStatus.HELD


@BOTH
def test_money_whose_event_waited_past_the_hold_is_paid_unconfirmed_until_refetched(app, client, studio, ops,
                                                                                    stripe_standin):
    booking_id, payment_id, session_id = hold(app, studio)
    pay(stripe_standin, session_id)
    store_without_queueing(app, client, stripe_standin)
    with later(45):
        with app.app_context():
            assert sweeps.release_expired_holds(provider=get_provider(), now=utcnow()) == 1
        assert status_of(app, Payment, payment_id) == PaymentStatus.EXPIRED
        (item,) = listed(app, "paid_unconfirmed")
        assert (item["id"], item["booking_id"], item["status"]) == (payment_id, booking_id, "expired")
        assert repair(ops, f"/ops/payments/{payment_id}/refetch", expected="expired").status_code == 303
        assert status_of(app, Booking, booking_id) == BookingStatus.CONFIRMED  # its time was still free
        assert status_of(app, Payment, payment_id) == PaymentStatus.PAID
        assert ids(app, "paid_unconfirmed") == []
        (entry,) = audited(app, "payment.refetch", payment_id)
        assert (entry.before, entry.after) == ({"status": "expired"}, {"status": "paid"})


@BOTH
def test_resolving_one_paid_but_unconfirmed_payment_leaves_the_others(app, client, studio, ops, stripe_standin):
    first = hold(app, studio, start=lesson_start(studio, hh_mm="10:00"))
    second = hold(app, studio, "rival@example.com", start=lesson_start(studio, hh_mm="14:00"))
    for _booking_id, _payment_id, session_id in (first, second):
        pay(stripe_standin, session_id)
    store_without_queueing(app, client, stripe_standin)
    with later(45):
        with app.app_context():
            assert sweeps.release_expired_holds(provider=get_provider(), now=utcnow()) == 2
        assert ids(app, "paid_unconfirmed") == sorted([first[1], second[1]])
        assert repair(ops, f"/ops/resolve/paid_unconfirmed/{first[1]}", note="student refunded by phone"
                      ).status_code == 303
        assert ids(app, "paid_unconfirmed") == [second[1]]


@BOTH
def test_an_event_the_sweep_keeps_requeueing_stays_on_the_stuck_list(app, client, studio, ops, stripe_standin):
    _booking_id, _payment_id, session_id = hold(app, studio)
    pay(stripe_standin, session_id)
    store_without_queueing(app, client, stripe_standin)
    app.extensions["dispatcher"].enqueue = lambda *_args: None  # Redis takes jobs, but no worker runs them
    with later(11):
        with app.app_context():
            assert sweeps.requeue_stuck_events(now=utcnow()) == 1
        (event,) = listed(app, "stuck_events")
        assert (event["object_id"], event["status"]) == (session_id, "queued")
        assert event["age_seconds"] >= 600  # counted from its arrival, not from the sweep's last touch


@BOTH
def test_an_event_already_waiting_for_a_worker_is_not_replayed_again(app, client, studio, stripe_standin):
    _booking_id, _payment_id, session_id = hold(app, studio)
    pay(stripe_standin, session_id)
    store_without_queueing(app, client, stripe_standin)
    with within(app):
        event_id = db.session.scalar(select(WebhookEvent.id))
    runner = app.test_cli_runner()
    early = runner.invoke(args=["ops", "replay", str(event_id), "--note", "queue was down"])
    assert early.exit_code == 1 and "waiting for a worker" in early.output
    with later(11):
        app.extensions["dispatcher"].enqueue = lambda *_args: None  # queued; the worker is slow today
        assert runner.invoke(args=["ops", "replay", str(event_id), "--note", "queue is back"]).exit_code == 0
        again = runner.invoke(args=["ops", "replay", str(event_id), "--note", "queue is back"])
        assert again.exit_code == 1 and "waiting for a worker" in again.output
        with within(app):
            assert db.session.get(WebhookEvent, event_id).status == EventStatus.QUEUED
            assert len(db.session.scalars(select(AuditEntry).where(
                AuditEntry.action == "webhook_event.replay")).all()) == 1


@BOTH
def test_a_resolution_lasts_until_its_item_changes(app, client, studio, ops, stripe_standin):
    _booking_id, _payment_id, session_id = hold(app, studio)
    pay(stripe_standin, session_id)
    app.extensions["payment_provider"] = StripeProvider(STRIPE_API_KEY, "http://127.0.0.1:1")  # Stripe unreachable
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    (dead,) = listed(app, "dead_events")
    path = f"/ops/resolve/dead_events/{dead['id']}"
    assert repair(ops, path, note="looked at it").status_code == 303
    assert ids(app, "dead_events") == []
    assert repair(ops, path, note="again").status_code == 409
    with later(5):
        assert repair(ops, f"/ops/events/{dead['id']}/replay", expected="dead").status_code == 303
        drain(app)  # Stripe is still unreachable: it dies again, and is back on the list
        assert ids(app, "dead_events") == [dead["id"]]
    with later(6):
        assert repair(ops, path, note="Stripe outage, tracked elsewhere").status_code == 303
        assert ids(app, "dead_events") == []
        assert len(audited(app, "ops.resolve.dead_events", dead["id"])) == 2


@BOTH
def test_must_be_empty_lists_cannot_be_marked_resolved(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, session_id = hold(app, studio)
    control(stripe_standin, f"checkout/sessions/{session_id}/amount_total", {"amount_total": 100})
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    refused = repair(ops, f"/ops/resolve/amount_mismatches/{payment_id}", note="looks fine")
    assert refused.status_code == 409 and "must always be empty" in refused.get_data(as_text=True)
    assert ids(app, "amount_mismatches") == [payment_id]
    page = ops.get("/ops/queries/amount_mismatches").get_data(as_text=True)
    assert "Mark resolved" not in page and "Refund in full" in page
    assert repair(ops, f"/ops/resolve/overlapping_bookings/{booking_id}").status_code == 409


@BOTH
def test_digits_of_other_scripts_get_a_clear_answer(app, client, studio, ops, stripe_standin):
    booking_id = paid_lesson(app, client, studio, stripe_standin)[0]
    assert ops.get("/ops/queries/stuck_events?page=%C2%B2").status_code == 200  # "²": the first page
    refused = ops.get("/ops/queries/stuck_events?min_age=%C2%B2")
    assert refused.status_code == 422 and "number of minutes" in refused.get_data(as_text=True)
    for query in ("%C2%B2", "%23%D9%A3", "%E2%91%A0"):  # "²", "#٣", "①"
        response = ops.get(f"/ops/search?q={query}")
        assert response.status_code == 200 and f"#{booking_id}" not in response.get_data(as_text=True)
    assert f"/ops/bookings/{booking_id}" in ops.get(f"/ops/search?q=%23{booking_id}").get_data(as_text=True)
    admin = app.test_client()
    log_in(admin, "admin@example.com")
    assert admin.get(f"{STUDIO}/admin/bookings?page=%C2%B2").status_code == 422


def test_studios_are_suspended_and_resumed_from_the_cli(app, studio):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["ops", "suspend-studio", "melody-and-meter"]).exit_code == 2  # --note is required
    done = runner.invoke(args=["ops", "suspend-studio", "melody-and-meter", "--note", "unpaid invoice"])
    assert done.exit_code == 0, done.output
    again = runner.invoke(args=["ops", "suspend-studio", "melody-and-meter", "--note", "unpaid invoice"])
    assert again.exit_code == 1 and "already suspended" in again.output
    with within(app):
        assert db.session.scalar(select(Studio.active).where(Studio.slug == "melody-and-meter")) is False
    assert runner.invoke(args=["ops", "resume-studio", "melody-and-meter", "--note", "paid"]).exit_code == 0
    assert runner.invoke(args=["ops", "resume-studio", "nowhere", "--note", "x"]).exit_code == 2
    with within(app):
        assert db.session.scalar(select(Studio.active).where(Studio.slug == "melody-and-meter")) is True
        actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.target_type == "studio")
                                     .order_by(AuditEntry.id)).all()
        assert actions[-2:] == ["studio.suspend", "studio.resume"]
    assert runner.invoke(args=["ops", "list", "dead_events", "--limit", "0"]).exit_code == 2
