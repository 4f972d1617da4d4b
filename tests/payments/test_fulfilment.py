"""From a held slot through Checkout and webhooks to a confirmed lesson, and every way that can go sideways."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.metrics import REGISTRY
from portal.models import (
    Booking,
    BookingStatus,
    EventStatus,
    Payment,
    PaymentFlag,
    PaymentStatus,
    Refund,
    RefundStatus,
    Role,
    WebhookEvent,
)
from portal.payments import get_provider
from portal.payments.stripe_provider import StripeProvider
from portal.services import fulfilment, fulfilment_batches, sweeps
from tests.conftest import BOTH
from tests.factories import PASSWORD, make_studio, make_user, next_weekday
from tests.payments.helpers import control, deliver, drain, events, pay, signed_post

STUDIO = "/s/melody-and-meter"


@pytest.fixture
def app_env(stripe_standin):
    from tests.conftest import stripe_env

    return {**stripe_env(stripe_standin), "JOB_RETRY_DELAYS": "0,0"}


@contextmanager
def within(app):
    """A short app context across tenants. Tests keep no transaction open while the app works: on SQLite an
    open transaction holds the write lock."""
    with app.app_context(), tenancy.all_tenants():
        yield


@pytest.fixture
def studio(app):
    with app.app_context():
        studio = make_studio(buffer_minutes=0)
        make_user("student@example.com", roles=[(studio, Role.STUDENT)])
        make_user("rival@example.com", roles=[(studio, Role.STUDENT)])
        return SimpleNamespace(id=studio.id, tz=studio.tz)


def _start(studio, hh_mm="10:00", day=None):
    return datetime.combine(day or next_weekday(2), time.fromisoformat(hh_mm), studio.tz).isoformat()


def _book(app, client, auth, studio, email="student@example.com", hh_mm="10:00"):
    """Log in, hold a slot through the web form, follow nothing: returns (booking_id, session_id)."""
    auth.login(email, PASSWORD)
    response = client.post(f"{STUDIO}/bookings", data={"package": "lesson-60", "resource": "piano",
                                                       "start": _start(studio, hh_mm),
                                                       "csrf_token": auth.csrf(f"{STUDIO}/")})
    assert response.status_code == 303, response.get_data(as_text=True)
    auth.logout()
    with within(app):
        payment = db.session.scalar(select(Payment).where(Payment.checkout_url == response.headers["Location"]))
        return payment.booking_id, payment.checkout_session_id


def _state(app, booking_id):
    with within(app):
        booking = db.session.get(Booking, booking_id)
        payment = booking.payment
        return booking.status, payment.status if payment else None


def _metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


@BOTH
def test_paid_checkout_confirms_the_booking(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    assert _state(app, booking_id) == (BookingStatus.HELD, PaymentStatus.PENDING)
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin)
    assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)
    with within(app):
        payment = db.session.scalar(select(Payment))
        assert payment.payment_intent_id.startswith("pi_") and payment.amount_received_minor == 6500
        completed = db.session.scalar(select(WebhookEvent).where(WebhookEvent.type == "checkout.session.completed"))
        assert completed.status == EventStatus.PROCESSED and completed.attempts == 1


def test_one_event_delivered_five_times_confirms_once(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id)
    processed_before = _metric("webhook_events_total", status="processed")
    deliver(app, client, stripe_standin, types=("checkout.session.completed",), times=5)
    assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)
    with within(app):
        event = db.session.scalar(select(WebhookEvent))
        assert (event.deliveries, event.attempts, event.status) == (5, 1, EventStatus.PROCESSED)
        assert db.session.scalar(select(func.count(Payment.id))) == 1
    assert _metric("webhook_events_total", status="processed") == processed_before + 1


def test_expired_before_completed(app, client, auth, studio, stripe_standin):
    """The session expired: a late or forged 'completed' signal changes nothing, since Stripe says expired."""
    booking_id, session_id = _book(app, client, auth, studio)
    control(stripe_standin, f"checkout/sessions/{session_id}/expire")
    [expired] = deliver(app, client, stripe_standin, types=("checkout.session.expired",))
    assert _state(app, booking_id) == (BookingStatus.EXPIRED, PaymentStatus.EXPIRED)
    fake_completed = {**expired, "id": "evt_late_completed", "type": "checkout.session.completed"}
    assert signed_post(client, fake_completed).status_code == 200
    drain(app)
    assert _state(app, booking_id) == (BookingStatus.EXPIRED, PaymentStatus.EXPIRED)


def test_completed_then_a_stale_expired_event(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id)
    [completed] = deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    stale_expired = {**completed, "id": "evt_stale_expired", "type": "checkout.session.expired"}
    assert signed_post(client, stale_expired).status_code == 200
    drain(app)
    assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)


def test_payment_after_local_expiry_confirms_when_the_slot_is_still_free(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    with within(app):
        db.session.get(Booking, booking_id).status = BookingStatus.EXPIRED
        db.session.commit()
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)


@BOTH
def test_payment_after_expiry_for_a_taken_slot_is_refunded_and_flagged(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    with within(app):  # the hold ran out ...
        booking = db.session.get(Booking, booking_id)
        booking.hold_expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    rival_booking, _ = _book(app, client, auth, studio, email="rival@example.com")  # ... and the slot was taken
    pay(stripe_standin, session_id)  # then the first student's payment lands
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    assert _state(app, booking_id) == (BookingStatus.EXPIRED, PaymentStatus.REFUNDED)
    assert _state(app, rival_booking)[0] == BookingStatus.HELD
    with within(app):
        payment = db.session.scalar(select(Payment).where(Payment.booking_id == booking_id))
        assert payment.flag == PaymentFlag.PAID_AFTER_EXPIRY and payment.amount_refunded_minor == 6500
        refund = db.session.scalar(select(Refund))
        assert refund.status == RefundStatus.SUCCEEDED and refund.provider_refund_id.startswith("re_")
    auth.login("student@example.com", PASSWORD)
    page = client.get(f"{STUDIO}/bookings/{booking_id}").get_data(as_text=True)
    assert "we refunded $65.00 in full" in page


@BOTH
def test_two_workers_processing_one_event_at_once(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id)
    app.extensions["dispatcher"].enqueue = lambda *args: None  # leave processing to the two threads below
    app.extensions["dispatcher"].wake = lambda *args: None
    [event] = events(stripe_standin, ("checkout.session.completed",))
    assert signed_post(client, event).status_code == 200
    with within(app):
        event_id = db.session.scalar(select(WebhookEvent.id))
    barrier, outcomes = threading.Barrier(2), []

    def work():
        with app.app_context():
            barrier.wait(timeout=10)
            outcomes.append(fulfilment.process_event(event_id, provider=get_provider(), now=utcnow(),
                                                     max_attempts=3))
            db.session.remove()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["processed", "skipped"]
    assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)


@BOTH
def test_amount_mismatch_is_flagged_not_retried_and_not_confirmed(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    control(stripe_standin, f"checkout/sessions/{session_id}/amount_total", {"amount_total": 100})
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    assert _state(app, booking_id) == (BookingStatus.HELD, PaymentStatus.MISMATCH)
    with within(app):
        payment = db.session.scalar(select(Payment))
        assert payment.flag == PaymentFlag.AMOUNT_MISMATCH and "100" in payment.flag_detail
        event = db.session.scalar(select(WebhookEvent))
        assert (event.status, event.attempts) == (EventStatus.PROCESSED, 1)
    # The hold sweep leaves it alone: money was taken, a person decides.
    with app.app_context():
        assert sweeps.release_expired_holds(provider=get_provider(), now=utcnow() + timedelta(hours=2)) == 0
    assert _state(app, booking_id)[0] == BookingStatus.HELD


def test_transient_failures_retry_then_end_dead(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id)
    app.extensions["payment_provider"] = StripeProvider("sk_test_x", "http://127.0.0.1:1")  # Stripe unreachable
    dead_before = _metric("webhook_events_total", status="dead")
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    with within(app):
        event = db.session.scalar(select(WebhookEvent))
        assert (event.status, event.attempts) == (EventStatus.DEAD, 3)
        assert "TransientProviderError" in event.last_error
    assert _state(app, booking_id) == (BookingStatus.HELD, PaymentStatus.PENDING)
    assert _metric("webhook_events_total", status="dead") == dead_before + 1


def test_delayed_payment_waits_then_confirms(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id, outcome="async_success")
    control(stripe_standin, "tasks/run")
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    deliver(app, client, stripe_standin, types=("checkout.session.async_payment_succeeded",))
    assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)


def test_delayed_payment_failure_releases_the_slot(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id, outcome="async_fail")
    [completed] = deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    assert _state(app, booking_id) == (BookingStatus.HELD, PaymentStatus.PROCESSING)
    control(stripe_standin, "tasks/run")
    deliver(app, client, stripe_standin, types=("checkout.session.async_payment_failed",))
    assert _state(app, booking_id) == (BookingStatus.EXPIRED, PaymentStatus.FAILED)


def test_declined_card_keeps_the_hold_and_says_why(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id, outcome="decline")
    deliver(app, client, stripe_standin, types=("payment_intent.payment_failed",))
    assert _state(app, booking_id) == (BookingStatus.HELD, PaymentStatus.PENDING)
    auth.login("student@example.com", PASSWORD)
    page = client.get(f"{STUDIO}/bookings/{booking_id}").get_data(as_text=True)
    assert "Your last payment attempt failed" in page


def test_checkout_failure_releases_the_hold_with_a_clear_message(app, client, auth, studio):
    app.extensions["payment_provider"] = StripeProvider("sk_test_x", "http://127.0.0.1:1")
    failures = _metric("checkout_failures_total")
    auth.login("student@example.com", PASSWORD)
    response = client.post(f"{STUDIO}/bookings", data={"package": "lesson-60", "resource": "piano",
                                                       "start": _start(studio), "csrf_token": auth.csrf(f"{STUDIO}/")})
    assert response.status_code == 503
    assert "could not reach the payment service" in response.get_data(as_text=True)
    assert f'value="{_start(studio)}"' in response.get_data(as_text=True)  # the slot is offered again
    with within(app):
        assert db.session.scalar(select(Booking.status)) == BookingStatus.EXPIRED
    assert _metric("checkout_failures_total") == failures + 1


def test_cancel_url_releases_the_hold_and_expires_the_session(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    auth.login("student@example.com", PASSWORD)
    page = client.get(f"{STUDIO}/bookings/{booking_id}/checkout-cancelled?session_id={session_id}")
    assert page.status_code == 200 and "released your time" in page.get_data(as_text=True)
    assert _state(app, booking_id) == (BookingStatus.EXPIRED, PaymentStatus.EXPIRED)
    with app.app_context():
        assert get_provider().retrieve_checkout_session(session_id).status == "expired"


def test_a_forged_cancel_link_releases_nothing_but_offers_a_button(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    auth.login("student@example.com", PASSWORD)
    forged = client.get(f"{STUDIO}/bookings/{booking_id}/checkout-cancelled").get_data(as_text=True)
    assert "Release this time" in forged and "released your time" not in forged
    assert _state(app, booking_id) == (BookingStatus.HELD, PaymentStatus.PENDING)
    released = client.post(f"{STUDIO}/bookings/{booking_id}/release", data={"csrf_token": auth.csrf(f"{STUDIO}/")},
                           follow_redirects=True)
    assert "You gave up this time" in released.get_data(as_text=True)
    assert _state(app, booking_id) == (BookingStatus.EXPIRED, PaymentStatus.EXPIRED)
    again = client.post(f"{STUDIO}/bookings/{booking_id}/release", data={"csrf_token": auth.csrf(f"{STUDIO}/")})
    assert again.status_code == 409 and "already released" in again.get_data(as_text=True)


def test_cancel_link_after_paying_in_another_tab_keeps_the_slot(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id)  # paid, but the webhook has not arrived yet
    auth.login("student@example.com", PASSWORD)
    page = client.get(f"{STUDIO}/bookings/{booking_id}/checkout-cancelled?session_id={session_id}")
    assert "Your payment has just gone through" in page.get_data(as_text=True)
    assert _state(app, booking_id)[0] == BookingStatus.HELD
    deliver(app, client, stripe_standin)
    assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)


def test_success_page_polls_until_confirmed(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    auth.login("student@example.com", PASSWORD)
    waiting = client.get(f"{STUDIO}/bookings/{booking_id}?paid=1&session_id={session_id}").get_data(as_text=True)
    assert "Confirming your booking" in waiting and 'hx-trigger="every 2s"' in waiting
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin)
    fragment = client.get(f"{STUDIO}/bookings/{booking_id}?paid=1", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="booking-status"') and "You're booked" in html
    assert "hx-trigger" not in html  # polling stops


def test_sweep_releases_expired_holds_and_expires_their_sessions(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    with app.app_context():
        assert sweeps.release_expired_holds(provider=get_provider(), now=utcnow()) == 0
        assert sweeps.release_expired_holds(provider=get_provider(), now=utcnow() + timedelta(minutes=32)) == 1
        assert get_provider().retrieve_checkout_session(session_id).status == "expired"
    assert _state(app, booking_id) == (BookingStatus.EXPIRED, PaymentStatus.EXPIRED)


def test_sweep_requeues_events_the_queue_lost(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id)
    original = app.extensions["dispatcher"].enqueue

    def queue_down(*_args):
        from portal.dispatch import DispatchError

        raise DispatchError("redis is down")

    app.extensions["dispatcher"].enqueue = queue_down
    app.extensions["dispatcher"].wake = queue_down
    [event] = events(stripe_standin, ("checkout.session.completed",))
    assert signed_post(client, event).status_code == 200  # stored, not queued: still a 200
    with within(app):
        assert db.session.scalar(select(WebhookEvent.status)) == EventStatus.RECEIVED
    app.extensions["dispatcher"].enqueue = original
    del app.extensions["dispatcher"].wake
    with app.app_context():
        assert sweeps.requeue_stuck_events(now=utcnow(), stuck_after=timedelta(minutes=10)) == 0
        assert sweeps.requeue_stuck_events(now=utcnow() + timedelta(minutes=11), stuck_after=timedelta(minutes=10)) == 1
    drain(app)
    assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)


def test_sweeps_run_from_the_cli(app, client, auth, studio, stripe_standin):
    booking_id, _ = _book(app, client, auth, studio)
    with within(app):
        booking = db.session.get(Booking, booking_id)
        booking.hold_expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["sweep"])
    assert result.exit_code == 0, result.output
    assert "released 1 expired holds" in result.output and "re-queued 0 stuck webhook events" in result.output
    assert _state(app, booking_id) == (BookingStatus.EXPIRED, PaymentStatus.EXPIRED)


def test_a_permanent_provider_refusal_is_dead_at_once(app, client, auth, studio, stripe_standin):
    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id)
    [event] = events(stripe_standin, ("checkout.session.completed",))
    stripe_standin.reset()  # Stripe no longer knows the session: retrieving it is a 404, not a passing fault
    assert signed_post(client, event).status_code == 200
    drain(app)
    with within(app):
        row = db.session.scalar(select(WebhookEvent))
        assert (row.status, row.attempts) == (EventStatus.DEAD, 1)
        assert "PaymentProviderError" in row.last_error


def test_an_event_whose_worker_always_dies_ends_dead(app, studio):
    from portal.services.fulfilment import claim

    now = utcnow()
    with within(app):
        db.session.add(WebhookEvent(provider_event_id="evt_poison", type="checkout.session.completed", payload={},
                                    status=EventStatus.PROCESSING, attempts=3, updated_at=now - timedelta(hours=1)))
        db.session.commit()
        event_id = db.session.scalar(select(WebhookEvent.id))
        assert claim(event_id, now, max_attempts=3) is None
        row = db.session.get(WebhookEvent, event_id)
        assert row.status == EventStatus.DEAD and "stopped before finishing" in row.last_error


@BOTH
def test_a_paid_checkout_is_confirmed_in_seven_statements(app, client, auth, studio, stripe_standin):
    """The worker's hot path: claim the event and read its payment with its booking and studio (one transaction),
    settle, confirm, the two totals upserts, finish. A statement more on every event costs every worker's
    throughput."""
    from sqlalchemy import event as sa_event

    booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id)
    app.extensions["dispatcher"].enqueue = lambda *args: None  # processed below, with the statements counted
    app.extensions["dispatcher"].wake = lambda *args: None
    [completed] = events(stripe_standin, ("checkout.session.completed",))
    assert signed_post(client, completed).status_code == 200
    statements = []

    def count(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            statements.append(statement.split()[0].upper())

    with app.app_context():
        event_id = db.session.scalar(select(WebhookEvent.id))
        db.session.remove()
        sa_event.listen(db.engine, "before_cursor_execute", count)
        try:
            outcome = fulfilment.process_event(event_id, provider=get_provider(), now=utcnow(), max_attempts=3)
        finally:
            sa_event.remove(db.engine, "before_cursor_execute", count)
            db.session.remove()
    assert outcome == "processed"
    assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)
    assert statements == ["UPDATE", "SELECT", "UPDATE", "UPDATE", "INSERT", "INSERT", "UPDATE"]
    with within(app):
        assert db.session.scalar(select(WebhookEvent.studio_id)) == studio.id  # learnt on the way, kept


@BOTH
def test_the_jobs_log_line_names_the_studio_without_looking_it_up(app, client, auth, studio, stripe_standin, caplog):
    """Processing read the studio with the payment: the job's one log line names it, and the job runs the seven
    statements of processing and no more."""
    import logging

    from sqlalchemy import event as sa_event

    from portal.jobs.webhooks import process_webhook_event

    _booking_id, session_id = _book(app, client, auth, studio)
    pay(stripe_standin, session_id)
    app.extensions["dispatcher"].enqueue = lambda *args: None  # run below, with the statements counted
    app.extensions["dispatcher"].wake = lambda *args: None
    [completed] = events(stripe_standin, ("checkout.session.completed",))
    assert signed_post(client, completed).status_code == 200
    caplog.set_level(logging.INFO, logger="portal.jobs")
    statements = []

    def count(_conn, _cursor, statement, *_args):
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            statements.append(statement.split()[0].upper())

    with app.app_context():
        event_id = db.session.scalar(select(WebhookEvent.id))
        db.session.remove()
        sa_event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert process_webhook_event(event_id) == "processed"
        finally:
            sa_event.remove(db.engine, "before_cursor_execute", count)
    assert len(statements) == 7, statements
    (line,) = [r for r in caplog.records if r.name == "portal.jobs"]
    assert (line.job, line.outcome, line.studio, line.studio_id) == (
        "process_webhook_event", "processed", STUDIO.rsplit("/", 1)[1], studio.id)


# --- batches: what a drain job does with the events that arrived since the last one --------------------------------

def _store_without_waking(app, client, stripe_standin, types=("checkout.session.completed",), also=()) -> None:
    """Deliver the stand-in's events (and `also`) with no drain woken: they wait, stored, for `process_waiting`."""
    app.extensions["dispatcher"].wake = lambda *args: None
    try:
        for event in [*(events(stripe_standin, types) if types else ()), *also]:
            assert signed_post(client, event).status_code == 200
    finally:
        del app.extensions["dispatcher"].wake


