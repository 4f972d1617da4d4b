"""Students move and cancel paid lessons under the studio's policy; money follows every change."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from itertools import pairwise

import pytest
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.metrics import REGISTRY
from portal.models import Booking, BookingStatus, MakeupCredit, PaymentStatus, Reschedule, Studio, User
from portal.services import lesson_changes, policy
from portal.services.errors import Conflict, SlotUnavailable
from tests.conftest import BOTH
from tests.factories import PASSWORD, make_user
from tests.lessons.conftest import booking_row, days_ahead, local, within
from tests.payments.helpers import control, drain

STUDIO = "/s/melody-and-meter"


def _service(app, studio, fn, booking_id, *, now=None, **kwargs):
    with app.app_context(), tenancy.scoped(studio.id):
        booking = db.session.get(Booking, booking_id)
        actor = db.session.get(User, booking.student_id)
        studio_row = db.session.get(Studio, studio.id)
        if fn is lesson_changes.reschedule:
            kwargs["studio"] = studio_row
        result = fn(booking=booking, actor=actor, now=now or utcnow(), **kwargs)
        return result.id


# --- policy edges ----------------------------------------------------------------------------------------

def _booking(start, **policy_values):
    snapshot = {"reschedule_lead_hours": 24, "max_reschedules": 2, "cancel_window_hours": 24,
                "late_cancel_fee_percent": 50, "late_cancel_makeup": False, **policy_values}
    return Booking(start_at=start, end_at=start + timedelta(hours=1), status=BookingStatus.CONFIRMED,
                   price_minor=6500, currency="usd", policy=snapshot, reschedule_count=0)


START = datetime(2026, 12, 9, 21, 0, tzinfo=timezone.utc)  # 16:00 EST


def test_reschedule_exactly_at_the_lead_time_boundary():
    booking = _booking(START)
    assert policy.reschedule_decision(booking, START - timedelta(hours=24)).allowed
    late = policy.reschedule_decision(booking, START - timedelta(hours=24) + timedelta(seconds=1))
    assert not late.allowed and late.reason == "Rescheduling closes 24 hours before the lesson."


def test_cancel_exactly_at_the_window_boundary():
    booking = _booking(START)
    on_time = policy.cancel_terms(booking, START - timedelta(hours=24))
    assert (on_time.late, on_time.fee_minor, on_time.refund_minor) == (False, 0, 6500)
    late = policy.cancel_terms(booking, START - timedelta(hours=24) + timedelta(seconds=1))
    assert (late.late, late.fee_minor, late.refund_minor) == (True, 3250, 3250)


def test_fee_rounds_half_up_in_cents_and_makeup_follows_policy():
    odd = _booking(START, late_cancel_fee_percent=33, late_cancel_makeup=True)
    odd.price_minor = 3501
    terms = policy.cancel_terms(odd, START - timedelta(hours=1))
    assert (terms.fee_minor, terms.refund_minor, terms.makeup) == (1155, 2346, True)  # 3501 * 33% = 1155.33


def test_boundaries_across_the_dst_change_are_real_hours():
    # Lesson at 10:00 EST on Monday 2026-11-02; 24 real hours before is 09:00 EST = 10:00 EDT on Sunday 11-01.
    start = datetime(2026, 11, 2, 15, 0, tzinfo=timezone.utc)
    booking = _booking(start)
    boundary = datetime(2026, 11, 1, 15, 0, tzinfo=timezone.utc)
    assert boundary.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York")).hour == 10
    assert policy.reschedule_decision(booking, boundary).allowed
    assert not policy.reschedule_decision(booking, boundary + timedelta(minutes=1)).allowed
    assert not policy.cancel_terms(booking, boundary).late
    assert policy.cancel_terms(booking, boundary + timedelta(minutes=1)).late


def test_the_bookings_snapshot_wins_over_todays_settings():
    booking = _booking(START, cancel_window_hours=48, late_cancel_fee_percent=100)
    booking.studio = Studio(slug="x", name="x", timezone="UTC", cancel_window_hours=1, late_cancel_fee_percent=0)
    terms = policy.cancel_terms(booking, START - timedelta(hours=30))
    assert terms.late and terms.refund_minor == 0


def test_reschedule_count_limit_and_unconfirmed_lessons():
    booking = _booking(START, max_reschedules=1)
    booking.reschedule_count = 1
    assert "most times" in policy.reschedule_decision(booking, START - timedelta(days=5)).reason
    booking.status = BookingStatus.HELD
    assert not policy.cancel_terms(booking, START - timedelta(days=5)).allowed


# --- reschedule ------------------------------------------------------------------------------------------

@BOTH
def test_reschedule_moves_the_lesson_without_a_second_payment(app, studio, paid_lesson, stripe_standin):
    day = days_ahead(studio, 10, weekday=2)
    start = local(studio, day, "10:00")
    booking_id = paid_lesson(start)
    new_start = local(studio, day + timedelta(days=1), "15:00")
    now = utcnow()
    _service(app, studio, lesson_changes.reschedule, booking_id, now=now, resource_slug="drums",
             start_raw=new_start.isoformat())
    row = booking_row(app, booking_id)
    assert (row.status, row.start_at, row.reschedule_count, row.sequence) == (
        BookingStatus.CONFIRMED, new_start.astimezone(timezone.utc), 1, 1)
    assert row.payment_status == PaymentStatus.PAID
    with app.app_context():  # no second Checkout Session, no refund: the same payment covers the new time
        from portal.payments import get_provider

        assert len(get_provider().list_events(types=["checkout.session.completed"])) == 1
        assert get_provider().list_events(types=["charge.refunded"]) == []
    with within(app):
        move = db.session.scalar(select(Reschedule))
        assert move.to_start_at == new_start.astimezone(timezone.utc)
        assert move.lead_minutes == (start - now) // timedelta(minutes=1)  # how long before the lesson it moved


@BOTH
def test_reschedule_into_a_taken_slot_keeps_the_original(app, studio, paid_lesson):
    day = days_ahead(studio, 10, weekday=2)
    mine = paid_lesson(local(studio, day, "10:00"))
    paid_lesson(local(studio, day, "14:00"), email="rival@example.com")
    with pytest.raises(SlotUnavailable):
        _service(app, studio, lesson_changes.reschedule, mine, resource_slug="piano",
                 start_raw=local(studio, day, "14:30").isoformat())
    row = booking_row(app, mine)
    assert row.start_at == local(studio, day, "10:00").astimezone(timezone.utc) and row.reschedule_count == 0


def test_reschedule_refused_inside_the_lead_time(app, studio, paid_lesson):
    day = days_ahead(studio, 3)
    booking_id = paid_lesson(local(studio, day, "10:00"))
    late = local(studio, day, "10:00") - timedelta(hours=23)
    with pytest.raises(lesson_changes.PolicyRefusal, match="closes 24 hours"):
        _service(app, studio, lesson_changes.reschedule, booking_id, now=late.astimezone(timezone.utc),
                 resource_slug="piano", start_raw=local(studio, day, "12:00").isoformat())


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_two_reschedules_race_into_one_slot(app, studio, paid_lesson):
    day = days_ahead(studio, 10, weekday=3)
    first = paid_lesson(local(studio, day, "09:00"))
    second = paid_lesson(local(studio, day, "11:00"), email="rival@example.com")
    target = local(studio, day, "15:00").isoformat()
    outcomes = _race(app, studio, [
        lambda: _service(app, studio, lesson_changes.reschedule, first, resource_slug="piano", start_raw=target),
        lambda: _service(app, studio, lesson_changes.reschedule, second, resource_slug="piano", start_raw=target),
    ])
    assert sorted(outcomes) == ["moved", "taken"], outcomes
    rows = [booking_row(app, first), booking_row(app, second)]
    assert sorted(r.start_at.astimezone(studio.tz).hour for r in rows) in ([9, 15], [11, 15])


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_a_reschedule_racing_a_new_hold(app, studio, paid_lesson):
    from portal.services import bookings

    day = days_ahead(studio, 10, weekday=3)
    mine = paid_lesson(local(studio, day, "09:00"))
    target = local(studio, day, "16:00").isoformat()

    def hold():
        with app.app_context(), tenancy.scoped(studio.id):
            rival = db.session.scalar(select(User).where(User.email == "rival@example.com"))
            return bookings.hold_slot(studio=db.session.get(Studio, studio.id), student=rival,
                                      package_slug="lesson-30", resource_slug="piano", start_raw=target,
                                      now=utcnow()).id

    outcomes = _race(app, studio, [
        lambda: _service(app, studio, lesson_changes.reschedule, mine, resource_slug="piano", start_raw=target),
        hold,
    ])
    assert sorted(outcomes) == ["moved", "taken"], outcomes
    with within(app):
        live = db.session.scalars(select(Booking).where(Booking.status.in_(("held", "confirmed")))).all()
        spans = sorted((b.start_at, b.occupied_until) for b in live)
    assert all(a[1] <= b[0] for a, b in pairwise(spans))


def _race(app, studio, actions, *, done="moved", refusals=((SlotUnavailable, "taken"),)):
    """Run `actions` at the same moment, each in its own thread; returns their outcomes."""
    barrier, outcomes, lock = threading.Barrier(len(actions)), [], threading.Lock()

    def run(action):
        barrier.wait(timeout=10)
        try:
            action()
            result = done
        except Exception as error:
            result = next((label for kind, label in refusals if isinstance(error, kind)), f"error: {error!r}")
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


# --- cancel and refunds ----------------------------------------------------------------------------------

@BOTH
def test_cancel_outside_the_window_refunds_in_full(app, studio, paid_lesson):
    day = days_ahead(studio, 10)
    booking_id = paid_lesson(local(studio, day, "10:00"))
    _service(app, studio, lesson_changes.cancel, booking_id)
    drain(app)
    row = booking_row(app, booking_id)
    assert (row.status, row.penalty, row.payment_status, row.refunded) == (
        BookingStatus.CANCELLED, None, PaymentStatus.REFUNDED, 6500)
    assert row.refunds == [(6500, "succeeded", 1)]


def test_late_cancel_refunds_price_minus_fee_and_may_grant_a_makeup(app, studio, paid_lesson):
    with within(app):
        db.session.get(Studio, studio.id).late_cancel_makeup = True
        db.session.commit()
    day = days_ahead(studio, 10)
    booking_id = paid_lesson(local(studio, day, "10:00"))
    late = local(studio, day, "10:00").astimezone(timezone.utc) - timedelta(hours=5)
    _service(app, studio, lesson_changes.cancel, booking_id, now=late)
    drain(app)
    row = booking_row(app, booking_id)
    assert (row.status, row.penalty, row.payment_status, row.refunded) == (
        BookingStatus.CANCELLED, "late_cancel", PaymentStatus.PARTIALLY_REFUNDED, 3250)
    with within(app):
        assert db.session.scalar(select(MakeupCredit.minutes)) == 60


def test_refund_failure_retries_then_succeeds(app, studio, paid_lesson, stripe_standin):
    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))
    control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "500"})
    _service(app, studio, lesson_changes.cancel, booking_id)
    drain(app)
    row = booking_row(app, booking_id)
    assert row.refunds == [(6500, "succeeded", 2)] and row.payment_status == PaymentStatus.REFUNDED


def test_refund_failing_every_time_ends_failed_and_flagged_for_ops(app, client, auth, studio, paid_lesson,
                                                                   stripe_standin):
    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))
    control(stripe_standin, "refunds/fail_next", {"count": 10, "mode": "500"})
    failed_labels = {"status": "failed", "outcome": "failed"}
    failed_before = REGISTRY.get_sample_value("refund_operations_total", failed_labels)
    _service(app, studio, lesson_changes.cancel, booking_id)
    drain(app)
    row = booking_row(app, booking_id)
    assert row.refunds == [(6500, "failed", 3)] and row.payment_status == PaymentStatus.PAID
    assert row.status == BookingStatus.CANCELLED
    with within(app):
        from portal.models import Payment, PaymentFlag

        assert db.session.scalar(select(Payment.flag)) == PaymentFlag.REFUND_FAILED
    assert REGISTRY.get_sample_value("refund_operations_total", failed_labels) == failed_before + 1
    with app.app_context():
        make_user("ops@example.com", ops=True)
    auth.login("ops@example.com", "test-password-1")
    console = client.get("/ops/queries/stuck_refunds").get_data(as_text=True)
    assert "failed" in console and f"booking #{booking_id}" in console  # it ends on the ops console


def test_a_declined_refund_is_failed_at_once(app, client, auth, studio, paid_lesson, stripe_standin):
    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))
    control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "failed"})
    _service(app, studio, lesson_changes.cancel, booking_id)
    drain(app)
    assert booking_row(app, booking_id).refunds[0][:2] == (6500, "failed")
    auth.login("student@example.com", PASSWORD)
    page = client.get(f"{STUDIO}/bookings/{booking_id}").get_data(as_text=True)
    assert "A refund could not be sent" in page and "No refund is due" not in page


def test_cancelling_twice_refunds_once(app, studio, paid_lesson):
    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))
    _service(app, studio, lesson_changes.cancel, booking_id)
    with pytest.raises(Conflict, match="Only confirmed lessons can be cancelled"):
        _service(app, studio, lesson_changes.cancel, booking_id)
    drain(app)
    assert len(booking_row(app, booking_id).refunds) == 1


# --- pages and metrics -----------------------------------------------------------------------------------

def _hours_from_now(studio, hours: int) -> datetime:
    """The first 30-minute slot start at least `hours` ahead that a 60-minute lesson fits before 23:30."""
    start = (utcnow() + timedelta(hours=hours)).astimezone(studio.tz)
    start = start.replace(second=0, microsecond=0) + timedelta(minutes=(30 - start.minute % 30) % 30)
    if start.hour * 60 + start.minute > 22 * 60 + 30:
        start = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), studio.tz)
    return start


def test_my_lessons_shows_status_times_and_what_is_allowed(app, client, auth, studio, paid_lesson):
    soon = paid_lesson(_hours_from_now(studio, 5))  # inside both 24-hour windows
    later = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"), resource="drums")
    auth.login("student@example.com", PASSWORD)
    html = client.get(f"{STUDIO}/lessons").get_data(as_text=True)
    assert f'id="lesson-{soon}"' in html and f'id="lesson-{later}"' in html
    assert "Rescheduling closes 24 hours before the lesson." in html
    assert f"/bookings/{later}/reschedule" in html and f"/bookings/{soon}/reschedule" not in html
    assert "Late now: refund $32.50" in html and "Full refund" in html
    assert "10:00 AM" in html and "Paid $65.00" in html
    assert "/calendar/" in html  # the private feed address


def test_reschedule_and_cancel_through_the_pages(app, client, auth, studio, paid_lesson):
    day = days_ahead(studio, 10, weekday=1)
    booking_id = paid_lesson(local(studio, day, "10:00"))
    auth.login("student@example.com", PASSWORD)
    picker = client.get(f"{STUDIO}/bookings/{booking_id}/reschedule?resource=piano&date={day}")
    assert picker.status_code == 200
    html = picker.get_data(as_text=True)
    assert f'value="{local(studio, day, "10:00").isoformat()}"' not in html  # its own slot is not offered
    token = auth.csrf(f"{STUDIO}/lessons")
    moved = client.post(f"{STUDIO}/bookings/{booking_id}/reschedule",
                        data={"resource": "piano", "start": local(studio, day, "13:00").isoformat(),
                              "csrf_token": token})
    assert moved.status_code == 303
    page = client.get(moved.headers["Location"]).get_data(as_text=True)
    assert "1:00 PM" in page and "Your lesson was moved" in page
    confirm = client.get(f"{STUDIO}/bookings/{booking_id}/cancel").get_data(as_text=True)
    assert "full refund of" in confirm and "$65.00" in confirm
    cancelled = client.post(f"{STUDIO}/bookings/{booking_id}/cancel", data={"csrf_token": token})
    assert cancelled.status_code == 303
    drain(app)
    assert "Paid $65.00 · refunded in full" in client.get(f"{STUDIO}/bookings/{booking_id}").get_data(as_text=True)


def test_other_students_cannot_move_or_cancel_my_lesson(app, client, auth, studio, paid_lesson):
    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))
    auth.login("rival@example.com", PASSWORD)
    token = auth.csrf(f"{STUDIO}/lessons")
    assert client.get(f"{STUDIO}/bookings/{booking_id}/reschedule").status_code == 404
    assert client.post(f"{STUDIO}/bookings/{booking_id}/cancel", data={"csrf_token": token}).status_code == 404
    assert booking_row(app, booking_id).status == BookingStatus.CONFIRMED


def test_metrics_count_late_cancels_and_reschedule_lead_times(app, client, studio, paid_lesson):
    day = days_ahead(studio, 10, weekday=2)
    first = paid_lesson(local(studio, day, "10:00"))
    moved_at = utcnow()
    _service(app, studio, lesson_changes.reschedule, first, now=moved_at, resource_slug="piano",
             start_raw=local(studio, day, "12:00").isoformat())
    lead_minutes = (local(studio, day, "10:00") - moved_at) // timedelta(minutes=1)
    second = paid_lesson(local(studio, day, "15:00"), resource="drums")
    _service(app, studio, lesson_changes.cancel, second,
             now=local(studio, day, "15:00").astimezone(timezone.utc) - timedelta(hours=2))
    drain(app)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'melody_bookings_cancelled_late{resource_id="drums",tenant="melody-and-meter"} 1.0' in text
    assert 'melody_bookings_cancelled_late{resource_id="piano",tenant="melody-and-meter"} 0.0' in text
    assert "melody_bookings_cancelled_late_total 1.0" in text
    assert "melody_reschedule_completed_total 1.0" in text
    avg = float(next(line.split()[1] for line in text.splitlines()
                     if line.startswith("melody_reschedule_lead_time_hours_avg ")))
    assert avg == round(lead_minutes / 60, 3)


def test_a_refund_the_queue_lost_is_sent_by_the_sweep_and_shown_to_ops_meanwhile(app, client, auth, studio,
                                                                                 paid_lesson):
    from portal.dispatch import DispatchError
    from portal.models import Refund
    from portal.services import refunds

    booking_id = paid_lesson(local(studio, days_ahead(studio, 10), "10:00"))

    def queue_down(*_args):
        raise DispatchError("redis is down")

    app.extensions["dispatcher"].enqueue = queue_down
    _service(app, studio, lesson_changes.cancel, booking_id)
    assert booking_row(app, booking_id).refunds == [(6500, "pending", 0)]  # recorded with the cancellation
    with app.app_context():
        make_user("ops@example.com", ops=True)
    auth.login("ops@example.com", "test-password-1")
    with within(app):
        db.session.execute(db.update(Refund).values(created_at=utcnow() - timedelta(hours=2)))
        db.session.commit()
    stuck = client.get("/ops/queries/stuck_refunds").get_data(as_text=True)
    assert "pending" in stuck and f"booking #{booking_id}" in stuck
    del app.extensions["dispatcher"].enqueue  # the queue is back
    with within(app):
        assert refunds.requeue_stale(now=utcnow()) == 0  # not stale yet
        assert refunds.requeue_stale(now=utcnow() + timedelta(minutes=11)) == 1
    drain(app)
    row = booking_row(app, booking_id)
    assert row.refunds == [(6500, "succeeded", 1)] and row.payment_status == PaymentStatus.REFUNDED


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_two_cancels_at_once_cancel_and_refund_once(app, studio, paid_lesson):
    with within(app):
        db.session.get(Studio, studio.id).late_cancel_makeup = True
        db.session.commit()
    day = days_ahead(studio, 3)
    booking_id = paid_lesson(local(studio, day, "10:00"))
    late = local(studio, day, "10:00").astimezone(timezone.utc) - timedelta(hours=2)

    def cancel():
        _service(app, studio, lesson_changes.cancel, booking_id, now=late)

    outcomes = _race(app, studio, [cancel, cancel], done="cancelled",
                     refusals=((Conflict, "refused"),))
    assert sorted(outcomes) == ["cancelled", "refused"], outcomes
    drain(app)
    row = booking_row(app, booking_id)
    assert row.refunds == [(3250, "succeeded", 1)]
