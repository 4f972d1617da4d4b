"""An admin runs the catalogue and the calendar in a real browser, on the demo data and PostgreSQL: adds a resource
and a package, edits opening hours in place (htmx, no page load), and creates a blackout after seeing the lesson it
hits, cancelling that lesson with a full refund through the Stripe stand-in. Every page is checked at phone width.
"""
from __future__ import annotations

import re
from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import formatting, tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import (
    AvailabilityRule,
    Blackout,
    BookingStatus,
    Package,
    PaymentStatus,
    RefundStatus,
    Resource,
    Studio,
    User,
)
from tests.browser.helpers import STUDIO, assert_fits_phone_width, lesson_day, wait_for
from tests.browser.test_lessons_e2e import lesson_state
from tests.payments.helpers import pay

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

ADMIN = ("admin@example.com", "demo-password-1")
STUDIO_SLUG = "melody-and-meter"


def _studio_id(app) -> int:
    with app.app_context(), tenancy.all_tenants():
        studio_id = db.session.scalar(select(Studio.id).where(Studio.slug == STUDIO_SLUG))
        db.session.remove()
    return studio_id


def paid_piano_lesson(app, standin, live_server: str, start: datetime) -> int:
    """A confirmed lesson of the demo student, paid on the stand-in, confirmed by its webhook to the live server."""
    from portal.payments import get_provider
    from portal.services import bookings, checkout

    studio_id = _studio_id(app)
    with app.app_context(), tenancy.scoped(studio_id):
        studio = db.session.get(Studio, studio_id)
        student = db.session.scalar(select(User).where(User.email == "student@example.com"))
        now = utcnow()
        hold = bookings.hold_slot(studio=studio, student=student, package_slug="lesson-60", resource_slug="piano",
                                  start_raw=start.isoformat(), now=now)
        payment = checkout.start_checkout(
            booking=hold, student=student, provider=get_provider(), now=now,
            success_url=f"{live_server}{STUDIO}/bookings/{hold.id}?paid=1&session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{live_server}{STUDIO}/bookings/{hold.id}/checkout-cancelled")
        booking_id, session_id = hold.id, payment.checkout_session_id
        db.session.remove()
    pay(standin, session_id)
    state = wait_for(lambda: lesson_state(app, booking_id), lambda s: s.status == BookingStatus.CONFIRMED)
    assert state.status == BookingStatus.CONFIRMED, state
    return booking_id


def catalogue_rows(app) -> dict:
    studio_id = _studio_id(app)
    with app.app_context(), tenancy.scoped(studio_id):
        found = {
            "resource": db.session.execute(select(Resource.slug, Resource.kind, Resource.capacity_minutes)
                                           .where(Resource.name == "Cello room")).one_or_none(),
            "package": db.session.execute(select(Package.slug, Package.price_minor, Package.duration_minutes)
                                          .where(Package.name == "45-minute lesson")).one_or_none(),
            "hours": [(r.weekday, r.start_time, r.end_time) for r in db.session.scalars(
                select(AvailabilityRule).join(Resource, Resource.id == AvailabilityRule.resource_id)
                .where(Resource.slug == "cello-room").order_by(AvailabilityRule.start_time))],
            "blackouts": [(b.reason, b.starts_at, b.ends_at) for b in db.session.scalars(
                select(Blackout).where(Blackout.reason == "Piano tuning"))],
        }
        db.session.remove()
    return found


