"""A student moves one paid lesson and cancels another, in a real browser, on the demo data and PostgreSQL.

Lesson A is paid the real way (slot → the Stripe stand-in's hosted page → Pay → back on the booking page until
"You're booked"); lesson B, faster, through the services, the stand-in's control API and its signed webhooks to
the live server. Jobs (webhooks, the refund) run in-process in the live app.

B is a late cancellation when the clock allows one (a piano time between now+2 h and now+23 h: the demo policy's
cancel window is 24 h, the fee 50%); otherwise it is 25 h or more ahead and the refund is full. Every expectation
is computed from the time chosen, so the test is deterministic either way.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import formatting, tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, PaymentStatus, RefundStatus, Studio, User
from tests.browser.helpers import (
    PORTAL_PRICE,
    SLOT_BUTTON,
    STUDENT,
    STUDIO,
    assert_fits_phone_width,
    booking_for_session,
    lesson_day,
    log_in,
    on_checkout_page,
    open_package,
    show_piano_times_on,
    slot_start,
    wait_for,
)
from tests.payments.helpers import pay

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

STUDIO_SLUG = "melody-and-meter"
STUDIO_TZ = ZoneInfo("America/New_York")
PRICE_MINOR = 6500  # the demo's 60-minute lesson
CANCEL_WINDOW = timedelta(hours=24)  # the demo policy (the studio's defaults)
LATE_FEE_PERCENT = 50
#: Lesson B's start, relative to now, for a late cancel: the studio's notice is 2 h (plus a margin for the
#: seconds between choosing the time and holding it); 23 h leaves an hour for the test to run inside the window.
LATE_RANGE = (timedelta(hours=2, minutes=15), timedelta(hours=23))
FULL_REFUND_AFTER = timedelta(hours=25)
CONFIRM_TIMEOUT_MS = 15_000  # webhook delivery + the in-process job + the booking page's 2-second poll


# --- money and time, computed here rather than by the code under test ----------------------------------------

def dollars(minor: int) -> str:
    return f"${minor // 100:,}.{minor % 100:02d}"


def late_fee(paid_minor: int) -> int:
    """50% of what was paid, in whole cents, half up."""
    return min(paid_minor, (paid_minor * LATE_FEE_PERCENT + 50) // 100)


def when_text(instant: datetime) -> str:
    """How the portal shows an instant: `Wed, Nov 25, 2026, 9:00 AM EST` (studio-local, the studio's locale)."""
    return formatting.when(instant, STUDIO_TZ, "en_US")


# --- making paid lessons -----------------------------------------------------------------------------------

def pay_for_a_lesson_in_browser(page: Page, app, standin_base: str, day: date) -> int:
    """Log in, pick the first free piano time on `day`, pay on the stand-in's page, wait for "You're booked"."""
    log_in(page)
    open_package(page)
    show_piano_times_on(page, day)
    page.locator(SLOT_BUTTON).first.click()
    session_id = on_checkout_page(page, standin_base)
    page.get_by_role("button", name=re.compile(r"^Pay 65\.00 USD$")).click()
    page.wait_for_url(re.compile(rf"{re.escape(STUDIO)}/bookings/\d+\?paid=1&session_id={session_id}$"))
    status = page.locator("#booking-status")
    expect(status.locator(".badge")).to_have_text("Confirmed", timeout=CONFIRM_TIMEOUT_MS)
    expect(status).to_contain_text(f"You're booked. Paid {PORTAL_PRICE}.")
    return booking_for_session(app, session_id)["id"]


def choose_lesson_b(app, now: datetime) -> tuple[datetime, bool]:
    """A free piano start for lesson B and whether cancelling it (within the next hour) is late.

    Late when some start lies between now+2h15 and now+23h (tomorrow preferred, else later today); otherwise the
    first start at least 25 h ahead, whose cancellation is a full refund.
    """
    from portal.services import availability

    with app.app_context():
        with tenancy.all_tenants():
            studio = db.session.scalar(select(Studio).where(Studio.slug == STUDIO_SLUG))
            studio_id = studio.id
        with tenancy.scoped(studio_id):
            studio = db.session.get(Studio, studio_id)
            offer = availability.find_offer(studio, "lesson-60", "piano")
            today = now.astimezone(studio.tz).date()
            free = availability.free_slots(studio, offer, today, today + timedelta(days=10), now)
        db.session.remove()
    tomorrow = today + timedelta(days=1)
    late = [s for day in (tomorrow, today) for s in free.get(day, [])
            if LATE_RANGE[0] <= s - now <= LATE_RANGE[1]]
    if late:
        return late[0].astimezone(timezone.utc), True
    later = sorted(s for starts in free.values() for s in starts if s - now >= FULL_REFUND_AFTER)
    assert later, f"no free piano time at least 25 hours ahead: {free}"
    return later[0].astimezone(timezone.utc), False


def paid_lesson(app, standin, live_server: str, start: datetime) -> int:
    """A confirmed, paid piano lesson for the demo student at `start`, as `tests/lessons/conftest.py` makes one,
    except that the stand-in delivers its signed webhook to the live server and the live app's jobs confirm it."""
    from portal.payments import get_provider
    from portal.services import bookings, checkout

    with app.app_context():
        with tenancy.all_tenants():
            studio_id = db.session.scalar(select(Studio.id).where(Studio.slug == STUDIO_SLUG))
        with tenancy.scoped(studio_id):
            studio = db.session.get(Studio, studio_id)
            student = db.session.scalar(select(User).where(User.email == STUDENT[0]))
            now = utcnow()
            hold = bookings.hold_slot(studio=studio, student=student, package_slug="lesson-60",
                                      resource_slug="piano", start_raw=start.isoformat(), now=now)
            payment = checkout.start_checkout(
                booking=hold, student=student, provider=get_provider(), now=now,
                success_url=f"{live_server}{STUDIO}/bookings/{hold.id}?paid=1&session_id={{CHECKOUT_SESSION_ID}}",
                cancel_url=f"{live_server}{STUDIO}/bookings/{hold.id}/checkout-cancelled")
            booking_id, session_id = hold.id, payment.checkout_session_id
        db.session.remove()
    pay(standin, session_id)
    state = wait_for(lambda: lesson_state(app, booking_id), lambda s: s.status == BookingStatus.CONFIRMED)
    assert (state.status, state.payment_status, state.start_at) == (
        BookingStatus.CONFIRMED, PaymentStatus.PAID, start), state
    return booking_id


def lesson_state(app, booking_id: int) -> SimpleNamespace:
    """What the database says about a lesson and its payment, read outside any request."""
    with app.app_context(), tenancy.all_tenants():
        booking = db.session.scalar(select(Booking).where(Booking.id == booking_id))
        assert booking is not None, f"booking {booking_id} is not in the database"
        payment = booking.payment
        state = SimpleNamespace(
            status=booking.status, start_at=booking.start_at, resource=booking.resource.slug,
            reschedule_count=booking.reschedule_count, penalty_reason=booking.penalty_reason,
            cancelled_at=booking.cancelled_at,
            payment_status=payment.status if payment else None,
            received=payment.amount_received_minor if payment else None,
            refunded=payment.amount_refunded_minor if payment else None,
            refunds=[(r.amount_minor, r.status) for r in payment.refunds] if payment else [])
        db.session.remove()
        return state


# --- pages ---------------------------------------------------------------------------------------------------

def open_my_lessons(page: Page) -> None:
    page.get_by_role("navigation", name="Account").get_by_role("link", name="My lessons").click()
    page.wait_for_url(f"**{STUDIO}/lessons")
    expect(page.get_by_role("heading", level=1)).to_have_text("My lessons")


# --- the test ------------------------------------------------------------------------------------------------

def test_student_moves_one_paid_lesson_and_cancels_another(page: Page, live_app, live_server, stripe_standin):
    a_id = pay_for_a_lesson_in_browser(page, live_app, stripe_standin.base_url, lesson_day())
    a_before = lesson_state(live_app, a_id)
    assert (a_before.status, a_before.payment_status, a_before.reschedule_count) == (
        BookingStatus.CONFIRMED, PaymentStatus.PAID, 0)

    b_start, late = choose_lesson_b(live_app, utcnow())
    b_id = paid_lesson(live_app, stripe_standin, live_server, b_start)
    refund_minor = PRICE_MINOR - late_fee(PRICE_MINOR) if late else PRICE_MINOR
    refund_text = dollars(refund_minor)
    assert refund_text == ("$32.50" if late else PORTAL_PRICE)

    # --- My lessons: both upcoming, soonest first, with what the policy allows for each.
    open_my_lessons(page)
    row_a, row_b = page.locator(f"#lesson-{a_id}"), page.locator(f"#lesson-{b_id}")
    expect(page.locator("ul.lesson-list").first.locator("li.lesson")).to_have_count(2)
    expect(row_a.locator(".badge")).to_have_text("Confirmed")
    expect(row_b.locator(".badge")).to_have_text("Confirmed")
    expect(row_a.get_by_role("heading", level=3)).to_have_text(when_text(a_before.start_at))
    expect(row_b.get_by_role("heading", level=3)).to_have_text(when_text(b_start))
    expect(row_a).to_contain_text(f"Paid {PORTAL_PRICE}")
    if late:
        expect(row_b).to_contain_text("Reschedule: Rescheduling closes 24 hours before the lesson.")
        expect(row_b.get_by_role("link", name="Reschedule")).to_have_count(0)
        expect(row_b).to_contain_text(f"Late now: refund {refund_text}")
    else:
        expect(row_b.get_by_role("link", name="Reschedule")).to_be_visible()
        expect(row_b).to_contain_text("Full refund")
    assert_fits_phone_width(page, "My lessons (two upcoming lessons)")

    # --- Move A: the picker opens on its day, without its own time; another day comes in through htmx.
    row_a.get_by_role("link", name="Reschedule").click()
    page.wait_for_url(f"**{STUDIO}/bookings/{a_id}/reschedule")
    expect(page.get_by_role("heading", level=1)).to_have_text("Move your lesson")
    expect(page.locator("main")).to_contain_text(f"now on {when_text(a_before.start_at)}")
    heading = page.locator("#slots-heading")
    expect(heading).to_contain_text(f"Free times on {formatting.day(lesson_day())}")
    expect(heading).to_contain_text("Piano room")
    expect(page.locator(SLOT_BUTTON).first).to_be_visible()
    assert a_before.start_at.isoformat() not in [datetime.fromisoformat(v).astimezone(timezone.utc).isoformat()
                                                 for v in page.locator("#slots input[name='start']")
                                                 .evaluate_all("els => els.map(e => e.value)")]

    new_day = lesson_day() + timedelta(days=1)  # a Thursday: the piano room is open 09:00-18:00
    marker = page.evaluate("() => (window.__sameDocument = (window.__sameDocument || 0) + 1)")
    first_before = slot_start(page.locator(SLOT_BUTTON).first)
    page.locator("#date").fill(new_day.isoformat())
    expect(heading).to_contain_text(f"Free times on {formatting.day(new_day)}")
    expect(page).to_have_url(re.compile(rf"{re.escape(STUDIO)}/bookings/{a_id}/reschedule\?"
                                        rf"(?=.*resource=piano)(?=.*date={new_day.isoformat()})"))
    expect(page.locator(SLOT_BUTTON).first).to_be_visible()
    assert page.evaluate("() => window.__sameDocument") == marker, "changing the date reloaded the page"
    starts = [datetime.fromisoformat(v) for v in
              page.locator("#slots input[name='start']").evaluate_all("els => els.map(e => e.value)")]
    assert starts and all(s.astimezone(STUDIO_TZ).date() == new_day for s in starts), starts
    assert slot_start(page.locator(SLOT_BUTTON).first) != first_before

    target = page.locator(SLOT_BUTTON).nth(2)
    new_start = datetime.fromisoformat(slot_start(target)).astimezone(timezone.utc)
    target.click()

    # --- A's booking page: moved, same payment, counted.
    page.wait_for_url(re.compile(rf"{re.escape(live_server + STUDIO)}/bookings/{a_id}$"))
    expect(page.locator("main .alert-success", has_text="Your lesson was moved")).to_be_visible()
    article = page.locator("#booking")
    expect(article.locator("#booking-status .badge")).to_have_text("Confirmed")
    facts = article.locator("dl.facts")
    expect(facts.locator("dt:has-text('When') + dd")).to_contain_text(when_text(new_start))
    expect(facts.locator("dt:has-text('Moved') + dd")).to_have_text("1 time")
    a_after = lesson_state(live_app, a_id)
    assert (a_after.status, a_after.start_at, a_after.reschedule_count, a_after.resource) == (
        BookingStatus.CONFIRMED, new_start, 1, "piano"), a_after
    assert (a_after.payment_status, a_after.refunded, a_after.refunds) == (PaymentStatus.PAID, 0, []), a_after

    # --- Cancel B: the confirmation page states the refund the policy gives.
    open_my_lessons(page)
    expect(row_a.get_by_role("heading", level=3)).to_have_text(when_text(new_start))
    row_b.get_by_role("link", name="Cancel").click()
    page.wait_for_url(f"**{STUDIO}/bookings/{b_id}/cancel")
    expect(page.get_by_role("heading", level=1)).to_have_text("Cancel your lesson?")
    expect(page.locator("main")).to_contain_text(when_text(b_start))
    expect(page.locator("#refund-amount")).to_have_text(refund_text)
    if late:
        warning = page.locator("main .alert-warning")
        expect(warning).to_contain_text("Cancelling within 24 hours of the lesson is a late cancellation: "
                                        "a 50% fee applies.")
        expect(warning).to_contain_text(f"You paid {PORTAL_PRICE}; the fee is {dollars(late_fee(PRICE_MINOR))}, "
                                        f"so you will get {refund_text} back.")
    else:
        expect(page.locator("main .alert-info")).to_contain_text(f"You will get a full refund of {refund_text}.")
    page.get_by_role("button", name="Cancel this lesson").click()

    # --- B's booking page: cancelled at once, refunded once the refund job has run.
    page.wait_for_url(re.compile(rf"{re.escape(live_server + STUDIO)}/bookings/{b_id}$"))
    expect(page.locator("main .alert-success", has_text="Your lesson was cancelled")).to_be_visible()
    status = page.locator("#booking-status")
    expect(status.locator(".badge")).to_have_text("Cancelled")
    expect(status).to_contain_text("This lesson was cancelled late." if late else "This lesson was cancelled.")
    refunded_note = (f"Paid {PORTAL_PRICE} · {refund_text} refunded." if late
                     else f"Paid {PORTAL_PRICE} · refunded in full.")
    for _ in range(20):  # the page does not poll: reload until the refund is recorded (~10 s at most)
        if refunded_note in status.inner_text():
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(status).to_contain_text(refunded_note)
    expect(status).not_to_contain_text("on its way")

    b_after = wait_for(lambda: lesson_state(live_app, b_id),
                       lambda s: s.payment_status != PaymentStatus.PAID)
    assert b_after.status == BookingStatus.CANCELLED, b_after
    assert b_after.start_at == b_start and b_after.cancelled_at is not None, b_after
    assert b_after.penalty_reason == ("late_cancel" if late else None), b_after
    assert b_after.payment_status == (PaymentStatus.PARTIALLY_REFUNDED if late else PaymentStatus.REFUNDED), b_after
    assert (b_after.received, b_after.refunded) == (PRICE_MINOR, refund_minor), b_after
    assert b_after.refunds == [(refund_minor, RefundStatus.SUCCEEDED)], b_after
    assert lesson_state(live_app, a_id).status == BookingStatus.CONFIRMED  # A untouched by B's cancellation

    # --- My lessons again: A upcoming at its new time, B under "Past and cancelled" with its refund.
    open_my_lessons(page)
    upcoming, past = page.locator("ul.lesson-list").nth(0), page.locator("ul.lesson-list").nth(1)
    expect(upcoming.locator("li.lesson")).to_have_count(1)
    expect(upcoming.locator(f"#lesson-{a_id}")).to_be_visible()
    expect(past.locator(f"#lesson-{b_id} .badge")).to_have_text("Cancelled")
    expect(past.locator(f"#lesson-{b_id}")).to_contain_text(refunded_note.rstrip("."))
    if late:
        expect(past.locator(f"#lesson-{b_id}")).to_contain_text("late cancellation")
    assert_fits_phone_width(page, "My lessons (one upcoming, one cancelled)")