def _process_waiting(app, statements: list | None = None):
    """One batch, as a drain job runs it; with `statements`, the kind of each SQL statement it ran is noted (on this
    thread: the confirmation mails it queues are sent on the in-process job threads meanwhile)."""
    from sqlalchemy import event as sa_event

    batch_thread = threading.get_ident()

    def count(_conn, _cursor, statement, *_args):
        if threading.get_ident() == batch_thread and not statement.lstrip().upper().startswith(
                ("BEGIN", "SAVEPOINT", "RELEASE")):
            statements.append(statement.split()[0].upper())

    with app.app_context():
        if statements is not None:
            sa_event.listen(db.engine, "before_cursor_execute", count)
        try:
            return fulfilment_batches.process_waiting(provider=get_provider(), now=utcnow(), max_attempts=3)
        finally:
            if statements is not None:
                sa_event.remove(db.engine, "before_cursor_execute", count)
            db.session.remove()


def _confirmed_total(app) -> int:
    from portal.models import ResourceBookingTotal

    with within(app):
        return db.session.scalar(select(func.coalesce(func.sum(ResourceBookingTotal.confirmed), 0)))


def _mails(app) -> list[str]:
    from portal.models import NotificationLog

    with within(app):
        return sorted(db.session.scalars(select(NotificationLog.key).where(NotificationLog.status == "sent")))


