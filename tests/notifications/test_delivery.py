"""Booking emails through a real SMTP server: once per key, in the studio's time, retried after a failure."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from portal.clock import utcnow
from portal.extensions import db
from portal.jobs.notifications import send_due_reminders, send_notification, send_notifications
from portal.mail import MailError, SMTPBackend
from portal.models import (
    Booking,
    BookingStatus,
    MakeupCredit,
    NotificationLog,
    Payment,
    Refund,
    RefundStatus,
    Reschedule,
    Resource,
    User,
)
from portal.services import notifications
from tests.conftest import BOTH
from tests.factories import make_studio, make_user
from tests.notifications.helpers import make_booking, parts, within

NEW_YORK = ZoneInfo("America/New_York")
LESSON = datetime(2026, 11, 25, 16, 0, tzinfo=NEW_YORK)  # a Wednesday, after the clocks went back: EST
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def _send(app, kind, booking_id, key=None, now=NOW):
    with app.app_context():
        return notifications.send(kind, booking_id, key=key or f"{kind}:booking:{booking_id}", now=now)


def _log(app, key):
    with within(app):
        row = db.session.scalar(select(NotificationLog).where(NotificationLog.key == key))
        db.session.expunge_all()
        return row


@BOTH
def test_confirmation_arrives_once_in_the_studios_time(app, studio, smtp_server):
    booking_id = make_booking(app, studio.id, LESSON)
    assert _send(app, "confirmation", booking_id) is True
    assert _send(app, "confirmation", booking_id) is False
    [received] = smtp_server.inbox.received
    assert received.rcpt_tos == ["student@example.com"]
    message = received.message
    assert message["To"] == "student@example.com"
    assert message["From"] == "Studio Portal <no-reply@localhost>"
    assert message["Subject"] == "Your lesson at Melody And Meter is confirmed"
    text, html = parts(message)
    link = f"http://portal.test/s/melody-and-meter/bookings/{booking_id}"
    for body in (text, html):
        assert "Wed, Nov 25, 2026, 4:00 PM EST" in body
        assert "9:00 PM" not in body and "21:00" not in body  # the UTC hour
        assert "60-minute lesson" in body and "Piano" in body and "60 minutes" in body and "$65.00" in body
        assert link in body
    assert f'href="{link}"' in html
    row = _log(app, f"confirmation:booking:{booking_id}")
    assert (row.status, row.attempts, row.recipient, row.sent_at) == ("sent", 1, "student@example.com", NOW)
    assert (row.kind, row.booking_id, row.studio_id) == ("confirmation", booking_id, studio.id)


def test_the_job_run_twice_sends_once(app, studio, smtp_server):
    booking_id = make_booking(app, studio.id, LESSON)
    key = notifications.confirmation_key(booking_id)
    with app.app_context():
        assert send_notification("confirmation", booking_id, key) is True
    with app.app_context():
        assert send_notification("confirmation", booking_id, key) is False
    assert len(smtp_server.inbox.messages) == 1


@BOTH
def test_concurrent_sends_of_one_key_send_once(app, studio, smtp_server):
    booking_id = make_booking(app, studio.id, LESSON)
    barrier, outcomes = threading.Barrier(3), []

    def work():
        with app.app_context():
            barrier.wait(timeout=10)
            outcomes.append(notifications.send("confirmation", booking_id, key="confirmation:booking:x", now=NOW))
            db.session.remove()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == [False, False, True]
    assert len(smtp_server.inbox.messages) == 1


def test_html_is_escaped_and_text_is_not(app, studio, smtp_server):
    booking_id = make_booking(app, studio.id, LESSON)
    with within(app):
        db.session.scalar(select(User)).name = "Ann <b>& Co</b>"
        db.session.commit()
    _send(app, "confirmation", booking_id)
    text, html = parts(smtp_server.inbox.messages[0])
    assert "Hello Ann <b>& Co</b>," in text
    assert "Hello Ann &lt;b&gt;&amp; Co&lt;/b&gt;," in html and "<b>&" not in html


@BOTH
def test_smtp_down_marks_failed_and_the_retry_sends(app, studio, smtp_server):
    booking_id = make_booking(app, studio.id, LESSON)
    key = notifications.confirmation_key(booking_id)
    smtp_server.stop()
    with pytest.raises(MailError, match="Connection refused"):
        _send(app, "confirmation", booking_id, key)
    row = _log(app, key)
    assert (row.status, row.attempts, row.sent_at) == ("failed", 1, None)
    assert "Connection refused" in row.last_error

    smtp_server.start()  # back, on a new port
    app.extensions["mail"] = SMTPBackend("127.0.0.1", smtp_server.port)
    later = NOW + timedelta(minutes=5)
    assert _send(app, "confirmation", booking_id, key, now=later) is True
    assert _send(app, "confirmation", booking_id, key, now=later) is False
    row = _log(app, key)
    assert (row.status, row.attempts, row.sent_at, row.last_error) == ("sent", 2, later, "")
    assert len(smtp_server.inbox.messages) == 1


def test_a_batch_of_confirmations_tries_each_and_its_retry_sends_only_the_unsent(app, studio, smtp_server):
    """Payments confirmed together queue their confirmations as one job: one message failing does not stop the
    others, the job fails so the queue retries it, and the retry sends only what is still unsent."""
    first = make_booking(app, studio.id, LESSON)
    second = make_booking(app, studio.id, LESSON + timedelta(hours=2))
    messages = [(booking_id, notifications.confirmation_key(booking_id)) for booking_id in (first, second)]
    _send(app, "confirmation", first)  # this one went out already (a redelivered event)
    smtp_server.stop()
    with app.app_context(), pytest.raises(MailError, match="Connection refused"):
        send_notifications("confirmation", messages)
    assert (_log(app, messages[0][1]).status, _log(app, messages[1][1]).status) == ("sent", "failed")

    smtp_server.start()
    app.extensions["mail"] = SMTPBackend("127.0.0.1", smtp_server.port)
    with app.app_context():
        assert send_notifications("confirmation", messages) == "1 of 2 sent"
    assert _log(app, messages[1][1]).status == "sent"
    assert len(smtp_server.inbox.messages) == 2  # each once: the first was not sent again


def test_a_refusing_server_is_retried_by_the_queue(app, studio, smtp_server):
    booking_id = make_booking(app, studio.id, LESSON)
    key = notifications.confirmation_key(booking_id)
    smtp_server.inbox.refuse = 1  # a 451: the server asks to try later
    with app.app_context():
        assert notifications.enqueue("confirmation", booking_id, key=key) is True
    assert app.extensions["dispatcher"].drain(timeout=30)
    assert len(smtp_server.inbox.messages) == 1
    row = _log(app, key)
    assert (row.status, row.attempts) == ("sent", 2)


def test_reschedule_shows_the_old_and_new_times(app, studio, smtp_server):
    new_start = datetime(2026, 11, 26, 10, 0, tzinfo=NEW_YORK)
    booking_id = make_booking(app, studio.id, new_start, reschedule_count=1)
    with within(app):
        piano, drums = (db.session.scalar(select(Resource.id).where(Resource.slug == slug))
                        for slug in ("piano", "drums"))
        db.session.add(Reschedule(studio_id=studio.id, booking_id=booking_id, from_resource_id=drums,
                                  from_start_at=LESSON, to_resource_id=piano, to_start_at=new_start,
                                  lead_minutes=3000))
        db.session.commit()
    assert _send(app, "reschedule", booking_id, notifications.reschedule_key(booking_id, 1)) is True
    [message] = smtp_server.inbox.messages
    assert message["Subject"] == "Your lesson at Melody And Meter was moved"
    text, html = parts(message)
    assert "Was: Wed, Nov 25, 2026, 4:00 PM EST (Drums)" in text
    assert "Now: Thu, Nov 26, 2026, 10:00 AM EST (Piano)" in text
    assert "Wed, Nov 25, 2026, 4:00 PM EST" in html and "Thu, Nov 26, 2026, 10:00 AM EST" in html


@BOTH
def test_cancellation_shows_lateness_refund_and_credit(app, studio, smtp_server):
    booking_id = make_booking(app, studio.id, LESSON, status=BookingStatus.CANCELLED, penalty_reason="late_cancel",
                              policy={"cancel_window_hours": 24}, cancelled_at=NOW)
    with within(app):
        booking = db.session.get(Booking, booking_id)
        payment_id = db.session.scalar(select(Payment.id).where(Payment.booking_id == booking_id))
        for purpose, amount, status in (("late-cancel", 3250, RefundStatus.SUCCEEDED),
                                        ("goodwill", 500, RefundStatus.PENDING),
                                        ("failed-try", 1000, RefundStatus.FAILED)):
            db.session.add(Refund(studio_id=studio.id, payment_id=payment_id, purpose_key=f"{purpose}:{booking_id}",
                                  amount_minor=amount, currency="usd", reason="cancellation", status=status))
        db.session.add(MakeupCredit(studio_id=studio.id, student_id=booking.student_id, booking_id=booking_id,
                                    minutes=60))
        db.session.commit()
    assert _send(app, "cancellation", booking_id) is True
    [message] = smtp_server.inbox.messages
    assert message["Subject"] == "Your lesson at Melody And Meter was cancelled"
    text, html = parts(message)
    assert "Your lesson at Melody And Meter on Wed, Nov 25, 2026, 4:00 PM EST was cancelled." in text
    assert "late cancellation, less than 24 hours before the lesson" in text
    assert "Refund: $37.50" in text  # succeeded and pending; the failed one returned nothing
    assert "Make-up credit: a 60-minute lesson" in text
    assert "$37.50" in html and "Make-up credit" in html and "late cancellation" in html


def test_cancellation_without_a_refund_says_so(app, studio, smtp_server):
    booking_id = make_booking(app, studio.id, LESSON, status=BookingStatus.CANCELLED)
    _send(app, "cancellation", booking_id)
    text, html = parts(smtp_server.inbox.messages[0])
    for body in (text, html):
        assert "no refund" in body and "late cancellation" not in body and "Make-up" not in body


@BOTH
def test_due_reminders_are_confirmed_lessons_in_the_next_day_not_yet_reminded(app, studio):
    def at(hours):
        return make_booking(app, studio.id, NOW + timedelta(hours=hours), resource="drums")

    due = at(23)
    later = at(25)  # too far ahead, for now
    at(-1)  # started
    reminded = at(22)
    make_booking(app, studio.id, NOW + timedelta(hours=21), status=BookingStatus.HELD)
    make_booking(app, studio.id, NOW + timedelta(hours=20), status=BookingStatus.CANCELLED)
    with within(app):
        other = make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("violin",))
        make_user("violinist@example.com")
        db.session.add(NotificationLog(key=f"reminder:booking:{reminded}:0", kind="reminder", studio_id=studio.id,
                                       booking_id=reminded, recipient="student@example.com", status="sent"))
        db.session.commit()
        other_id = other.id
    elsewhere = make_booking(app, other_id, NOW + timedelta(hours=12), package="lesson-30", resource="violin",
                             email="violinist@example.com")
    with app.app_context():  # no studio in scope: the sweep looks across tenants on purpose
        assert [b for b, _ in notifications.due_reminders(NOW)] == [elsewhere, due]
        assert [b for b, _ in notifications.due_reminders(NOW + timedelta(hours=2))] == [elsewhere, due, later]
    with within(app):  # moving the reminded lesson makes its new time due for a reminder of its own
        db.session.get(Booking, reminded).reschedule_count += 1
        db.session.commit()
    with app.app_context():
        assert (reminded, f"reminder:booking:{reminded}:1") in notifications.due_reminders(NOW)


def test_send_due_reminders_twice_delivers_one_reminder(app, studio, smtp_server):
    booking_id = make_booking(app, studio.id, utcnow() + timedelta(hours=23))
    dispatcher = app.extensions["dispatcher"]
    dispatcher.enqueue("send_due_reminders")
    dispatcher.enqueue("send_due_reminders")
    assert dispatcher.drain(timeout=30)
    with app.app_context():
        assert send_due_reminders() == 0  # nothing is due any more
    [message] = smtp_server.inbox.messages
    assert message["Subject"].startswith("Reminder: your lesson at Melody And Meter ")
    assert _log(app, f"reminder:booking:{booking_id}:0").status == "sent"
    text, _html = parts(message)
    assert "A reminder: your lesson at Melody And Meter is " in text


def test_a_reminder_for_a_lesson_cancelled_meanwhile_is_not_sent(app, studio, smtp_server):
    booking_id = make_booking(app, studio.id, NOW + timedelta(hours=23), status=BookingStatus.CANCELLED)
    assert _send(app, "reminder", booking_id) is False
    assert _log(app, f"reminder:booking:{booking_id}:0") is None
    assert smtp_server.inbox.messages == []


def test_reminder_subject_says_tomorrow_in_the_studios_day(app, studio, smtp_server):
    now = datetime(2026, 11, 24, 20, 0, tzinfo=NEW_YORK)  # 01:00 UTC on the 25th: "today" in UTC
    booking_id = make_booking(app, studio.id, LESSON)
    assert _send(app, "reminder", booking_id, now=now) is True
    assert smtp_server.inbox.messages[0]["Subject"] == "Reminder: your lesson at Melody And Meter tomorrow"


def test_an_unknown_kind_is_refused(app, studio):
    with app.app_context(), pytest.raises(ValueError):
        notifications.send("birthday", 1, key="birthday:1", now=NOW)
