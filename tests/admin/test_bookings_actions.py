"""The admin's actions on a booking go through the same guarantees as the student's: refunds through the Stripe
stand-in once per form submission, moves under the no-overlap guarantee, a cancel that refunds and emails once."""
from __future__ import annotations

import threading
from datetime import timedelta
from itertools import pairwise

import pytest
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import AuditEntry, Booking, Studio, User
from portal.services import admin_bookings
from portal.services import bookings as bookings_service
from portal.services.audit import Actor
from portal.services.errors import SlotUnavailable
from tests.admin.bookings_support import add_booking, days_ahead, local, mails, page_form, paid_lesson, row
from tests.admin.conftest import STUDIO
from tests.payments.helpers import control, drain, events


def _post(admin, booking_id: int, action: str, **fields):
    data = {"csrf_token": admin.csrf, **fields}
    return admin.post(f"{STUDIO}/admin/bookings/{booking_id}/{action}", data=data)


def _audit(app, action: str) -> list[AuditEntry]:
    with app.app_context(), tenancy.all_tenants():
        return db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                  .order_by(AuditEntry.id)).all()


def _standin_refunds(standin) -> list[dict]:
    return [e["data"]["object"] for e in events(standin, ("refund.created",))]


# --- a partial refund -------------------------------------------------------------------------------------------

def test_a_partial_refund_reaches_stripe_once_even_when_the_form_is_sent_twice(app, client, admin, world,
                                                                                 stripe_standin):
    booking_id = paid_lesson(app, client, stripe_standin, world, local(world, days_ahead(world, 5), "10:00"))
    form = page_form(admin, booking_id)
    fields = {"amount": "12.50", "note": "The lesson started late.", **form}
    first = _post(admin, booking_id, "refund", **fields)
    second = _post(admin, booking_id, "refund", **fields)  # the same submission again (a double click)
    assert first.status_code == 303 and second.status_code == 303
    drain(app)
    assert [r["amount"] for r in _standin_refunds(stripe_standin)] == [1250]
    state = row(app, booking_id)
    assert state["refunds"] == [(1250, "succeeded")]
    assert state["payment_status"] == "partially_refunded" and state["status"] == "confirmed"
    audit = _audit(app, "refund.create")
    assert [a.note for a in audit] == ["The lesson started late."] and audit[0].actor_label == "admin@example.com"
    page = admin.get(f"{STUDIO}/admin/bookings/{booking_id}").get_data(as_text=True)
    assert "Refund of $12.50 succeeded" in page and "$12.50 refunded" in page


def test_a_refund_needs_a_note_and_a_sensible_amount(app, client, admin, world, stripe_standin):
    booking_id = paid_lesson(app, client, stripe_standin, world, local(world, days_ahead(world, 5), "11:00"))
    form = page_form(admin, booking_id)
    no_note = _post(admin, booking_id, "refund", amount="10.00", note="  ", **form)
    assert no_note.status_code == 422 and "Write a note" in no_note.get_data(as_text=True)
    assert 'value="10.00"' in no_note.get_data(as_text=True)  # what was typed is kept
    for amount, message in (("abc", "like 12.50"), ("12.505", "like 12.50"), ("0", "positive amount"),
                            ("65.01", "At most $65.00"), ("", "Type the amount")):
        refused = _post(admin, booking_id, "refund", amount=amount, note="why", **form)
        assert refused.status_code == 422, amount
        assert message in refused.get_data(as_text=True), amount
    assert row(app, booking_id)["refunds"] == []
    assert _standin_refunds(stripe_standin) == []


def test_a_stale_refund_form_is_a_409_not_a_second_refund(app, client, admin, world, stripe_standin):
    booking_id = paid_lesson(app, client, stripe_standin, world, local(world, days_ahead(world, 5), "12:00"))
    old = page_form(admin, booking_id)
    assert _post(admin, booking_id, "refund", amount="5.00", note="first", **old).status_code == 303
    drain(app)
    # Another form rendered before that refund (its own request key, the old version): refused, nothing sent.
    stale = _post(admin, booking_id, "refund", amount="5.00", note="second", version=old["version"],
                  request_key="another-submission-key")
    assert stale.status_code == 409
    assert "changed after the page was opened" in stale.get_data(as_text=True)
    assert [r["amount"] for r in _standin_refunds(stripe_standin)] == [500]


# --- cancel with a full refund ----------------------------------------------------------------------------------

