"""Blackouts: the preview of the lessons they hit, keeping or cancelling them (refunded through the Stripe stand-in
and emailed once, however often the form is sent), DST-aware typed times, the list, and availability after."""
from __future__ import annotations

import re
import threading
from datetime import datetime, time, timedelta, timezone

import pytest

from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, Studio, User
from portal.services import lesson_changes
from tests.admin.catalogue_support import (
    audit_rows,
    blackout_rows,
    booking,
    calendar_version,
    cancellation_emails,
    days_ahead,
    local,
    make_hold,
    make_paid_lesson,
    within,
)
from tests.admin.conftest import STUDIO, log_in
from tests.conftest import BOTH
from tests.factories import make_blackout
from tests.payments.helpers import drain

BLACKOUTS = f"{STUDIO}/admin/calendar/blackouts"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def paid(app, client, stripe_standin, world):
    """Returns a function: (local start, email=, resource=) -> id of a confirmed lesson paid through Checkout."""

    def make(start, **kwargs):
        return make_paid_lesson(app, client, stripe_standin, world.a.id, start, **kwargs)

    return make


@pytest.fixture
def day(world):
    return days_ahead(world.a, 10)


def typed(day, starts: str, ends: str, *, resource: str = "", reason: str = "Burst pipe", **extra) -> dict:
    return {"resource": resource, "starts": f"{day.isoformat()}T{starts}", "ends": f"{day.isoformat()}T{ends}",
            "reason": reason, **extra}


def form(admin, data: dict, lessons=()) -> dict:
    return {**data, "csrf_token": admin.csrf, "lesson": [str(i) for i in lessons]}


def hit_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="hit-(\d+)"', html)]


def hidden_lessons(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'name="lesson" value="(\d+)"', html)]


def slot_times(client, world, day, resource="piano", package="lesson-30") -> list[str]:
    body = client.get(f"{STUDIO}/api/availability?package={package}&resource={resource}&date={day}").get_json()
    return [datetime.fromisoformat(s).astimezone(world.a.tz).strftime("%H:%M") for s in body["slots"]]


def test_the_preview_lists_exactly_the_confirmed_lessons_the_blackout_hits(app, admin, world, paid, day):
    before = paid(local(world.a, day, "09:00"))                      # ends as the blackout starts: not hit
    hit = paid(local(world.a, day, "10:00"))                         # inside
    cancelled = paid(local(world.a, day, "11:00"), email="rival@example.com")
    with within(app, world.a.id):
        row = db.session.get(Booking, cancelled)
        lesson_changes.cancel(booking=row, actor=db.session.get(User, row.student_id), now=utcnow())
    held = make_hold(app, world.a.id, local(world.a, day, "12:00"))  # unpaid: shown apart, not cancellable
    after = paid(local(world.a, day, "13:00"))                       # starts as the blackout ends: not hit
    drums = paid(local(world.a, day, "10:30"), resource="drums", email="rival@example.com")

    piano_only = admin.post(f"{BLACKOUTS}/preview", data=form(admin, typed(day, "10:00", "13:00", resource="piano")),
                            headers=HTMX)
    assert piano_only.status_code == 200
    assert "HX-Request" in piano_only.headers["Vary"]
    html = piano_only.get_data(as_text=True)
    assert "<html" not in html and 'id="blackout-preview"' in html
    assert hit_ids(html) == [hit] and hidden_lessons(html) == [hit]
    assert f'id="hit-{before}"' not in html and f'id="hit-{after}"' not in html
    assert "1 unpaid hold overlaps it" in html and 'name="lessons" value="cancel"' in html
    assert 'id="held-hits"' in html

    whole_studio = admin.post(f"{BLACKOUTS}/preview", data=form(admin, typed(day, "10:00", "13:00")), headers=HTMX)
    assert sorted(hit_ids(whole_studio.get_data(as_text=True))) == sorted([hit, drums])

    # Without JavaScript the same preview comes as the whole page, with the form as typed.
    page = admin.post(f"{BLACKOUTS}/preview", data=form(admin, typed(day, "10:00", "13:00", resource="piano")))
    page_html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in page_html
    assert hit_ids(page_html) == [hit]
    assert f'value="{day.isoformat()}T10:00"' in page_html and 'value="Burst pipe"' in page_html
    assert booking(app, held).status == "held" and booking(app, before).status == "confirmed"
    assert blackout_rows(app, world.a.id) == []  # a preview saves nothing