@BOTH
def test_a_burst_of_paid_checkouts_is_settled_together_in_seven_statements(app, client, auth, studio,
                                                                           stripe_standin):
    """Three payments that arrived together: one claim, one read of their payments, then one transaction settling
    the payments, confirming the bookings, adding to both totals and finishing the events, each in one round trip.
    The count does not grow with the batch (the single-event path takes seven statements for one)."""
    booked = [_book(app, client, auth, studio, email=email, hh_mm=hh_mm) for email, hh_mm in
              (("student@example.com", "10:00"), ("student@example.com", "12:00"), ("rival@example.com", "14:00"))]
    for _booking_id, session_id in booked:
        pay(stripe_standin, session_id)
    _store_without_waking(app, client, stripe_standin)
    processed_before = _metric("webhook_events_total", status="processed")
    statements = []
    assert _process_waiting(app, statements) == {"processed": 3}
    assert statements == ["WITH", "SELECT", "UPDATE", "UPDATE", "INSERT", "INSERT", "UPDATE"]  # WITH: the claim
    for booking_id, _session_id in booked:
        assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)
    with within(app):
        rows = db.session.execute(select(WebhookEvent.status, WebhookEvent.attempts, WebhookEvent.studio_id)).all()
        assert sorted(rows) == [(EventStatus.PROCESSED, 1, studio.id)] * 3
        assert {payment.amount_received_minor for payment in db.session.scalars(select(Payment))} == {6500}
    assert _confirmed_total(app) == 3
    assert _metric("webhook_events_total", status="processed") == processed_before + 3
    drain(app)  # the confirmation mails, queued together after the commit
    assert _mails(app) == sorted(f"confirmation:booking:{booking_id}" for booking_id, _ in booked)
    assert _process_waiting(app) == {}  # nothing left waiting


