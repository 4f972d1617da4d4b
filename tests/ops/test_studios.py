"""Ops suspend a studio (its pages say it takes no bookings, nothing is deleted) and resume it, audited."""
from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEntry, Booking, BookingStatus
from tests.ops.conftest import STUDIO, hold, lesson_start, log_in, within


def test_a_suspended_studio_takes_no_bookings_and_keeps_its_lessons(app, studio, ops, stripe_standin):
    booking_id, _payment_id, _session = hold(app, studio)
    page = ops.get("/ops/studios").get_data(as_text=True)
    assert 'id="studio-melody-and-meter"' in page and "open" in page
    missing_note = ops.post(f"/ops/studios/{studio.id}/suspend", data={"csrf_token": ops.csrf, "note": " "})
    assert missing_note.status_code == 422
    assert ops.post(f"/ops/studios/{studio.id}/suspend",
                    data={"csrf_token": ops.csrf, "note": "unpaid platform fees"}).status_code == 303
    assert ops.post(f"/ops/studios/{studio.id}/suspend",
                    data={"csrf_token": ops.csrf, "note": "again"}).status_code == 409

    student = app.test_client()
    token = log_in(student, "rival@example.com")
    home = student.get(f"{STUDIO}/")
    assert home.status_code == 200 and "is not taking bookings at the moment" in home.get_data(as_text=True)
    day = lesson_start(studio, days=11).date().isoformat()
    slots = student.get(f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={day}").get_json()
    assert slots["slots"] == []
    refused = student.post(f"{STUDIO}/bookings", data={"package": "lesson-60", "resource": "piano",
                                                       "start": lesson_start(studio, days=11).isoformat(),
                                                       "csrf_token": token})
    assert refused.status_code == 409 and "not taking bookings" in refused.get_data(as_text=True)
    with within(app):
        assert db.session.get(Booking, booking_id).status == BookingStatus.HELD  # nothing was deleted

    assert ops.post(f"/ops/studios/{studio.id}/resume",
                    data={"csrf_token": ops.csrf, "note": "fees paid"}).status_code == 303
    assert student.get(f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={day}").get_json()["slots"]
    with within(app):
        actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.target_type == "studio")
                                     .order_by(AuditEntry.id)).all()
        assert actions == ["studio.suspend", "studio.resume"]
