"""Each reconciliation query finds a broken state made through the product's own paths (and not healthy data), and
each repair fixes it, is audited, and changes nothing when submitted a second time."""
from __future__ import annotations

from sqlalchemy import select, text

from portal.clock import utcnow
from portal.dispatch import DispatchError
from portal.extensions import db
from portal.models import (
    AuditEntry,
    Booking,
    BookingStatus,
    EventStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    WebhookEvent,
)
from portal.payments import get_provider
from portal.payments.stripe_provider import StripeProvider
from portal.services import reconciliation, sweeps
from tests.conftest import BOTH, STRIPE_API_KEY
from tests.ops.conftest import STUDIO, hold, later, lesson_start, log_in, within
from tests.payments.helpers import control, deliver, drain, pay


def listed(app, name: str) -> list[dict]:
    with app.app_context():
        return reconciliation.items(name, utcnow())


def ids(app, name: str) -> list[int]:
    return [item["id"] for item in listed(app, name)]


def status_of(app, model, row_id):
    with within(app):
        return db.session.get(model, row_id).status


def audited(app, action: str, target_id: int) -> list[AuditEntry]:
    with within(app):
        return db.session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                           AuditEntry.target_id == target_id)).all()


def repair(ops, path: str, note: str = "checked with the student", **extra):
    return ops.post(path, data={"csrf_token": ops.csrf, "note": note, **extra})


def paid_lesson(app, client, studio, stripe_standin, email="student@example.com", hh_mm="10:00"):
    booking_id, payment_id, session_id = hold(app, studio, email, start=lesson_start(studio, hh_mm=hh_mm))
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    assert status_of(app, Booking, booking_id) == BookingStatus.CONFIRMED
    return booking_id, payment_id, session_id


@BOTH
def test_a_lost_webhook_is_paid_but_unconfirmed_until_ops_refetches_the_session(app, client, studio, ops,
                                                                               stripe_standin):
    healthy = paid_lesson(app, client, studio, stripe_standin, email="rival@example.com", hh_mm="14:00")
    booking_id, payment_id, session_id = hold(app, studio)
    pay(stripe_standin, session_id)
    real_enqueue = app.extensions["dispatcher"].enqueue

    def queue_down(*_args):
        raise DispatchError("redis is down")

    app.extensions["dispatcher"].enqueue = queue_down  # the event is stored but never queued
    app.extensions["dispatcher"].wake = queue_down
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    app.extensions["dispatcher"].enqueue = real_enqueue
    del app.extensions["dispatcher"].wake
    assert ids(app, "paid_unconfirmed") == [] and ids(app, "stuck_events") == []  # not ten minutes yet
    with later(11):
        (item,) = listed(app, "paid_unconfirmed")
        assert (item["id"], item["booking_id"], item["studio"]) == (payment_id, booking_id, "melody-and-meter")
        assert item["age_seconds"] >= 600 and healthy[1] not in ids(app, "paid_unconfirmed")
        assert [e["object_id"] for e in listed(app, "stuck_events")] == [session_id]
        page = ops.get("/ops/queries/paid_unconfirmed").get_data(as_text=True)
        assert f"booking #{booking_id}" in page and session_id in page
        assert repair(ops, f"/ops/payments/{payment_id}/refetch", note="").status_code == 422
        fixed = repair(ops, f"/ops/payments/{payment_id}/refetch", expected="pending")
        assert fixed.status_code == 303
        assert status_of(app, Booking, booking_id) == BookingStatus.CONFIRMED
        assert status_of(app, Payment, payment_id) == PaymentStatus.PAID
        assert ids(app, "paid_unconfirmed") == []
        assert audited(app, "payment.refetch", payment_id)[0].note == "checked with the student"
        again = repair(ops, f"/ops/payments/{payment_id}/refetch", expected="pending")
        assert again.status_code == 409 and "reload" in again.get_data(as_text=True).lower()
        (event,) = listed(app, "stuck_events")  # the stored event still waits: replaying it changes nothing else
        assert repair(ops, f"/ops/events/{event['id']}/replay", expected=event["status"]).status_code == 303
        drain(app)
        assert status_of(app, WebhookEvent, event["id"]) == EventStatus.PROCESSED
        assert ids(app, "stuck_events") == []
        assert repair(ops, f"/ops/events/{event['id']}/replay", expected=event["status"]).status_code == 409


