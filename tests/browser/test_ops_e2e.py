"""Ops repairs a dead webhook in a real browser: a worker that cannot reach Stripe lets a payment's event die; once
Stripe is reachable again, ops finds the event on the console, replays it with a note, and the real RQ worker
confirms the booking; the repair is in the audit log. Checked at phone width too."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import tenancy
from portal.extensions import db
from portal.models import AuditEntry, BookingStatus, EventStatus
from tests.browser.conftest import stop_worker
from tests.browser.helpers import (
    SLOT_BUTTON,
    assert_fits_phone_width,
    booking_for_session,
    lesson_day,
    log_in,
    on_checkout_page,
    open_package,
    session_events,
    show_piano_times_on,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis]
OPS = ("ops@example.com", "demo-password-1")


@pytest.fixture
def live_extra_env(redis_live_env):
    return redis_live_env


def test_ops_replays_a_dead_event_and_the_booking_is_confirmed(page: Page, live_app, live_server, stripe_standin,
                                                               start_worker):
    broken = start_worker(STRIPE_API_BASE="http://127.0.0.1:1")  # this worker cannot reach Stripe
    log_in(page)
    open_package(page)
    show_piano_times_on(page, lesson_day())
    page.locator(SLOT_BUTTON).first.click()
    session_id = on_checkout_page(page, stripe_standin.base_url)
    page.get_by_role("button", name=re.compile(r"^Pay 65\.00 USD$")).click()
    booking = booking_for_session(live_app, session_id)
    events = wait_for(lambda: session_events(live_app, session_id, "checkout.session.completed"),
                      lambda found: found and found[0]["status"] == EventStatus.DEAD, timeout=30)
    assert events and events[0]["status"] == EventStatus.DEAD, events
    stop_worker(broken)
    start_worker()  # Stripe is reachable again

    page.get_by_role("button", name="Log out").click()
    page.goto("/login")
    page.get_by_label("Email").fill(OPS[0])
    page.get_by_label("Password").fill(OPS[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ops/")
    card = page.locator("#query-dead_events")
    expect(card.locator(".recon-count strong")).to_have_text("1")
    assert_fits_phone_width(page, "ops dashboard")
    card.get_by_role("link", name="Dead webhook events").click()
    item = page.locator(f"#item-{events[0]['id']}")
    expect(item).to_contain_text(events[0]["provider_event_id"])
    expect(item).to_contain_text("TransientProviderError")
    assert_fits_phone_width(page, "dead events")
    replay = item.locator("details.repair", has_text="Replay").first
    replay.locator("summary").click()
    replay.get_by_label("Note (why; goes in the audit log)").fill("Stripe was unreachable from the worker; fixed")
    replay.get_by_role("button", name="Replay").click()
    expect(page.locator(".alert-success")).to_contain_text("was queued again")

    confirmed = wait_for(lambda: booking_for_session(live_app, session_id),
                         lambda row: row["status"] == BookingStatus.CONFIRMED, timeout=20)
    assert confirmed["status"] == BookingStatus.CONFIRMED, confirmed
    page.goto("/ops/")
    expect(page.locator("#query-dead_events .recon-count strong")).to_have_text("0")
    with live_app.app_context(), tenancy.all_tenants():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "webhook_event.replay"))
        assert (entry.actor_label, entry.note) == (OPS[0], "Stripe was unreachable from the worker; fixed")
        assert entry.studio_id is not None
        db.session.remove()
    assert booking["id"] == confirmed["id"]


def log_in_as_ops(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(OPS[0])
    page.get_by_label("Password").fill(OPS[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ops/")


def test_ops_finds_a_paid_booking_by_each_reference_and_reads_its_story(page: Page, live_app, live_server,
                                                                       stripe_standin, start_worker):
    start_worker()
    log_in(page)
    open_package(page)
    show_piano_times_on(page, lesson_day())
    page.locator(SLOT_BUTTON).first.click()
    session_id = on_checkout_page(page, stripe_standin.base_url)
    page.get_by_role("button", name=re.compile(r"^Pay 65\.00 USD$")).click()
    booking = wait_for(lambda: booking_for_session(live_app, session_id),
                       lambda row: row["status"] == BookingStatus.CONFIRMED, timeout=20)
    assert booking["status"] == BookingStatus.CONFIRMED, booking
    page.get_by_role("button", name="Log out").click()
    log_in_as_ops(page)

    search = page.get_by_role("searchbox", name="Find a booking, payment or event")
    search.fill(f"#{booking['id']}")
    search.press("Enter")
    results = page.locator("#search-results")
    expect(results).to_contain_text(f"#{booking['id']}")
    assert_fits_phone_width(page, "ops search results")
    for reference, kind in (("student@example.com", "booking"), (session_id, "payment")):
        search = page.get_by_role("searchbox", name="Find a booking, payment or event")
        search.fill(reference)
        search.press("Enter")
        expect(page.locator("#search-results .badge").first).to_have_text(kind)
    page.locator("#search-results a").first.click()  # the payment leads to its booking's story
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Booking #{booking['id']}")
    expect(page.locator("#stripe-view")).to_contain_text("complete · paid")  # Stripe's own view, fetched live
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("checkout.session.completed")
    expect(timeline.locator("li[data-kind='payment']").first).to_contain_text("Payment received")
    assert_fits_phone_width(page, "ops booking drill-down")
    page.locator("li", has_text="checkout.session.completed").get_by_role("link", name=re.compile(r"^evt_")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("evt_")
    expect(page.locator("dl.facts")).to_contain_text("checkout.session.completed")
    expect(page.locator("dl.facts .badge")).to_have_text("processed")
    expect(page.locator("dl.facts")).to_contain_text(re.compile(r"E[SD]T"))  # the studio's time, not UTC
    assert_fits_phone_width(page, "ops event drill-down")


def test_ops_opens_a_studio_then_suspends_and_resumes_it(page: Page, live_app, live_server):
    log_in_as_ops(page)
    page.get_by_role("navigation", name="Ops console").get_by_role("link", name="Studios").click()
    form = page.locator("#new-studio")
    form.get_by_label("Name").fill("Harbour Harps")
    form.get_by_label("Address").fill("Harbour Harps")  # not an address
    form.get_by_label("Timezone").fill("Australia/Sydney")
    form.get_by_label("Currency").select_option("aud")
    form.get_by_label("Locale").fill("en_AU")
    form.get_by_label("First admin's email").fill("harps-admin@example.com")
    form.get_by_role("button", name="Open the studio and invite its admin").click()
    expect(page.locator("#error-slug")).to_contain_text("lower-case letters")
    expect(page.locator("#new-studio").get_by_label("Name")).to_have_value("Harbour Harps")  # nothing typed is lost
    assert_fits_phone_width(page, "ops studios with a form error")
    page.locator("#new-studio").get_by_label("Address").fill("harbour-harps")
    page.locator("#new-studio").get_by_role("button", name="Open the studio and invite its admin").click()
    expect(page.locator(".alert-success")).to_contain_text("Harbour Harps is open at /s/harbour-harps/")
    card = page.locator("#studio-harbour-harps")
    expect(card).to_contain_text("open")
    assert_fits_phone_width(page, "ops studios")

    suspend = card.locator("details.repair", has_text="Suspend")
    suspend.locator("summary").click()
    suspend.get_by_label("Note (why; goes in the audit log)").fill("Contract not signed yet")
    suspend.get_by_role("button", name="Suspend").click()
    expect(page.locator("#studio-harbour-harps .badge").first).to_have_text("suspended")
    visitor = page.context.browser.new_page(base_url=live_server)
    try:
        visitor.goto("/s/harbour-harps/")
        expect(visitor.locator("body")).to_contain_text("is not taking bookings at the moment")
    finally:
        visitor.close()
    resume = page.locator("#studio-harbour-harps details.repair", has_text="Resume")
    resume.locator("summary").click()
    resume.get_by_label("Note (why; goes in the audit log)").fill("Signed")
    resume.get_by_role("button", name="Resume").click()
    expect(page.locator("#studio-harbour-harps .badge").first).to_have_text("open")
    with live_app.app_context(), tenancy.all_tenants():
        actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.target_type == "studio")
                                     .order_by(AuditEntry.id)).all()
        assert actions[-3:] == ["studio.create", "studio.suspend", "studio.resume"]
        db.session.remove()