@BOTH
def test_cancel_and_refund_sent_twice_refunds_and_emails_each_student_once(app, admin, client, world, paid, day):
    piano = paid(local(world.a, day, "10:00"))
    drums = paid(local(world.a, day, "10:30"), resource="drums", email="rival@example.com")
    outside = paid(local(world.a, day, "14:00"))
    version = calendar_version(app, world.a.id)
    data = form(admin, typed(day, "10:00", "12:00", lessons="cancel"), lessons=[piano, drums])

    first = admin.post(BLACKOUTS, data=data)
    assert first.status_code == 303
    second = admin.post(BLACKOUTS, data=data)  # the same form again (a double click, a resend)
    assert second.status_code == 303
    drain(app)

    assert len(blackout_rows(app, world.a.id)) == 1
    assert calendar_version(app, world.a.id) == version + 1
    for booking_id in (piano, drums):
        row = booking(app, booking_id)
        assert (row.status, row.cancelled_by, row.cancel_reason, row.penalty) == (
            "cancelled", "studio", "Burst pipe", None)
        assert (row.payment_status, row.refunded, row.refunds) == ("refunded", 6500, [(6500, "succeeded")])
        keys, emails = cancellation_emails(app, booking_id)
        assert keys == [f"cancellation:booking:{booking_id}"]
        assert len(emails) == 1 and "Burst pipe" in emails[0]
    assert booking(app, outside).status == "confirmed"
    [created] = audit_rows(app, "blackout.create")
    assert created.after["lessons"] == "cancel" and sorted(created.after["confirmed_hit"]) == sorted([piano, drums])
    assert created.actor == "admin@example.com" and created.after["reason"] == "Burst pipe"
    cancels = audit_rows(app, "booking.cancel")
    assert sorted(c.target_id for c in cancels) == sorted([piano, drums])
    blackout_id = blackout_rows(app, world.a.id)[0].id
    assert {c.note for c in cancels} == {f"Blackout #{blackout_id}: cancelled with a full refund."}
    assert len(audit_rows(app, "refund.create")) == 2

    listing = admin.get(BLACKOUTS).get_data(as_text=True)
    assert "This blackout was already saved: nothing was added." in listing
    assert "Burst pipe" in listing
    # Availability: nothing starts inside the blackout (a 30-minute lesson may end as it starts).
    free = slot_times(client, world, day)
    assert "09:30" in free and "12:00" in free
    assert not [t for t in free if "10:00" <= t < "12:00"]


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_cancel_and_refund_submissions_at_once_act_once(app, world, paid, day):
    lessons = [paid(local(world.a, day, "10:00")), paid(local(world.a, day, "11:00"), email="rival@example.com")]
    clients = [app.test_client(), app.test_client()]
    for c in clients:
        c.csrf = log_in(c, "admin@example.com")
    start = threading.Barrier(2)
    answers = []

    def submit(c):
        data = form(c, typed(day, "09:30", "12:30", lessons="cancel"), lessons=lessons)
        start.wait()
        answers.append(c.post(BLACKOUTS, data=data).status_code)

    threads = [threading.Thread(target=submit, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    drain(app)
    assert answers == [303, 303]
    assert len(blackout_rows(app, world.a.id)) == 1
    for booking_id in lessons:
        row = booking(app, booking_id)
        assert (row.status, row.refunds) == ("cancelled", [(6500, "succeeded")])
        keys, emails = cancellation_emails(app, booking_id)
        assert len(keys) == 1 and len(emails) == 1
    assert len(audit_rows(app, "blackout.create")) == 1


def test_keep_leaves_the_lessons_confirmed_and_closes_the_rest(app, admin, client, world, paid, day):
    kept = paid(local(world.a, day, "10:00"))
    response = admin.post(BLACKOUTS, data=form(admin, typed(day, "09:00", "13:00", resource="piano",
                                                            lessons="keep"), lessons=[kept]))
    assert response.status_code == 303
    drain(app)
    row = booking(app, kept)
    assert (row.status, row.payment_status, row.refunds) == ("confirmed", "paid", [])
    assert cancellation_emails(app, kept) == ([], [])
    page = admin.get(BLACKOUTS).get_data(as_text=True)
    assert "Kept 1 lesson in it as booked." in page and "1 confirmed" in page
    free = slot_times(client, world, day)
    assert free and not [t for t in free if "08:30" < t < "13:00"]
    assert "13:00" in free
    assert slot_times(client, world, day, resource="drums")[0] == "09:00"  # a piano blackout: drums stay open


def test_a_choice_is_needed_and_a_changed_list_is_shown_again(app, admin, world, paid, day):
    lesson = paid(local(world.a, day, "10:00"))
    missing = admin.post(BLACKOUTS, data=form(admin, typed(day, "09:00", "12:00")))
    html = missing.get_data(as_text=True)
    assert missing.status_code == 422
    assert "hits 1 confirmed lesson: choose to keep or cancel it." in html and hit_ids(html) == [lesson]
    assert f'value="{day.isoformat()}T09:00"' in html  # nothing typed is lost
    # The preview showed no lesson (say, it was booked meanwhile): cancelling is refused and the list shown again.
    changed = admin.post(BLACKOUTS, data=form(admin, typed(day, "09:00", "12:00", lessons="cancel"), lessons=[]))
    assert changed.status_code == 409
    assert "changed since the preview" in changed.get_data(as_text=True)
    assert hit_ids(changed.get_data(as_text=True)) == [lesson]
    assert blackout_rows(app, world.a.id) == [] and booking(app, lesson).status == "confirmed"


@pytest.mark.parametrize("starts,ends,field,message", [
    ("2026-13-40T10:00", None, "starts", "Dates and times look like"),
    ("9999-12-31T10:00", None, "starts", "out of range"),
    (None, "1999-01-01T10:00", "ends", "out of range"),
    ("12:00", "11:00", "ends", "must end after it starts"),
    ("", None, "starts", "Pick when the blackout starts"),
])
def test_malformed_or_out_of_range_times_are_field_errors(app, admin, world, day, starts, ends, field, message):
    data = typed(day, "10:00", "11:00")
    for key, value in (("starts", starts), ("ends", ends)):
        if value is not None:
            data[key] = value if len(value) != 5 else f"{day.isoformat()}T{value}"
    for url in (BLACKOUTS, f"{BLACKOUTS}/preview"):
        response = admin.post(url, data=form(admin, data))
        html = response.get_data(as_text=True)
        assert response.status_code == 422, html
        assert message in html and f'id="blackout-{field}-error"' in html
        assert f'name="{field}" id="blackout-{field}" value="{data[field]}"' in html
    assert blackout_rows(app, world.a.id) == []


def test_an_ended_blackout_or_no_reason_is_refused(app, admin, world):
    yesterday = days_ahead(world.a, -1)
    past = admin.post(BLACKOUTS, data=form(admin, typed(yesterday, "10:00", "11:00")))
    assert past.status_code == 422 and "would be over already" in past.get_data(as_text=True)
    no_reason = admin.post(BLACKOUTS, data=form(admin, typed(days_ahead(world.a, 3), "10:00", "11:00", reason=" ")))
    assert no_reason.status_code == 422 and "Say why" in no_reason.get_data(as_text=True)
    assert blackout_rows(app, world.a.id) == []


def _next_clock_change(tz, forward: bool):
    """The next studio-local day whose UTC offset grows (forward) or shrinks, after today."""
    day = utcnow().astimezone(tz).date() + timedelta(days=1)
    while True:
        before = datetime.combine(day, time(0), tz).utcoffset()
        after = datetime.combine(day + timedelta(days=1), time(0), tz).utcoffset()
        if (after > before) if forward else (after < before):
            return day
        day += timedelta(days=1)


def test_typed_times_on_clock_changes_are_explained_and_converted(app, admin, world):
    tz = world.a.tz
    spring = _next_clock_change(tz, forward=True)
    response = admin.post(f"{BLACKOUTS}/preview", data=form(admin, typed(spring, "02:30", "04:00")), headers=HTMX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "2:30 AM on" in html and "does not exist: the clocks go forward over it" in html
    admin.post(BLACKOUTS, data=form(admin, typed(spring, "02:30", "04:00")))
    [saved] = blackout_rows(app, world.a.id)
    assert saved.starts_at.astimezone(tz).strftime("%H:%M") == "03:00"  # the moment the clocks jump
    assert saved.ends_at - saved.starts_at == timedelta(hours=1)

    autumn = _next_clock_change(tz, forward=False)
    response = admin.post(f"{BLACKOUTS}/preview", data=form(admin, typed(autumn, "01:30", "01:45")), headers=HTMX)
    html = response.get_data(as_text=True)
    assert "happens twice" in html and "at the first one" in html and "at the second one" in html
    admin.post(BLACKOUTS, data=form(admin, typed(autumn, "01:30", "01:45")))
    fall = blackout_rows(app, world.a.id)[-1]
    assert fall.ends_at - fall.starts_at == timedelta(hours=1, minutes=15)  # covers the repeated hour
    assert fall.starts_at.astimezone(tz).utcoffset() != fall.ends_at.astimezone(tz).utcoffset()


def test_the_list_puts_upcoming_first_and_folds_the_past_and_delete_reopens(app, admin, client, world, day):
    with within(app):
        studio = db.session.get(Studio, world.a.id)
        now = utcnow()
        make_blackout(studio, now - timedelta(days=3), now - timedelta(days=2))
    assert admin.post(BLACKOUTS, data=form(admin, typed(day, "09:00", "18:00", reason="Tuning day"))
                      ).status_code == 303
    assert not slot_times(client, world, day)
    page = admin.get(BLACKOUTS).get_data(as_text=True)
    upcoming, _, past = page.partition('<details id="past-blackouts">')
    assert "Tuning day" in upcoming and "Past blackouts (1)" in past and "Tuning day" not in past
    [_old, new] = blackout_rows(app, world.a.id)
    version = calendar_version(app, world.a.id)

    deleted = admin.post(f"{BLACKOUTS}/{new.id}/delete", data={"csrf_token": admin.csrf})
    assert deleted.status_code == 303
    assert [b.id for b in blackout_rows(app, world.a.id)] == [_old.id]
    assert calendar_version(app, world.a.id) == version + 1
    [entry] = audit_rows(app, "blackout.delete")
    assert entry.before["reason"] == "Tuning day" and entry.target_id == new.id
    assert slot_times(client, world, day)[0] == "09:00"
    again = admin.post(f"{BLACKOUTS}/{new.id}/delete", data={"csrf_token": admin.csrf}, follow_redirects=True)
    assert "already deleted" in again.get_data(as_text=True)


def test_a_blackout_saved_outside_any_lesson_needs_no_choice(app, admin, world, day):
    version = calendar_version(app, world.a.id)
    response = admin.post(BLACKOUTS, data=form(admin, typed(day, "09:00", "10:00", resource="drums")),
                          follow_redirects=True)
    assert response.status_code == 200 and "Blackout saved." in response.get_data(as_text=True)
    [row] = blackout_rows(app, world.a.id)
    assert row.starts_at == local(world.a, day, "09:00").astimezone(timezone.utc)
    assert calendar_version(app, world.a.id) == version + 1
    [entry] = audit_rows(app, "blackout.create")
    assert entry.after["resource"] == "drums" and entry.after["lessons"] == "none"
