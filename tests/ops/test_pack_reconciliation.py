"""Lesson packs in the ops console: a pack paid at Stripe whose credits never arrived is listed and repaired once, the
drift job notices packs' sessions the portal missed, and a pack refund that fails is on the stuck-refunds list, in
its drill-down, and retried like a lesson's."""
from __future__ import annotations

from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.dispatch import DispatchError
from portal.extensions import db
from portal.models import (
    EventStatus,
    LessonPack,
    PackPurchase,
    PackPurchaseStatus,
    Refund,
    RefundStatus,
    Studio,
    User,
    WebhookEvent,
)
from portal.payments import get_provider
from portal.services import audit, credits, pack_refunds, refunds
from tests.conftest import BOTH, csrf_token_from
from tests.ops.conftest import STUDIO, later, log_in, within
from tests.ops.test_reconciliation import audited, ids, listed, repair, status_of
from tests.ops.test_repair_safety import store_without_queueing
from tests.payments.helpers import control, deliver, drain, pay


def start_pack_purchase(app, studio) -> tuple[int, str]:
    """A student starts buying a three-lesson pack ($90.00) through Checkout: (purchase id, session id)."""
    with within(app):
        db.session.add(LessonPack(studio_id=studio.id, slug="three-60", name="Three lessons", lesson_count=3,
                                  lesson_minutes=60, valid_days=90, price_minor=9000, currency="usd"))
        db.session.commit()
    student = app.test_client()
    token = log_in(student, "student@example.com")
    assert student.post(f"{STUDIO}/packs/three-60/buy", data={"csrf_token": token}).status_code == 303
    with within(app):
        purchase = db.session.scalar(select(PackPurchase))
        return purchase.id, purchase.checkout_session_id


def credited(app, studio) -> int:
    with app.app_context(), tenancy.scoped(studio.id):
        student_id = db.session.scalar(select(PackPurchase.student_id))
        return credits.usable(student_id, 60)


@BOTH
def test_a_pack_paid_but_never_credited_is_listed_until_ops_refetches_it(app, client, studio, ops, stripe_standin):
    purchase_id, session_id = start_pack_purchase(app, studio)
    pay(stripe_standin, session_id)
    store_without_queueing(app, client, stripe_standin, ("checkout.session.completed",))
    assert ids(app, "packs_paid_uncredited") == [] and credited(app, studio) == 0  # not ten minutes yet
    with later(11):
        (item,) = listed(app, "packs_paid_uncredited")
        assert (item["id"], item["status"], item["checkout_session_id"], item["amount_minor"]) == (
            purchase_id, "pending", session_id, 9000)
        assert item["age_seconds"] >= 600
        page = ops.get("/ops/queries/packs_paid_uncredited").get_data(as_text=True)
        assert f"Lesson pack purchase {purchase_id}" in page and session_id in page
        search = ops.get("/ops/search", query_string={"q": session_id}).get_data(as_text=True)
        assert f"/ops/pack-purchases/{purchase_id}" in search
        assert repair(ops, f"/ops/pack-purchases/{purchase_id}/refetch", note="").status_code == 422
        assert repair(ops, f"/ops/pack-purchases/{purchase_id}/refetch", expected="pending").status_code == 303
        assert status_of(app, PackPurchase, purchase_id) == PackPurchaseStatus.PAID
        assert credited(app, studio) == 3
        assert ids(app, "packs_paid_uncredited") == []
        assert audited(app, "pack_purchase.refetch", purchase_id)[0].note == "checked with the student"
        again = repair(ops, f"/ops/pack-purchases/{purchase_id}/refetch", expected="pending")
        assert again.status_code == 409 and "reload" in again.get_data(as_text=True).lower()
        (event,) = listed(app, "stuck_events")  # the stored event, replayed, adds nothing more
        assert repair(ops, f"/ops/events/{event['id']}/replay", expected=event["status"]).status_code == 303
        drain(app)
        assert status_of(app, WebhookEvent, event["id"]) == EventStatus.PROCESSED
        assert credited(app, studio) == 3


