"""Paying for a lesson end to end: the browser, the live app on PostgreSQL with its jobs on Redis, a real
`python -m worker` process, and the Stripe stand-in's hosted Checkout page and signed webhooks.

    browser ──POST /bookings──▶ app ──create session──▶ stand-in ◀── browser clicks Pay / Cancel
    stand-in ──signed webhook──▶ app /webhooks/stripe ──RQ (Redis)──▶ worker ──retrieve session──▶ stand-in
    browser (success URL, htmx polling every 2 s) ◀── app ◀── PostgreSQL ◀── worker
"""
from __future__ import annotations

import re
from datetime import datetime

import pytest
from playwright.sync_api import Page, expect

from portal.models import BookingStatus, EventStatus, PaymentStatus
from tests.browser.helpers import (
    PORTAL_PRICE,
    SLOT_BUTTON,
    STUDIO,
    booking_for_session,
    booking_row,
    lesson_day,
    log_in,
    on_checkout_page,
    open_package,
    session_events,
    show_piano_times_on,
    slot_start,
    wait_for,
)
from tests.payments.helpers import control

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]

CONFIRM_TIMEOUT_MS = 15_000  # webhook delivery + worker + the page's next 2-second poll, with room to spare


@pytest.fixture
def live_extra_env(redis_live_env):
    return redis_live_env


def hold_a_slot(page: Page, standin_base: str) -> tuple[str, str]:
    """Log in, pick the first free piano time on the lesson day; returns (its start, the Checkout session id)."""
    log_in(page)
    open_package(page)
    show_piano_times_on(page, lesson_day())
    slot = page.locator(SLOT_BUTTON).first
    start = slot_start(slot)
    slot.click()
    return start, on_checkout_page(page, standin_base)


def offered_times(page: Page, live_server: str) -> str:
    """The piano times on the lesson day as the student (the browser's cookies) sees them now: the #slots HTML."""
    response = page.request.get(f"{live_server}{STUDIO}/packages/lesson-60",
                                params={"resource": "piano", "date": lesson_day().isoformat()},
                                headers={"HX-Request": "true"})
    try:
        assert response.ok, response.status
        return response.text()
    finally:
        response.dispose()


def processed(app, session_id: str, event_type: str) -> list[dict]:
    """Wait (up to 10 s) until the stored `event_type` events of this session are all processed; returns them."""
    return wait_for(lambda: session_events(app, session_id, event_type),
                    lambda events: events and all(e["status"] == EventStatus.PROCESSED for e in events))


def test_student_pays_and_the_worker_confirms_the_booking(page: Page, live_app, live_server, stripe_standin,
                                                          worker):
    start, session_id = hold_a_slot(page, stripe_standin.base_url)
    held = booking_for_session(live_app, session_id)
    assert (held["status"], held["payment_status"]) == (BookingStatus.HELD, PaymentStatus.PENDING)
    assert held["start_at"] == datetime.fromisoformat(start)

    page.get_by_role("button", name=re.compile(r"^Pay 65\.00 USD$")).click()

    # Stripe sends the student back to the success URL, on the portal, with the session id filled in.
    page.wait_for_url(re.compile(rf"^{re.escape(live_server + STUDIO)}/bookings/{held['id']}"
                                 rf"\?paid=1&session_id={session_id}$"))
    status = page.locator("#booking-status")
    badge = status.locator(".badge")
    expect(badge).to_have_text(re.compile(r"^(Held|Confirmed)$"))
    # One atomic read: the next poll may swap the section at any moment.
    first = status.evaluate("el => ({badge: el.querySelector('.badge').textContent.trim(), text: el.innerText,"
                            " trigger: el.getAttribute('hx-trigger'), links: el.querySelectorAll('a').length})")
    if first["badge"] == "Held":  # the webhook has not been processed yet: the page says so, and polls
        assert "Confirming your booking…" in first["text"], first
        assert first["trigger"] == "every 2s" and first["links"] == 0, first
    else:
        assert "You're booked" in first["text"], first
    marker = page.evaluate("() => (window.__sameDocument = 'yes')")

    expect(badge).to_have_text("Confirmed", timeout=CONFIRM_TIMEOUT_MS)
    expect(status).to_contain_text(f"You're booked. Paid {PORTAL_PRICE}.")
    expect(status).not_to_have_attribute("hx-trigger", "every 2s")  # done: no more polling
    assert page.evaluate("() => window.__sameDocument") == marker, "the page reloaded instead of polling in place"

    row = booking_row(live_app, held["id"])
    assert (row["status"], row["payment_status"]) == (BookingStatus.CONFIRMED, PaymentStatus.PAID)
    assert row["amount_received"] == 6500

    # The webhook came through the stand-in's signed delivery, was stored, and the worker processed it.
    events = processed(live_app, session_id, "checkout.session.completed")
    assert [e["status"] for e in events] == [EventStatus.PROCESSED], events
    assert events[0]["attempts"] == 1 and events[0]["last_error"] == ""
    deliveries = control(stripe_standin, "deliveries")["data"]
    assert any(d["event_id"] == events[0]["provider_event_id"] and d["status"] == 200
               and d["url"] == f"{live_server}/webhooks/stripe" for d in deliveries), deliveries

    page.reload()
    expect(badge).to_have_text("Confirmed")


def test_student_cancels_on_checkout_and_the_time_is_released(page: Page, live_app, live_server, stripe_standin,
                                                              worker):
    start, session_id = hold_a_slot(page, stripe_standin.base_url)
    held = booking_for_session(live_app, session_id)
    assert held["status"] == BookingStatus.HELD
    assert f'value="{start}"' not in offered_times(page, live_server), "a held time is still offered"

    page.get_by_role("button", name="Cancel and return").click()

    page.wait_for_url(f"{live_server}{STUDIO}/bookings/{held['id']}/checkout-cancelled?session_id=*")
    expect(page.get_by_role("heading", level=1)).to_have_text("Payment cancelled")
    expect(page.locator("main")).to_contain_text("we released your time so others can book it")
    row = booking_row(live_app, held["id"])
    assert (row["status"], row["payment_status"]) == (BookingStatus.EXPIRED, PaymentStatus.EXPIRED)

    # The time is offered again, on the day and room the cancelled page links back to.
    page.get_by_role("link", name="Pick a time again").click()
    page.wait_for_url(re.compile(rf"{re.escape(STUDIO)}/packages/lesson-60\?"))
    expect(page.locator("#slots-heading")).to_contain_text("Piano room")
    expect(page.locator(f"#slots input[name='start'][value='{start}']")).to_have_count(1)

    # The portal expired the Checkout Session too: Stripe's page no longer takes a payment for it...
    page.goto(held["checkout_url"])
    expect(page.locator("#status")).to_have_attribute("data-status", "expired")
    expect(page.get_by_role("button", name=re.compile("^Pay"))).to_have_count(0)
    # ...and the worker processed the resulting webhook without changing anything.
    events = processed(live_app, session_id, "checkout.session.expired")
    assert [e["status"] for e in events] == [EventStatus.PROCESSED], events
    assert booking_row(live_app, held["id"])["status"] == BookingStatus.EXPIRED