@BOTH
def test_a_dead_event_is_replayed_once_its_cause_is_fixed(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, session_id = hold(app, studio)
    pay(stripe_standin, session_id)
    app.extensions["payment_provider"] = StripeProvider(STRIPE_API_KEY, "http://127.0.0.1:1")  # Stripe unreachable
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    (dead,) = listed(app, "dead_events")
    assert (dead["status"], dead["attempts"]) == ("dead", 3) and "TransientProviderError" in dead["last_error"]
    with app.app_context():
        assert "dead_events" in reconciliation.failing(reconciliation.overview(utcnow()))
    app.extensions["payment_provider"] = StripeProvider(STRIPE_API_KEY, stripe_standin.base_url)  # fixed
    assert repair(ops, f"/ops/events/{dead['id']}/replay", expected="dead").status_code == 303
    drain(app)
    assert status_of(app, Booking, booking_id) == BookingStatus.CONFIRMED
    assert ids(app, "dead_events") == []
    (entry,) = audited(app, "webhook_event.replay", dead["id"])
    assert (entry.before["status"], entry.after["status"], entry.actor_label) == ("dead", "queued",
                                                                                 "ops@example.com")
    assert repair(ops, f"/ops/events/{dead['id']}/replay", expected="dead").status_code == 409
    assert len(audited(app, "webhook_event.replay", dead["id"])) == 1


@BOTH
def test_an_expired_hold_the_sweep_missed_is_released_by_ops(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, session_id = hold(app, studio)
    live_id = hold(app, studio, "rival@example.com", start=lesson_start(studio, hh_mm="15:00"))[0]
    assert ids(app, "unreleased_holds") == []
    with later(45):  # the hold lasts 31 minutes; nothing swept it
        assert ids(app, "unreleased_holds") == sorted([booking_id, live_id])
        assert repair(ops, f"/ops/bookings/{booking_id}/release", expected="held").status_code == 303
        assert status_of(app, Booking, booking_id) == BookingStatus.EXPIRED
        assert status_of(app, Payment, payment_id) == PaymentStatus.EXPIRED
        with app.app_context():
            assert get_provider().retrieve_checkout_session(session_id).status == "expired"
        assert booking_id not in ids(app, "unreleased_holds")
        assert audited(app, "booking.release", booking_id)[0].actor_label == "ops@example.com"
        assert repair(ops, f"/ops/bookings/{booking_id}/release", expected="held").status_code == 409


@BOTH
def test_an_amount_mismatch_is_never_retried_but_refunded_in_full(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, session_id = hold(app, studio)
    control(stripe_standin, f"checkout/sessions/{session_id}/amount_total", {"amount_total": 100})
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    assert ids(app, "amount_mismatches") == [payment_id]
    with app.app_context():
        assert "amount_mismatches" in reconciliation.failing(reconciliation.overview(utcnow()))
    page = ops.get("/ops/queries/amount_mismatches").get_data(as_text=True)
    assert "possible fraud" in page and "Refund in full" in page
    refused = repair(ops, f"/ops/payments/{payment_id}/refetch")
    assert refused.status_code == 409 and "Never retry" in refused.get_data(as_text=True)
    assert repair(ops, f"/ops/payments/{payment_id}/refund").status_code == 303
    drain(app)
    assert status_of(app, Payment, payment_id) == PaymentStatus.REFUNDED
    assert status_of(app, Booking, booking_id) == BookingStatus.EXPIRED  # its time is free again
    assert ids(app, "amount_mismatches") == []
    assert repair(ops, f"/ops/payments/{payment_id}/refund").status_code == 409
    with within(app):
        assert [(r.amount_minor, r.status) for r in db.session.scalars(select(Refund))] == [
            (100, RefundStatus.SUCCEEDED)]


@BOTH
def test_a_refund_stripe_refused_is_retried_once(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, _session = paid_lesson(app, client, studio, stripe_standin)
    control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "failed"})
    student = app.test_client()
    token = log_in(student, "student@example.com")
    assert student.post(f"{STUDIO}/bookings/{booking_id}/cancel", data={"csrf_token": token}).status_code == 303
    drain(app)
    (stuck,) = listed(app, "stuck_refunds")
    assert (stuck["status"], stuck["booking_id"]) == ("failed", booking_id)
    assert repair(ops, f"/ops/refunds/{stuck['id']}/retry", expected="failed").status_code == 303
    drain(app)
    assert status_of(app, Refund, stuck["id"]) == RefundStatus.SUCCEEDED
    assert status_of(app, Payment, payment_id) == PaymentStatus.REFUNDED
    assert ids(app, "stuck_refunds") == []
    assert repair(ops, f"/ops/refunds/{stuck['id']}/retry", expected="failed").status_code == 409


@BOTH
def test_a_checkout_paid_after_its_hold_expired_is_refunded_and_a_refused_refund_retried(app, client, studio, ops,
                                                                                        stripe_standin):
    start = lesson_start(studio)
    booking_id, payment_id, session_id = hold(app, studio, start=start)
    with later(30):  # the student pays in the hold's last minute; Stripe's webhook is late
        pay(stripe_standin, session_id)
    with later(45):
        with app.app_context():
            assert sweeps.release_expired_holds(provider=get_provider(), now=utcnow()) == 1
        assert status_of(app, Booking, booking_id) == BookingStatus.EXPIRED
        rival_id = hold(app, studio, "rival@example.com", start=start)[0]  # the freed time is taken
        control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "failed"})
        deliver(app, client, stripe_standin, types=("checkout.session.completed",))
        assert status_of(app, Booking, booking_id) == BookingStatus.EXPIRED
        assert status_of(app, Booking, rival_id) == BookingStatus.HELD
        (stuck,) = listed(app, "stuck_refunds")
        assert (stuck["payment_id"], stuck["booking_id"], stuck["amount_minor"], stuck["reason"],
                stuck["status"]) == (payment_id, booking_id, 6500, "slot_unavailable", "failed")
        assert ids(app, "paid_unconfirmed") == [] and ids(app, "confirmed_without_payment") == []
        page = ops.get("/ops/queries/stuck_refunds").get_data(as_text=True)
        assert f"booking #{booking_id}" in page and "slot_unavailable" in page
        assert repair(ops, f"/ops/refunds/{stuck['id']}/retry", expected="failed").status_code == 303
        drain(app)
        assert status_of(app, Refund, stuck["id"]) == RefundStatus.SUCCEEDED
        assert status_of(app, Payment, payment_id) == PaymentStatus.REFUNDED
        assert ids(app, "stuck_refunds") == []
        (entry,) = audited(app, "refund.retry", stuck["id"])
        assert (entry.actor_label, entry.note) == ("ops@example.com", "checked with the student")
        assert repair(ops, f"/ops/refunds/{stuck['id']}/retry", expected="failed").status_code == 409
        assert len(audited(app, "refund.retry", stuck["id"])) == 1
        assert sorted((r["amount"], r["status"]) for r in stripe_standin.store.refunds.values()) == [
            (6500, "failed"), (6500, "succeeded")]  # the student got the money back once