@BOTH
def test_a_batch_settles_the_plain_payments_together_and_the_rest_one_by_one(app, client, auth, studio,
                                                                             stripe_standin):
    plain, _ = plain_pair = _book(app, client, auth, studio, hh_mm="10:00")
    mismatched, mismatched_session = _book(app, client, auth, studio, hh_mm="12:00")
    control(stripe_standin, f"checkout/sessions/{mismatched_session}/amount_total", {"amount_total": 100})
    late, late_session = _book(app, client, auth, studio, hh_mm="14:00")
    with within(app):  # this hold ran out and its time was booked by someone else before the money came
        db.session.get(Booking, late).hold_expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    rival, _ = _book(app, client, auth, studio, email="rival@example.com", hh_mm="14:00")
    for session_id in (plain_pair[1], mismatched_session, late_session):
        pay(stripe_standin, session_id)
    _store_without_waking(app, client, stripe_standin, also=[{
        "id": "evt_not_ours", "object": "event", "type": "customer.created", "created": int(utcnow().timestamp()),
        "data": {"object": {"id": "cus_1", "object": "customer"}}}])
    assert _process_waiting(app) == {"processed": 3, "ignored": 1}
    drain(app)  # the refund it recorded
    assert _state(app, plain) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)
    assert _state(app, mismatched) == (BookingStatus.HELD, PaymentStatus.MISMATCH)
    assert _state(app, late) == (BookingStatus.EXPIRED, PaymentStatus.REFUNDED)
    assert _state(app, rival)[0] == BookingStatus.HELD
    assert _confirmed_total(app) == 1
    with within(app):
        assert {status for status in db.session.scalars(select(WebhookEvent.status))} == {
            EventStatus.PROCESSED, EventStatus.IGNORED}


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_payment_settled_by_the_return_page_during_a_batch_sends_the_batch_one_by_one(app, client, auth, studio,
                                                                                      stripe_standin):
    """The student's return page settles one of the batch's payments between the batch's read and its write: the
    batch's transaction is refused as a whole and undone (nothing counted twice), then each event is applied to
    what is there now."""
    from sqlalchemy import event as sa_event

    first, first_session = _book(app, client, auth, studio, hh_mm="10:00")
    second, second_session = _book(app, client, auth, studio, hh_mm="12:00")
    for session_id in (first_session, second_session):
        pay(stripe_standin, session_id)
    _store_without_waking(app, client, stripe_standin)
    with within(app):
        first_payment = db.session.scalar(select(Payment.id).where(Payment.booking_id == first))

    def student_returns():
        with app.app_context():
            fulfilment.sync_from_provider(first_payment, first_session, get_provider(), utcnow())
            db.session.remove()

    returned = []

    def just_before_settling(_conn, _cursor, statement, _params, _context, executemany):
        if executemany and statement.lstrip().upper().startswith("UPDATE PAYMENTS") and not returned:
            returned.append(True)
            thread = threading.Thread(target=student_returns)
            thread.start()
            thread.join(timeout=30)

    with app.app_context():
        sa_event.listen(db.engine, "before_cursor_execute", just_before_settling)
    try:
        assert _process_waiting(app) == {"processed": 2}
    finally:
        with app.app_context():
            sa_event.remove(db.engine, "before_cursor_execute", just_before_settling)
    assert returned == [True]
    for booking_id in (first, second):
        assert _state(app, booking_id) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)
    assert _confirmed_total(app) == 2
    with within(app):
        assert sorted(db.session.scalars(select(WebhookEvent.attempts))) == [1, 1]


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_batches_at_once_take_different_events_without_waiting(app, client, auth, studio, stripe_standin):
    from portal.services.states import webhook_event as webhook_events

    for hh_mm in ("10:00", "12:00", "14:00"):
        pay(stripe_standin, _book(app, client, auth, studio, hh_mm=hh_mm)[1])
    _store_without_waking(app, client, stripe_standin)
    taken = {}

    def other_worker():
        with app.app_context():
            db.session.execute(db.text("SET LOCAL lock_timeout = '2s'"))
            taken["other"] = [row.id for row in webhook_events.take_waiting(now=utcnow(), max_attempts=3, limit=10)]
            db.session.commit()
            db.session.remove()

    with app.app_context():
        first = [row.id for row in webhook_events.take_waiting(now=utcnow(), max_attempts=3, limit=2)]
        thread = threading.Thread(target=other_worker)  # while the first claim's transaction is still open
        thread.start()
        thread.join(timeout=30)
        db.session.commit()
        db.session.remove()
    with within(app):
        all_ids = sorted(db.session.scalars(select(WebhookEvent.id)))
    assert len(first) == 2 and first == all_ids[:2]  # oldest first
    assert taken["other"] == all_ids[2:]


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_drain_looks_again_for_an_event_a_redelivery_held_locked_for_a_moment(app, client):
    """A batch's claim skips rows other transactions hold (so concurrent drains never wait for each other), and a
    redelivery counting itself holds its event's row for a moment: the drain finds the event still waiting and
    takes it once the row is free, instead of leaving it to the stuck-event sweep."""
    from portal.jobs.webhooks import drain_webhook_events

    _store_without_waking(app, client, None, types=(), also=[{
        "id": "evt_locked", "object": "event", "type": "customer.created", "created": int(utcnow().timestamp()),
        "data": {"object": {"id": "cus_1", "object": "customer"}}}])
    from sqlalchemy import event as sa_event

    with app.app_context():
        holder = db.engine.connect()
    holder.execute(db.text("UPDATE webhook_events SET deliveries = deliveries + 1"))  # held, not committed

    def release_when_the_drain_looks_again(_conn, _cursor, statement, *_args):
        if statement.lstrip().startswith("SELECT webhook_events.id") and holder.in_transaction():
            holder.commit()  # the redelivery is counted: the row is free

    with app.app_context():
        sa_event.listen(db.engine, "before_cursor_execute", release_when_the_drain_looks_again)
        try:
            assert drain_webhook_events() == "1 ignored"
        finally:
            sa_event.remove(db.engine, "before_cursor_execute", release_when_the_drain_looks_again)
            holder.close()
    with within(app):
        row = db.session.scalar(select(WebhookEvent))
        assert (row.status, row.attempts, row.deliveries) == (EventStatus.IGNORED, 1, 2)
