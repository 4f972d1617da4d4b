"""The admin home's figures on known data: today's and this week's lessons (studio-local days), utilisation per
resource, and what needs the admin. Dates come from the pinned clock, so the tests pass on any day."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select, update

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Blackout, Payment, PaymentStatus, Refund, RefundStatus, Resource, Studio
from portal.services import admin_home
from tests.admin.bookings_support import add_booking, local
from tests.admin.conftest import STUDIO

HOME = f"{STUDIO}/admin/"


def _today(world):
    return utcnow().astimezone(world.a.tz).date()


def _home(app, world, now=None):
    with app.app_context(), tenancy.scoped(world.a.id):
        studio = db.session.get(Studio, world.a.id)
        home = admin_home.home(studio, now or utcnow())
        return {"today": [b.id for b in home.today_lessons],
                "week": {day: [b.id for b in lessons] for day, lessons in home.week},
                "week_start": home.week_start,
                "utilisation": {u.resource.slug: (u.booked_minutes, u.capacity_minutes, u.percent)
                                for u in home.utilisation},
                "attention": [(a.kind, a.booking.id) for a in home.attention]}


def test_an_empty_studio_says_so(admin, world):
    html = admin.get(HOME).get_data(as_text=True)
    assert "No lessons today." in html and "No lessons this week." in html
    assert "Nothing needs your attention" in html
    assert re.search(r'data-resource="piano">.*?0 min.*?3360 min.*?0\.0%', html, re.S)


def test_today_this_week_and_utilisation_on_known_data(app, admin, world):
    today = _today(world)
    monday = today - timedelta(days=today.weekday())
    sunday = monday + timedelta(days=6)
    with app.app_context(), tenancy.scoped(world.a.id):
        db.session.execute(update(Resource).where(Resource.slug == "piano").values(capacity_minutes=400))
        db.session.commit()
    early = add_booking(app, world, local(world, today, "00:30"))                                  # piano, 60
    held = add_booking(app, world, local(world, today, "23:00"), status="held", resource="drums",
                       email="rival@example.com", hold_minutes=60)
    first_day = add_booking(app, world, local(world, monday, "10:00"), resource="drums", package="lesson-30")
    last_day = add_booking(app, world, local(world, sunday, "12:00"))                               # piano, 60
    cancelled = add_booking(app, world, local(world, monday + timedelta(days=2), "14:00"), status="cancelled")
    add_booking(app, world, local(world, monday - timedelta(days=1), "12:00"))                       # last week
    add_booking(app, world, local(world, sunday + timedelta(days=1), "10:00"))                       # next week
    add_booking(app, world, local(world, today, "06:00"), status="expired", resource="drums")      # not shown

    home = _home(app, world)
    assert home["week_start"] == monday
    expected_today = sorted({early, held} | ({first_day} if today == monday else set())
                            | ({last_day} if today == sunday else set())
                            | ({cancelled} if today == monday + timedelta(days=2) else set()))
    assert sorted(home["today"]) == expected_today
    assert sorted(i for ids in home["week"].values() for i in ids) == sorted(
        [early, held, first_day, last_day, cancelled])
    assert first_day in home["week"][monday] and last_day in home["week"][sunday]
    assert home["week"][today] == home["today"]  # in order of start: 00:30 first, 23:00 last
    assert home["week"][today][0] == early and home["week"][today][-1] == held
    # Confirmed minutes only: piano 60 + 60 of 400 × 7; drums 30 of 480 × 7 (the hold does not count).
    assert home["utilisation"]["piano"] == (120, 2800, "4.3%")
    assert home["utilisation"]["drums"] == (30, 3360, "0.9%")

    html = admin.get(HOME).get_data(as_text=True)
    assert re.search(r'data-resource="piano">.*?120 min.*?2800 min.*?4\.3%', html, re.S)
    assert re.search(r'data-resource="drums">.*?30 min.*?3360 min.*?0\.9%', html, re.S)
    today_table = html[html.index('id="today-lessons"'):html.index('id="utilisation"')]
    assert f"/admin/bookings/{early}" in today_table and f"/admin/bookings/{held}" in today_table
    assert "12:30 AM" in today_table and "held" in today_table and "Rival" in today_table
    week = html[html.index('id="week"'):]
    for booking_id in (first_day, last_day, cancelled):
        assert f"/admin/bookings/{booking_id}" in week


def _payment_with_refund(app, world, booking_id: int, *, status: RefundStatus, age: timedelta, error: str = ""):
    with app.app_context(), tenancy.scoped(world.a.id):
        now = utcnow()
        payment = Payment(studio_id=world.a.id, booking_id=booking_id, checkout_session_id=f"cs_test_{booking_id}",
                          amount_minor=6500, currency="usd", amount_received_minor=6500,
                          status=PaymentStatus.PAID, created_at=now - age, updated_at=now - age, paid_at=now - age)
        db.session.add(payment)
        db.session.flush()
        db.session.add(Refund(studio_id=world.a.id, payment_id=payment.id, purpose_key=f"test:{booking_id}",
                              amount_minor=2000, currency="usd", reason="requested_by_customer", status=status,
                              attempts=3 if status == RefundStatus.FAILED else 1, last_error=error,
                              created_at=now - age, updated_at=now - age))
        db.session.commit()


def test_what_needs_the_admin(app, admin, world):
    now = utcnow()
    day = _today(world) + timedelta(days=3)
    expiring = add_booking(app, world, local(world, day, "09:00"), status="held", hold_minutes=10)
    add_booking(app, world, local(world, day, "11:00"), status="held", hold_minutes=20, email="rival@example.com")
    failed = add_booking(app, world, local(world, day, "13:00"))
    _payment_with_refund(app, world, failed, status=RefundStatus.FAILED, age=timedelta(minutes=5),
                         error="card declined")
    stalled = add_booking(app, world, local(world, day, "15:00"))
    _payment_with_refund(app, world, stalled, status=RefundStatus.PENDING, age=timedelta(hours=2))
    fresh = add_booking(app, world, local(world, day, "16:00"))
    _payment_with_refund(app, world, fresh, status=RefundStatus.PENDING, age=timedelta(minutes=5))
    blackout_day = day + timedelta(days=1)
    hit = add_booking(app, world, local(world, blackout_day, "10:00"))
    add_booking(app, world, local(world, blackout_day, "10:00"), resource="drums")  # the blackout is the piano's
    add_booking(app, world, local(world, blackout_day, "12:00"), status="cancelled")
    studio_wide_hit = add_booking(app, world, local(world, blackout_day + timedelta(days=1), "17:00"),
                                  resource="drums")
    with app.app_context(), tenancy.scoped(world.a.id):
        piano = db.session.scalar(select(Resource.id).where(Resource.slug == "piano"))
        db.session.add_all([
            Blackout(studio_id=world.a.id, resource_id=piano, starts_at=local(world, blackout_day, "09:30"),
                     ends_at=local(world, blackout_day, "13:00"), reason="Piano tuning"),
            Blackout(studio_id=world.a.id, resource_id=None,
                     starts_at=local(world, blackout_day + timedelta(days=1), "17:30"),
                     ends_at=local(world, blackout_day + timedelta(days=2), "09:00"), reason="Closed"),
        ])
        db.session.commit()

    assert _home(app, world, now)["attention"] == [
        ("hold_expiring", expiring), ("refund_stalled", stalled), ("refund_failed", failed),
        ("blackout", hit), ("blackout", studio_wide_hit)]
    # Six minutes on, the second hold ends within a quarter of an hour too.
    later = [k for k in _home(app, world, now + timedelta(minutes=6))["attention"] if k[0] == "hold_expiring"]
    assert len(later) == 2

    html = admin.get(HOME).get_data(as_text=True)
    attention = html[html.index('id="attention"'):html.index('id="today"')]
    assert "card declined" in attention and "Piano tuning" in attention and "Closed" in attention
    for booking_id in (expiring, failed, stalled, hit, studio_wide_hit):
        assert f'href="{STUDIO}/admin/bookings/{booking_id}"' in attention
    assert f"/admin/bookings/{fresh}" not in attention