@BOTH
def test_drift_notices_a_pack_paid_at_stripe_that_the_portal_missed(app, client, studio, ops, stripe_standin):
    purchase_id, session_id = start_pack_purchase(app, studio)
    control(stripe_standin, "webhooks/pause")
    pay(stripe_standin, session_id)  # paid at Stripe; the event never reaches the portal
    assert ops.post("/ops/drift", data={"csrf_token": ops.csrf}).status_code == 303
    drain(app)
    found = {(item["kind"], item["pack_purchase_id"], item["payment_id"]) for item in listed(app, "stripe_drift")}
    assert ("unsettled_session", purchase_id, None) in found and ("missing_event", purchase_id, None) in found
    page = ops.get("/ops/queries/stripe_drift").get_data(as_text=True)
    assert f"/ops/pack-purchases/{purchase_id}" in page and "add the credits" in page
    control(stripe_standin, "webhooks/resume")
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    assert credited(app, studio) == 3
    assert ops.post("/ops/drift", data={"csrf_token": ops.csrf}).status_code == 303
    drain(app)
    remaining = {item["kind"] for item in listed(app, "stripe_drift")}
    assert "unsettled_session" not in remaining and "missing_event" not in remaining


def paid_pack(app, client, studio, stripe_standin) -> tuple[int, int]:
    purchase_id, session_id = start_pack_purchase(app, studio)
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    with within(app):
        return purchase_id, db.session.get(PackPurchase, purchase_id).lot_id


@BOTH
def test_a_pack_refund_stripe_refused_is_on_the_console_and_retried_once(app, client, studio, ops, stripe_standin):
    purchase_id, lot_id = paid_pack(app, client, studio, stripe_standin)
    control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "failed"})
    admin = app.test_client()
    log_in(admin, "admin@example.com")
    form = admin.get(f"{STUDIO}/admin/credits/packs-bought/{lot_id}/refund").get_data(as_text=True)
    assert "$90.00" in form
    assert admin.post(f"{STUDIO}/admin/credits/packs-bought/{lot_id}/refund",
                      data={"csrf_token": csrf_token_from(form), "seen": "3:9000",
                            "note": "the student moved away"}).status_code == 303
    drain(app)
    (stuck,) = listed(app, "stuck_refunds")
    assert (stuck["status"], stuck["pack_purchase_id"], stuck["payment_id"], stuck["booking_id"],
            stuck["amount_minor"], stuck["reason"]) == ("failed", purchase_id, None, None, 9000, "unused_credits")
    page = ops.get("/ops/queries/stuck_refunds").get_data(as_text=True)
    assert f"lesson pack purchase {purchase_id}" in page
    assert ops.get(f"/ops/refunds/{stuck['id']}").headers["Location"].endswith(
        f"/ops/pack-purchases/{purchase_id}#refund-{stuck['id']}")
    drill = ops.get(f"/ops/pack-purchases/{purchase_id}").get_data(as_text=True)
    assert "Refund of $90.00 failed" in drill and f"Retry refund {stuck['id']}" in drill
    assert "Credits -3 (refund)" in drill and "the student moved away" in drill
    assert "complete · paid" in drill and "$90.00 failed" in drill  # Stripe's own view, fetched live
    student = app.test_client()
    log_in(student, "student@example.com")
    assert "delayed" in student.get(f"{STUDIO}/lessons").get_data(as_text=True)
    home = admin.get(f"{STUDIO}/admin/").get_data(as_text=True)  # the studio sees it on its home page too
    assert 'data-kind="refund_failed"' in home and "lesson pack Three lessons" in home
    assert "A refund of $90.00 failed" in home and "#packs-bought" in home

    assert repair(ops, f"/ops/refunds/{stuck['id']}/retry", expected="failed").status_code == 303
    drain(app)
    assert status_of(app, Refund, stuck["id"]) == RefundStatus.SUCCEEDED
    assert 'data-kind="refund_failed"' not in admin.get(f"{STUDIO}/admin/").get_data(as_text=True)
    assert ids(app, "stuck_refunds") == []
    assert repair(ops, f"/ops/refunds/{stuck['id']}/retry", expected="failed").status_code == 409
    assert sorted((r["amount"], r["status"]) for r in stripe_standin.store.refunds.values()) == [
        (9000, "failed"), (9000, "succeeded")]  # the student got the money back once
    deliver(app, client, stripe_standin)  # Stripe's refund events: nothing new, nothing external
    assert ids(app, "external_refunds") == [] and ids(app, "stuck_refunds") == []
    drift_run = ops.post("/ops/drift", data={"csrf_token": ops.csrf})
    assert drift_run.status_code == 303
    drain(app)
    assert [i for i in listed(app, "stripe_drift") if i["kind"] == "unknown_refund"] == []