def test_cancel_refunds_in_full_emails_once_and_a_second_submit_is_a_409(app, client, admin, world,
                                                                         stripe_standin):
    booking_id = paid_lesson(app, client, stripe_standin, world, local(world, days_ahead(world, 6), "10:00"))
    form = page_form(admin, booking_id)
    missing = _post(admin, booking_id, "cancel", note="", **form)
    assert missing.status_code == 422 and row(app, booking_id)["status"] == "confirmed"
    done = _post(admin, booking_id, "cancel", note="Teacher ill", reason="Your teacher is ill.", **form)
    assert done.status_code == 303
    again = _post(admin, booking_id, "cancel", note="Teacher ill", reason="Your teacher is ill.", **form)
    assert again.status_code == 409
    assert "changed after the page was opened" in again.get_data(as_text=True)
    drain(app)
    assert [r["amount"] for r in _standin_refunds(stripe_standin)] == [6500]
    state = row(app, booking_id)
    assert state["status"] == "cancelled" and state["cancelled_by"] == "studio"
    assert state["refunds"] == [(6500, "succeeded")] and state["payment_status"] == "refunded"
    sent = mails(app, to="student@example.com", subject="was cancelled")
    assert len(sent) == 1 and "Your teacher is ill." in sent[0].get_body(("plain",)).get_content()
    assert [a.note for a in _audit(app, "booking.cancel")] == ["Teacher ill"]
    # A cancelled lesson offers no cancel, move or no-show any more.
    page = admin.get(f"{STUDIO}/admin/bookings/{booking_id}").get_data(as_text=True)
    assert 'id="cancel-form"' not in page and "Move to another time" not in page and 'id="no-show-form"' not in page


# --- no-show ----------------------------------------------------------------------------------------------------

def test_a_no_show_only_after_the_lesson_started(app, admin, world):
    future = add_booking(app, world, utcnow() + timedelta(days=2))
    form = page_form(admin, future)
    page = admin.get(f"{STUDIO}/admin/bookings/{future}").get_data(as_text=True)
    assert 'id="no-show-form"' not in page  # not offered
    refused = _post(admin, future, "no-show", note="did not come", **form)
    assert refused.status_code == 409 and row(app, future)["status"] == "confirmed"
    assert "only once it has started" in refused.get_data(as_text=True)

    started = add_booking(app, world, utcnow() - timedelta(minutes=20), resource="drums")
    page = admin.get(f"{STUDIO}/admin/bookings/{started}").get_data(as_text=True)
    assert 'id="no-show-form"' in page
    assert _post(admin, started, "no-show", note="", **page_form(admin, started)).status_code == 422
    done = _post(admin, started, "no-show", note="Nobody came", **page_form(admin, started))
    assert done.status_code == 303 and row(app, started)["status"] == "no_show"
    assert [a.note for a in _audit(app, "booking.no_show")] == ["Nobody came"]


# --- moving a lesson --------------------------------------------------------------------------------------------

def test_the_admin_moves_a_lesson_without_policy_and_the_student_is_emailed(app, client, admin, world,
                                                                              stripe_standin):
    day = days_ahead(world, 7)
    booking_id = paid_lesson(app, client, stripe_standin, world, local(world, day, "10:00"))
    picker = admin.get(f"{STUDIO}/admin/bookings/{booking_id}/move?resource=drums&date={day.isoformat()}")
    html = picker.get_data(as_text=True)
    target = local(world, day, "15:00").isoformat()
    assert picker.status_code == 200 and f'value="{target}"' in html and 'form="move-form"' in html
    form = page_form(admin, booking_id)
    no_note = _post(admin, booking_id, "move", resource="drums", start=target, note="", version=form["version"])
    assert no_note.status_code == 422 and row(app, booking_id)["reschedule_count"] == 0
    # Twice: the policy allows a student two moves at most 24 hours ahead; an admin is not limited.
    moved = _post(admin, booking_id, "move", resource="drums", start=target, note="Piano tuning",
                  version=form["version"])
    assert moved.status_code == 303
    second = local(world, day, "09:00").isoformat()
    again = _post(admin, booking_id, "move", resource="piano", start=second, note="Back to the piano",
                  version=page_form(admin, booking_id)["version"])
    assert again.status_code == 303
    drain(app)
    state = row(app, booking_id)
    assert state["start_at"] == local(world, day, "09:00") and state["reschedule_count"] == 2
    assert len(mails(app, to="student@example.com", subject="was moved")) == 2
    assert [a.note for a in _audit(app, "booking.move")] == ["Piano tuning", "Back to the piano"]