def log_in_as_admin(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    page.goto(f"{STUDIO}/admin/catalogue")
    expect(page.get_by_role("heading", level=1)).to_have_text("Catalogue")


def same_document(page: Page) -> int:
    """A counter on `window`: a full page load resets it, so it tells an htmx swap from a reload."""
    return page.evaluate("() => (window.__sameDocument = (window.__sameDocument || 0) + 1)")


def test_admin_runs_the_catalogue_and_calendar(page: Page, live_app, live_server, stripe_standin):
    day = lesson_day()  # a Wednesday at least 3 days ahead: the piano room is open 09:00-18:00
    tz = ZoneInfo("America/New_York")
    lesson_start = datetime.combine(day, time(10), tz)
    lesson_id = paid_piano_lesson(live_app, stripe_standin, live_server, lesson_start.astimezone(timezone.utc))

    log_in_as_admin(page)
    assert_fits_phone_width(page, "the catalogue")

    # --- a resource: slug made from its name
    page.get_by_role("link", name="Add a resource").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Add a room, instrument or teacher")
    assert_fits_phone_width(page, "the new-resource form")
    page.get_by_label("Name", exact=True).fill("Cello room")
    page.get_by_label("Kind").select_option("room")
    page.get_by_label("Capacity, minutes per day").fill("300")
    page.get_by_role("button", name="Add resource").click()
    page.wait_for_url(re.compile(rf"{re.escape(STUDIO)}/admin/catalogue#resources$"))
    expect(page.locator("main .alert-success")).to_have_text("Saved the resource Cello room.")
    expect(page.locator("#resource-table")).to_contain_text("cello-room")

    # --- a package, with a price typed the usual way; first a bad price is refused and the form kept
    page.get_by_role("link", name="Add a package").click()
    page.get_by_label("Name", exact=True).fill("45-minute lesson")
    page.get_by_label("Length in minutes").fill("45")
    page.get_by_label(re.compile(r"^Price")).fill("50.005")
    page.get_by_role("button", name="Add package").click()
    expect(page.locator("#price-error")).to_have_text("USD prices have 2 decimal places at most.")
    expect(page.get_by_label("Name", exact=True)).to_have_value("45-minute lesson")
    assert_fits_phone_width(page, "the package form with a field error")
    page.get_by_label(re.compile(r"^Price")).fill("50.00")
    page.get_by_role("button", name="Add package").click()
    page.wait_for_url(re.compile(rf"{re.escape(STUDIO)}/admin/catalogue#packages$"))
    row = page.locator("#package-table tr", has_text="45-minute lesson")
    expect(row).to_contain_text("$50.00")
    expect(row).to_contain_text("45 min")
    rows = catalogue_rows(live_app)
    assert rows["resource"] == ("cello-room", "room", 300)  # before the edit below
    assert rows["package"] == ("45-minute-lesson", 5000, 45)
    # edit both: the package's form shows the price as typed back; the room gets a longer day
    row.get_by_role("link", name="45-minute lesson").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("45-minute lesson")
    expect(page.get_by_label(re.compile(r"^Price"))).to_have_value("50.00")
    assert_fits_phone_width(page, "the package edit form")
    page.get_by_label("Description").fill("Between the half hour and the full lesson.")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("main .alert-success")).to_have_text("Saved the package 45-minute lesson.")
    page.locator("#resource-table").get_by_role("link", name="Cello room").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Cello room")
    assert_fits_phone_width(page, "the resource edit form")
    page.get_by_label("Capacity, minutes per day").fill("360")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#resource-table tr", has_text="Cello room")).to_contain_text("360 min")

    # --- opening hours of the new room, edited in place
    page.get_by_role("navigation", name="Studio admin").get_by_role("link", name="Calendar").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Calendar")
    page.locator(".resource-tabs").get_by_role("link", name="Cello room").click()
    expect(page.locator("#hours-heading")).to_have_text("Opening hours · Cello room")
    wednesday = page.locator("#day-2")
    expect(wednesday).to_contain_text("Closed all day.")
    marker = same_document(page)
    new_span = wednesday.locator("form.span-new")
    new_span.get_by_label("Opens").fill("10:00")
    new_span.get_by_label("Closes").fill("12:00")
    new_span.get_by_role("button", name="Add opening hours on Wednesday").click()
    expect(wednesday.locator("form.span-form:not(.span-new)")).to_have_count(1)
    expect(wednesday.locator("form.span-form:not(.span-new) input[name=end]")).to_have_value("12:00")
    expect(wednesday).not_to_contain_text("Closed all day.")
    # an overlapping span is refused in place, with what was typed
    new_span = wednesday.locator("form.span-new")
    new_span.get_by_label("Opens").fill("11:30")
    new_span.get_by_label("Closes").fill("14:00")
    new_span.get_by_role("button", name="Add opening hours on Wednesday").click()
    expect(wednesday.locator(".field-error")).to_have_text("It overlaps 10:00 AM–12:00 PM on Wednesday.")
    expect(wednesday.locator("form.span-new input[name=start]")).to_have_value("11:30")
    # change the span: it now closes at 13:00
    existing = wednesday.locator("form.span-form:not(.span-new)")
    existing.get_by_label("Closes").fill("13:00")
    existing.get_by_role("button", name=re.compile(r"^Save Wednesday")).click()
    expect(wednesday.locator("form.span-form:not(.span-new) input[name=end]")).to_have_value("13:00")
    expect(wednesday.locator(".field-error")).to_have_count(0)
    assert page.evaluate("() => window.__sameDocument") == marker, "editing the hours reloaded the page"
    assert [(w, s.isoformat(), e.isoformat()) for w, s, e in catalogue_rows(live_app)["hours"]] == [
        (2, "10:00:00", "13:00:00")]
    assert_fits_phone_width(page, "the calendar")

    # --- a blackout over the piano lesson: the preview shows it, and it is cancelled with a refund
    page.get_by_role("link", name="Add or remove blackouts").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Blackouts")
    marker = same_document(page)
    preview = page.locator("#blackout-preview")
    page.get_by_label("Closes").select_option("piano")
    page.get_by_label(re.compile(r"^From")).fill(f"{day.isoformat()}T09:00")
    expect(preview).to_contain_text("Pick when the blackout ends.")  # the preview follows the form as it is filled
    page.get_by_label(re.compile(r"^Until")).fill(f"{day.isoformat()}T12:00")
    expect(preview.locator(f"#hit-{lesson_id}")).to_be_visible()
    page.get_by_label(re.compile(r"^Reason")).fill("Piano tuning")
    page.get_by_role("button", name="Preview the lessons it hits").click()
    expect(preview.locator(f"#hit-{lesson_id}")).to_contain_text("Sam Student")
    expect(preview.locator(f"#hit-{lesson_id}")).to_contain_text(formatting.when(lesson_start, tz, "en_US"))
    expect(preview).to_contain_text("1 confirmed lesson falls in it")
    assert page.evaluate("() => window.__sameDocument") == marker, "the preview reloaded the page"
    assert_fits_phone_width(page, "the blackout form with its preview")
    page.get_by_role("radio", name=re.compile(r"Cancel it with a full refund")).check()
    page.get_by_role("button", name="Save blackout").click()
    page.wait_for_url(re.compile(rf"{re.escape(STUDIO)}/admin/calendar/blackouts$"))
    expect(page.locator("main .alert-success")).to_have_text(
        "Blackout saved. Cancelled 1 lesson with a full refund; the students are emailed.")
    expect(page.locator("#upcoming-blackouts")).to_contain_text("Piano tuning")
    assert_fits_phone_width(page, "the blackouts list")

    state = wait_for(lambda: lesson_state(live_app, lesson_id), lambda s: s.payment_status == PaymentStatus.REFUNDED)
    assert state.status == BookingStatus.CANCELLED, state
    assert state.refunds == [(6500, RefundStatus.SUCCEEDED)], state
    [(reason, starts, ends)] = catalogue_rows(live_app)["blackouts"]
    assert (starts, ends) == (datetime.combine(day, time(9), tz), datetime.combine(day, time(12), tz))