@BOTH
def test_a_pack_refund_made_in_stripe_itself_is_an_external_refund(app, client, studio, ops, stripe_standin):
    purchase_id, lot_id = paid_pack(app, client, studio, stripe_standin)
    with within(app):
        intent = db.session.get(PackPurchase, purchase_id).payment_intent_id
        get_provider().create_refund(payment_intent_id=intent, amount_minor=3000, reason="requested_by_customer",
                                     metadata={}, idempotency_key="dashboard-pack-refund")
    deliver(app, client, stripe_standin, types=("charge.refunded",))
    (external,) = listed(app, "external_refunds")
    assert (external["pack_purchase_id"], external["amount_minor"], external["reason"]) == (purchase_id, 3000,
                                                                                            "external")
    assert f"lesson pack purchase {purchase_id}" in ops.get("/ops/queries/external_refunds").get_data(as_text=True)
    with app.app_context(), tenancy.scoped(studio.id):
        assert pack_refunds.quote(lot_id, utcnow()).amount_minor == 6000  # what is left of the payment
    assert repair(ops, f"/ops/resolve/external_refunds/{external['id']}",
                  note="goodwill refund agreed on the phone").status_code == 303
    assert ids(app, "external_refunds") == []


@BOTH
def test_a_pack_refund_never_sent_is_stuck_pending_until_the_sweep_sends_it(app, client, studio, ops,
                                                                            stripe_standin):
    purchase_id, lot_id = paid_pack(app, client, studio, stripe_standin)
    real_enqueue = app.extensions["dispatcher"].enqueue

    def queue_down(*_args):
        raise DispatchError("redis is down")

    app.extensions["dispatcher"].enqueue = queue_down  # the refund is recorded with the credits, never queued
    try:
        with app.app_context(), tenancy.scoped(studio.id):
            admin = db.session.scalar(select(User).where(User.email == "admin@example.com"))
            done = pack_refunds.refund_unused(db.session.get(Studio, studio.id), lot_id, seen="3:9000",
                                              note="leaving", actor=audit.Actor.of(admin), now=utcnow())
    finally:
        app.extensions["dispatcher"].enqueue = real_enqueue
    assert (done.credits, done.amount_minor) == (3, 9000) and stripe_standin.store.refunds == {}
    assert ids(app, "stuck_refunds") == []  # not ten minutes yet
    with later(11):
        (stuck,) = listed(app, "stuck_refunds")
        assert (stuck["id"], stuck["status"], stuck["pack_purchase_id"]) == (done.refund_id, "pending", purchase_id)
        drill = ops.get(f"/ops/pack-purchases/{purchase_id}").get_data(as_text=True)
        assert "Refund of $90.00 recorded" in drill
        with app.app_context():
            assert refunds.requeue_stale(now=utcnow()) == 1
        drain(app)
        assert status_of(app, Refund, done.refund_id) == RefundStatus.SUCCEEDED
        assert ids(app, "stuck_refunds") == []
    assert [r["amount"] for r in stripe_standin.store.refunds.values()] == [9000]


def test_a_pack_is_refetched_from_the_cli_and_credited_once(app, client, studio, stripe_standin):
    purchase_id, session_id = start_pack_purchase(app, studio)
    control(stripe_standin, "webhooks/pause")
    pay(stripe_standin, session_id)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["ops", "refetch-pack", str(purchase_id)]).exit_code == 2  # --note is required
    for _ in range(2):  # a second run finds it paid and adds nothing
        done = runner.invoke(args=["ops", "refetch-pack", str(purchase_id), "--note", "student called"])
        assert done.exit_code == 0 and f"pack purchase {purchase_id} is paid" in done.output, done.output
        assert credited(app, studio) == 3
    assert [a.note for a in audited(app, "pack_purchase.refetch", purchase_id)] == ["student called"] * 2
    missing = runner.invoke(args=["ops", "refetch-pack", "999999", "--note", "x"])
    assert missing.exit_code == 1 and "No such pack purchase" in missing.output