def test_a_move_to_a_time_another_student_holds_is_a_409_and_the_lesson_stays(app, client, admin, world,
                                                                              stripe_standin):
    day = days_ahead(world, 8)
    booking_id = paid_lesson(app, client, stripe_standin, world, local(world, day, "10:00"))
    add_booking(app, world, local(world, day, "14:00"), status="held", email="rival@example.com")
    form = page_form(admin, booking_id)
    taken = _post(admin, booking_id, "move", resource="piano", start=local(world, day, "14:00").isoformat(),
                  note="Swap", version=form["version"])
    assert taken.status_code == 409
    html = taken.get_data(as_text=True)
    assert "someone has just taken that time" in html and "Swap" in html  # the note is kept
    state = row(app, booking_id)
    assert state["start_at"] == local(world, day, "10:00") and state["reschedule_count"] == 0
    assert _audit(app, "booking.move") == []


def test_a_move_to_a_closed_time_is_a_422(app, client, admin, world, stripe_standin):
    day = days_ahead(world, 8)
    booking_id = paid_lesson(app, client, stripe_standin, world, local(world, day, "11:00"))
    form = page_form(admin, booking_id)
    closed = _post(admin, booking_id, "move", resource="piano", start=local(world, day, "20:00").isoformat(),
                   note="late", version=form["version"])
    assert closed.status_code == 422 and "not open for booking" in closed.get_data(as_text=True)
    bad = _post(admin, booking_id, "move", resource="piano", start="tomorrow", note="x", version=form["version"])
    assert bad.status_code == 422
    assert row(app, booking_id)["reschedule_count"] == 0


def _race(actions):
    barrier, outcomes, lock = threading.Barrier(len(actions)), [], threading.Lock()

    def run(action):
        barrier.wait()
        try:
            action()
            outcome = "done"
        except SlotUnavailable:
            outcome = "taken"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_an_admin_move_racing_a_student_hold_leaves_one_winner(app, client, world, stripe_standin):
    day = days_ahead(world, 9)
    booking_id = paid_lesson(app, client, stripe_standin, world, local(world, day, "10:00"))
    target = local(world, day, "16:00").isoformat()

    def move():
        with app.app_context(), tenancy.scoped(world.a.id):
            studio = db.session.get(Studio, world.a.id)
            booking = db.session.get(Booking, booking_id)
            admin_user = db.session.scalar(select(User).where(User.email == "admin@example.com"))
            admin_bookings.move(studio=studio, booking=booking, version=admin_bookings.version_of(booking),
                                actor=Actor.of(admin_user), resource_slug="piano", start_raw=target,
                                note="race", now=utcnow())

    def hold():
        with app.app_context(), tenancy.scoped(world.a.id):
            rival = db.session.scalar(select(User).where(User.email == "rival@example.com"))
            bookings_service.hold_slot(studio=db.session.get(Studio, world.a.id), student=rival,
                                       package_slug="lesson-30", resource_slug="piano", start_raw=target,
                                       now=utcnow())

    outcomes = _race([move, hold])
    assert sorted(outcomes) == ["done", "taken"], outcomes
    with app.app_context(), tenancy.scoped(world.a.id):
        live = db.session.scalars(select(Booking).where(Booking.status.in_(("held", "confirmed")))).all()
        spans = sorted((b.start_at, b.occupied_until) for b in live)
    assert all(a[1] <= b[0] for a, b in pairwise(spans))
    assert [s for s in spans if s[0] == local(world, day, "16:00")]  # exactly one of them has the slot
    moved = row(app, booking_id)  # where the lesson is says who won: moved to 16:00, or still at 10:00
    assert moved["start_at"] == local(world, day, "16:00" if moved["reschedule_count"] else "10:00")
    assert len(spans) == (1 if moved["reschedule_count"] else 2)


def test_actions_on_a_booking_of_another_studio_are_404(app, admin, world):
    theirs = add_booking(app, world, utcnow() + timedelta(days=3), email="north-student@example.com",
                         resource="violin", studio="b")
    for action in ("cancel", "refund", "no-show", "move"):
        response = _post(admin, theirs, action, note="x", version="0")
        assert response.status_code == 404, action
    assert admin.get(f"{STUDIO}/admin/bookings/{theirs}").status_code == 404
    assert row(app, theirs)["status"] == "confirmed"


def test_failed_refunds_show_in_the_timeline_with_their_error(app, client, admin, world, stripe_standin):
    booking_id = paid_lesson(app, client, stripe_standin, world, local(world, days_ahead(world, 5), "13:00"))
    control(stripe_standin, "refunds/fail_next", {"count": 1, "mode": "failed"})
    assert _post(admin, booking_id, "refund", amount="20", note="goodwill",
                 **page_form(admin, booking_id)).status_code == 303
    drain(app)
    assert row(app, booking_id)["refunds"] == [(2000, "failed")]
    page = admin.get(f"{STUDIO}/admin/bookings/{booking_id}").get_data(as_text=True)
    assert "Refund of $20.00 failed" in page and "a refund failed" in page