@BOTH
def test_a_refund_made_in_stripe_itself_is_recorded_and_resolved(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, _session = paid_lesson(app, client, studio, stripe_standin)
    healthy = paid_lesson(app, client, studio, stripe_standin, email="rival@example.com", hh_mm="14:00")
    with within(app):
        intent = db.session.get(Payment, payment_id).payment_intent_id
        get_provider().create_refund(payment_intent_id=intent, amount_minor=2000, reason="requested_by_customer",
                                     metadata={}, idempotency_key="dashboard-refund")
    deliver(app, client, stripe_standin, types=("charge.refunded",))
    (external,) = listed(app, "external_refunds")
    assert (external["booking_id"], external["amount_minor"], external["reason"]) == (booking_id, 2000, "external")
    assert status_of(app, Payment, payment_id) == PaymentStatus.PARTIALLY_REFUNDED
    assert status_of(app, Payment, healthy[1]) == PaymentStatus.PAID
    assert audited(app, "refund.external", external["id"])[0].actor_kind == "system"
    assert repair(ops, f"/ops/resolve/external_refunds/{external['id']}",
                  note="goodwill refund agreed on the phone").status_code == 303
    assert ids(app, "external_refunds") == []
    assert repair(ops, f"/ops/resolve/external_refunds/{external['id']}").status_code == 409


@BOTH
def test_drift_finds_what_stripe_knows_and_the_portal_missed(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, session_id = hold(app, studio)
    control(stripe_standin, "webhooks/pause")
    pay(stripe_standin, session_id)  # paid at Stripe; the event never reaches the portal
    assert ops.post("/ops/drift", data={"csrf_token": ops.csrf}).status_code == 303
    drain(app)
    kinds = {(item["kind"], item["payment_id"]) for item in listed(app, "stripe_drift")}
    assert ("unsettled_session", payment_id) in kinds and ("missing_event", payment_id) in kinds
    control(stripe_standin, "webhooks/resume")
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    assert status_of(app, Booking, booking_id) == BookingStatus.CONFIRMED
    assert ops.post("/ops/drift", data={"csrf_token": ops.csrf}).status_code == 303
    drain(app)
    assert len(audited(app, "ops.drift.run", None)) == 2
    remaining = {item["kind"] for item in listed(app, "stripe_drift")}
    assert "unsettled_session" not in remaining and "missing_event" not in remaining


@BOTH
def test_the_must_be_empty_queries_find_what_the_database_normally_forbids(app, client, studio, ops, stripe_standin):
    """Confirmed-without-payment and overlaps cannot be made through the product: the guarantees forbid them. The
    test switches a guarantee off in its own database to prove the queries would see a breach."""
    booking_id, payment_id, _ = paid_lesson(app, client, studio, stripe_standin)
    assert ids(app, "confirmed_without_payment") == [] and ids(app, "overlapping_bookings") == []
    with within(app):
        db.session.execute(text("UPDATE payments SET status = 'expired' WHERE id = :id"), {"id": payment_id})
        db.session.commit()
    assert ids(app, "confirmed_without_payment") == [booking_id]
    with app.app_context():
        assert "confirmed_without_payment" in reconciliation.failing(reconciliation.overview(utcnow()))
    with within(app):
        trigger_or_constraint = _guard_sql(db.engine.dialect.name)
        for statement in trigger_or_constraint["drop"]:
            db.session.execute(text(statement))
        db.session.execute(text(
            "INSERT INTO bookings (studio_id, student_id, package_id, resource_id, start_at, end_at, occupied_until, "
            "status, price_minor, currency, updated_at, created_at, reschedule_count, ical_sequence) "
            "SELECT studio_id, student_id, package_id, resource_id, start_at, end_at, occupied_until, 'confirmed', "
            "price_minor, currency, updated_at, created_at, 0, 0 FROM bookings WHERE id = :id"), {"id": booking_id})
        db.session.commit()
    try:
        pairs = {(item["id"], item["overlaps"]) for item in listed(app, "overlapping_bookings")}
        (copy_id,) = {row_id for row_id, _ in pairs} - {booking_id}
        assert pairs == {(booking_id, copy_id), (copy_id, booking_id)}  # each of the two is listed
    finally:
        with within(app):
            db.session.execute(text("DELETE FROM bookings WHERE id > :id"), {"id": booking_id})
            db.session.commit()  # its bookings-version trigger runs at commit: ALTER TABLE waits for that
            for statement in trigger_or_constraint["create"]:
                db.session.execute(text(statement))
            db.session.commit()


def _guard_sql(dialect: str) -> dict:
    if dialect == "postgresql":
        return {"drop": ["ALTER TABLE bookings DROP CONSTRAINT ex_bookings_no_overlap"],
                "create": ["ALTER TABLE bookings ADD CONSTRAINT ex_bookings_no_overlap EXCLUDE USING gist ("
                           "resource_id WITH =, tstzrange(start_at, occupied_until, '[)') WITH &&) "
                           "WHERE (status IN ('held', 'confirmed'))"]}
    import importlib

    initial = importlib.import_module("migrations.versions.0001_initial_schema")
    return {"drop": ["DROP TRIGGER bookings_no_overlap_insert", "DROP TRIGGER bookings_no_overlap_update"],
            "create": initial.SQLITE_NO_OVERLAP}


def test_the_drill_down_shows_everything_and_what_stripe_says(app, client, studio, ops, stripe_standin):
    booking_id, payment_id, session_id = paid_lesson(app, client, studio, stripe_standin)
    page = ops.get(f"/ops/bookings/{booking_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert session_id in html and "student@example.com" in html
    assert "complete · paid" in html  # Stripe's own view, fetched now
    assert 'data-kind="hold"' in html and 'data-kind="webhook"' in html and 'data-kind="email"' in html
    with within(app):
        event_id = db.session.scalar(select(WebhookEvent.id))
    assert ops.get(f"/ops/payments/{payment_id}").headers["Location"].endswith(f"/ops/bookings/{booking_id}")
    event_page = ops.get(f"/ops/events/{event_id}").get_data(as_text=True)
    assert "checkout.session.completed" in event_page and f"/ops/bookings/{booking_id}" in event_page
    assert "Replay" not in event_page  # processed: nothing to replay
    found = ops.get(f"/ops/search?q={session_id}").get_data(as_text=True)
    assert f"/ops/payments/{payment_id}" in found
    by_email = ops.get("/ops/search?q=Student@Example.com").get_data(as_text=True)
    assert f"/ops/bookings/{booking_id}" in by_email
    assert ops.get("/ops/bookings/999999").status_code == 404
