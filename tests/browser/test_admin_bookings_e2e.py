"""The studio admin in a real browser, on the demo data and PostgreSQL: the home, finding a booking through the
filters, refunding part of it with a note and seeing the refund in its timeline; inviting a second admin who
accepts through the emailed link; and platform ops looking at the admin read-only. Every page is also checked at
phone width (390 px) for sideways scrolling."""
from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import tenancy
from portal.extensions import db
from portal.models import Booking, Membership, Role, User
from tests.browser.helpers import STUDIO, assert_fits_phone_width, wait_for
from tests.browser.test_accounts_e2e import link_from
from tests.browser.test_lessons_e2e import choose_lesson_b, lesson_state, paid_lesson

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

ADMIN = ("admin@example.com", "demo-password-1")
OPS = ("ops@example.com", "demo-password-1")
INVITED = "second.admin@example.com"
STUDIO_TZ = ZoneInfo("America/New_York")


def log_in_as(page: Page, email: str, password: str, lands_on: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lands_on)


def admin_nav(page: Page, section: str) -> None:
    page.get_by_role("navigation", name="Studio admin").get_by_role("link", name=section, exact=True).click()


def test_admin_finds_a_booking_and_refunds_part_of_it(page: Page, live_app, live_server, stripe_standin):
    from portal.clock import utcnow

    start, _late = choose_lesson_b(live_app, utcnow() + timedelta(days=2))
    booking_id = paid_lesson(live_app, stripe_standin, live_server, start)

    log_in_as(page, *ADMIN, f"**{STUDIO}/admin/")
    expect(page.get_by_role("heading", name="Needs your attention")).to_be_visible()
    expect(page.locator("#utilisation-table")).to_contain_text("Piano room")
    assert_fits_phone_width(page, "the admin home")

    admin_nav(page, "Bookings")
    page.wait_for_url(f"**{STUDIO}/admin/bookings")
    expect(page.locator("#booking-table")).to_contain_text("Sam Student")
    local_day = start.astimezone(STUDIO_TZ).date()
    filters = page.locator("#booking-filters")
    filters.get_by_label("From").fill(local_day.isoformat())
    filters.get_by_label("To").fill(local_day.isoformat())
    filters.get_by_label("Room, instrument or teacher").select_option("piano")
    filters.get_by_label("Status").select_option("confirmed")
    filters.get_by_label("Student name or email").fill("SAM stu")
    filters.get_by_role("button", name="Show bookings").click()
    expect(page).to_have_url(re.compile(r"q=SAM(\+|%20)stu"))
    rows = page.locator("#booking-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("student@example.com")
    assert_fits_phone_width(page, "the bookings list")
    rows.first.get_by_role("link").first.click()
    page.wait_for_url(f"**{STUDIO}/admin/bookings/{booking_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"#{booking_id}")
    expect(page.locator("#student-email")).to_have_text("student@example.com")
    expect(page.locator("#payment-label")).to_have_text("Paid $65.00")
    assert_fits_phone_width(page, "the booking page")

    page.get_by_text("Refund part of the payment").click()
    refund = page.locator("#refund-form")
    refund.get_by_label("Amount").fill("10.00")
    refund.get_by_label("Note for the audit log").fill("The lesson started ten minutes late.")
    refund.get_by_role("button", name="Refund").click()
    expect(page.locator(".alert-success")).to_contain_text("The refund was recorded")
    state = wait_for(lambda: lesson_state(live_app, booking_id),
                     lambda s: s.refunds and s.refunds[0][1].value == "succeeded")
    assert [(amount, status.value) for amount, status in state.refunds] == [(1000, "succeeded")]
    page.reload()
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Refund of $10.00 succeeded")
    expect(timeline).to_contain_text("note: The lesson started ten minutes late.")
    expect(page.locator("#payment-label")).to_have_text("Paid $65.00 · $10.00 refunded")

    page.get_by_role("link", name="Move to another time…").click()
    page.wait_for_url(f"**{STUDIO}/admin/bookings/{booking_id}/move")
    expect(page.get_by_role("heading", level=1)).to_have_text("Move the lesson")
    expect(page.locator("#slots button.slot").first).to_be_visible()
    assert_fits_phone_width(page, "the move page")


def test_admin_invites_a_second_admin_who_accepts_by_email(browser, page: Page, live_app, live_server):
    log_in_as(page, *ADMIN, f"**{STUDIO}/admin/")
    admin_nav(page, "Team")
    page.wait_for_url(f"**{STUDIO}/admin/team")
    expect(page.locator("#admins")).to_contain_text("admin@example.com")
    page.locator("#invite-form").get_by_label("Email").fill(INVITED)
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.locator(".alert-success")).to_contain_text(f"Invitation sent to {INVITED}")
    expect(page.locator("#invitations")).to_contain_text(INVITED)
    assert_fits_phone_width(page, "the team page")

    link = link_from(live_app, INVITED, "You are invited to help run Melody & Meter", "/admin/invitations/")
    assert link.startswith(live_server)
    invited = browser.new_context(base_url=live_server)
    try:
        other = invited.new_page()
        other.goto(link)
        expect(other.get_by_role("heading", level=1)).to_have_text("Join the team of Melody & Meter")
        assert_fits_phone_width(other, "the invitation page")
        other.get_by_label("Your name").fill("Sol Second")
        other.get_by_label("Password").fill("second-admin-pass-1")
        other.get_by_role("button", name="Join the team").click()
        other.wait_for_url(f"**{STUDIO}/admin/")
        expect(other.locator(".alert-success")).to_contain_text("Welcome to the team")
        expect(other.locator(".site-header")).to_contain_text("Sol Second")
        other.goto(link)  # the link works once
        expect(other.locator(".alert-error")).to_contain_text("not valid any more")
    finally:
        invited.close()

    page.reload()
    expect(page.locator("#admins")).to_contain_text(INVITED)
    expect(page.locator("#invitations")).to_have_count(0)
    with live_app.app_context():
        user = db.session.scalar(select(User).where(User.email == INVITED))
        roles = {m.role for m in db.session.scalars(select(Membership).where(Membership.user_id == user.id))}
        db.session.remove()
    assert roles == {Role.ADMIN}


def test_ops_views_the_admin_read_only(page: Page, live_app, live_server):
    log_in_as(page, *OPS, "**/ops/")
    page.goto(f"{STUDIO}/admin/")
    expect(page.locator(".alert-info")).to_contain_text("nothing can be changed here")
    expect(page.get_by_role("heading", name="Utilisation this week")).to_be_visible()
    assert_fits_phone_width(page, "the admin home, for ops")
    admin_nav(page, "Team")
    expect(page.locator("#admins")).to_contain_text("admin@example.com")
    expect(page.locator("#invite-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)
    with live_app.app_context(), tenancy.all_tenants():
        assert db.session.scalar(select(Booking.id)) is None
        db.session.remove()
