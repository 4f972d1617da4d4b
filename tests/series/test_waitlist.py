"""The waitlist: a freed time is offered to the first student waiting, once, for the studio's offer time; an
unclaimed offer lapses and passes to the next; claiming it opens Checkout and paying books the slot."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, NotificationLog, Role, Studio, User, WaitlistEntry, WaitlistStatus
from portal.payments import get_provider
from portal.services import audit, bookings, waitlist
from portal.services.errors import Conflict, InvalidInput
from portal.services.states import booking as booking_states
from tests.factories import make_studio, make_user, next_weekday
from tests.payments.helpers import deliver, drain, pay

NY = ZoneInfo("America/New_York")


@pytest.fixture
def setup(app):
    with app.app_context():
        # One 60-minute lesson a day fits: 10:00-11:00.
        studio = make_studio(buffer_minutes=0, hours=("10:00", "11:00"), waitlist_offer_minutes=90)
        people = {n: make_user(f"{n}@example.com", roles=[(studio, Role.STUDENT)]) for n in ("alice", "bob", "carol")}
        return SimpleNamespace(id=studio.id, ids={n: u.id for n, u in people.items()})


def _scoped(app, setup):
    context = app.app_context()
    context.push()
    scope = tenancy.scoped(setup.id)
    scope.__enter__()
    return lambda: (scope.__exit__(None, None, None), context.pop())


def _join(setup, name, day, now):
    student = db.session.get(User, setup.ids[name])
    return waitlist.join(studio=db.session.get(Studio, setup.id), student=student, package_slug="lesson-60",
                         resource_slug="piano", from_raw=datetime.combine(day, time(9), NY).isoformat(),
                         to_raw=datetime.combine(day, time(12), NY).isoformat(), now=now).id


def test_an_offer_goes_to_the_first_waiting_student_once_lapses_and_passes_on(app, client, setup, stripe_standin):
    close = _scoped(app, setup)
    try:
        now = utcnow()
        day = next_weekday(2, after_days=3)
        lesson = datetime.combine(day, time(10), NY)
        alice_hold = bookings.hold_slot(studio=db.session.get(Studio, setup.id),
                                        student=db.session.get(User, setup.ids["alice"]), package_slug="lesson-60",
                                        resource_slug="piano", start_raw=lesson.isoformat(), now=now)
        bob_entry, carol_entry = _join(setup, "bob", day, now), _join(setup, "carol", day, now)
        assert waitlist.sweep(now=now) == {"lapsed": 0, "offered": 0}  # the day is full

        booking_states.release(alice_hold.id, now=now, actor=audit.SYSTEM, note="given up")
        db.session.commit()
        assert waitlist.sweep(now=now) == {"lapsed": 0, "offered": 1}
        assert waitlist.sweep(now=now)["offered"] == 0  # Carol waits: the only time is held for Bob
        bob = db.session.get(WaitlistEntry, bob_entry)
        assert bob.status == WaitlistStatus.OFFERED and bob.offer_expires_at == now + timedelta(minutes=90)
        offered = db.session.get(Booking, bob.offer_booking_id)
        assert (offered.student_id, offered.status, offered.start_at) == (setup.ids["bob"], BookingStatus.HELD,
                                                                         lesson)
        db.session.commit()  # end this read: the job writes its log row (SQLite has one writer)
        drain(app)
        emails = db.session.scalars(select(NotificationLog).where(NotificationLog.kind == "waitlist_offer")).all()
        assert [(e.key, e.recipient, e.status) for e in emails] == [
            (waitlist.offer_key(bob_entry), "bob@example.com", "sent")]

        later = now + timedelta(minutes=91)
        with pytest.raises(Conflict):  # too late for Bob
            waitlist.claim(entry_id=bob_entry, student=db.session.get(User, setup.ids["bob"]),
                           provider=get_provider(), success_url="http://t/ok", cancel_url="http://t/no", now=later)
        db.session.rollback()
        assert waitlist.sweep(now=later) == {"lapsed": 1, "offered": 1}
        assert db.session.get(WaitlistEntry, bob_entry).status == WaitlistStatus.EXPIRED
        assert db.session.get(Booking, offered.id).status == BookingStatus.EXPIRED
        carol = db.session.get(WaitlistEntry, carol_entry)
        assert carol.status == WaitlistStatus.OFFERED

        payment = waitlist.claim(entry_id=carol_entry, student=db.session.get(User, setup.ids["carol"]),
                                 provider=get_provider(), success_url="http://t/ok", cancel_url="http://t/no",
                                 now=later)
        assert db.session.get(WaitlistEntry, carol_entry).status == WaitlistStatus.CLAIMED
        session_id, carol_booking = payment.checkout_session_id, carol.offer_booking_id
        assert db.session.get(Booking, carol_booking).hold_expires_at >= later + timedelta(minutes=30)
    finally:
        close()
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    with app.app_context(), tenancy.scoped(setup.id):
        assert db.session.get(Booking, carol_booking).status == BookingStatus.CONFIRMED
        assert db.session.scalar(select(func.count(NotificationLog.id)).where(
            NotificationLog.kind == "waitlist_offer")) == 2  # Bob once, Carol once


def test_joining_needs_a_sensible_window(app, setup):
    close = _scoped(app, setup)
    try:
        now = utcnow()
        student, studio = db.session.get(User, setup.ids["bob"]), db.session.get(Studio, setup.id)
        day = next_weekday(2, after_days=3)
        for start, end, code in ((time(12), time(9), "window_invalid"), (time(9), None, "window_too_long")):
            to = datetime.combine(day + timedelta(days=20), time(9), NY) if end is None else \
                datetime.combine(day, end, NY)
            with pytest.raises(InvalidInput) as refused:
                waitlist.join(studio=studio, student=student, package_slug="lesson-60", resource_slug="piano",
                              from_raw=datetime.combine(day, start, NY).isoformat(), to_raw=to.isoformat(), now=now)
            assert refused.value.code == code
        assert db.session.scalar(select(func.count(WaitlistEntry.id))) == 0
    finally:
        close()


def test_the_waitlist_pages(client, auth, setup):
    from tests.conftest import csrf_token_from
    from tests.factories import PASSWORD

    auth.login("bob@example.com", PASSWORD)
    day = next_weekday(2, after_days=3)
    page = client.get(f"/s/melody-and-meter/packages/lesson-60?resource=piano&date={day.isoformat()}")
    html = page.get_data(True)
    assert 'id="waitlist-form"' in html
    joined = client.post("/s/melody-and-meter/waitlist", data={
        "csrf_token": csrf_token_from(html), "package": "lesson-60", "resource": "piano", "date": day.isoformat(),
        "from": "09:00", "to": "12:00"})
    assert joined.status_code == 303
    listed = client.get("/s/melody-and-meter/waitlist").get_data(True)
    assert "Waiting" in listed and "Leave the waitlist" in listed
    bad = client.post("/s/melody-and-meter/waitlist", data={
        "csrf_token": csrf_token_from(html), "package": "lesson-60", "resource": "piano", "date": "nope"})
    assert bad.status_code == 422
