"""A student books six weeks of lessons with one week skipped, pays in one Checkout on the Stripe stand-in's page,
finds the series in My lessons, cancels one week and sees its refund; an admin grants a credit, and refunds the
unused credits of a pack the student bought. Real Chromium on the demo data and PostgreSQL, desktop and phone
widths."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, Payment, PaymentStatus
from tests.browser.helpers import (
    SLOT_BUTTON,
    STUDIO,
    assert_fits_phone_width,
    lesson_day,
    log_in,
    open_package,
    show_piano_times_on,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

CONFIRM_TIMEOUT_MS = 15_000


def _series_rows(app, series_id: int) -> list[tuple[int, BookingStatus]]:
    with app.app_context(), tenancy.all_tenants():
        rows = db.session.execute(select(Booking.id, Booking.status).where(Booking.series_id == series_id)
                                  .order_by(Booking.start_at)).all()
        db.session.remove()
    return [tuple(r) for r in rows]


def _series_payment(app, session_id: str) -> tuple[int, PaymentStatus, int]:
    with app.app_context(), tenancy.all_tenants():
        payment = db.session.scalar(select(Payment).where(Payment.checkout_session_id == session_id))
        found = (payment.series_id, payment.status, payment.amount_minor)
        db.session.remove()
    return found


def test_student_books_a_weekly_series_pays_and_cancels_one_week(page: Page, live_app, live_server, stripe_standin):
    day = lesson_day()
    log_in(page)
    open_package(page)
    page.locator("#weekly-option").click()
    expect(page.get_by_text("Pick the first lesson's time")).to_be_visible()
    show_piano_times_on(page, day)
    page.locator(SLOT_BUTTON).first.click()

    # The plan: ten weeks by default; ask for six.
    page.wait_for_url(re.compile(rf"{re.escape(STUDIO)}/series/plan\?"))
    page.locator("#weeks").fill("6")
    page.get_by_role("button", name="Show the weeks").click()
    weeks = page.locator("ol.series-weeks > li")
    expect(weeks).to_have_count(6)
    times = [weeks.nth(k).inner_text().split(": ", 1)[1].split(",")[-1].strip() for k in range(6)]
    assert len(set(times)) == 1, times  # the same local time every week
    assert_fits_phone_width(page, "the weekly plan")
    weeks.nth(2).get_by_role("checkbox").uncheck()  # skip week 3
    page.get_by_role("button", name="Hold these weeks").click()

    # One Checkout for the five weeks kept.
    page.wait_for_url(re.compile(re.escape(stripe_standin.base_url) + r"/c/pay/cs_\w+$"))
    expect(page.locator("#amount")).to_have_text("325.00 USD")
    session_id = page.locator("#session-id").inner_text()
    page.get_by_role("button", name=re.compile(r"^Pay 325\.00 USD$")).click()
    page.wait_for_url(re.compile(rf"{re.escape(STUDIO)}/series/\d+\?paid=1&session_id={session_id}$"))
    series_id, _, amount = _series_payment(live_app, session_id)
    assert amount == 5 * 6500
    rows = wait_for(lambda: _series_rows(live_app, series_id),
                    lambda r: [s for _, s in r] == [BookingStatus.CONFIRMED] * 5, timeout=15)
    assert [s for _, s in rows] == [BookingStatus.CONFIRMED] * 5
    page.reload()
    expect(page.locator("#series-weeks > li")).to_have_count(5)
    expect(page.locator("#series-weeks .badge")).to_have_text(["Confirmed"] * 5)
    expect(page.locator("#series-weeks")).to_contain_text("Paid $65.00")
    expect(page.locator("#rest-refund")).to_have_text("$325.00")
    assert_fits_phone_width(page, "the series page")

    # My lessons groups the series; cancel week 2 alone (more than 24 h ahead: a full refund of its share).
    page.get_by_role("navigation", name="Account").get_by_role("link", name="My lessons").click()
    page.wait_for_url(f"**{STUDIO}/lessons")
    expect(page.locator("#weekly-series li")).to_have_count(1)
    expect(page.locator("#weekly-series")).to_contain_text("5 upcoming")
    second_id = rows[1][0]
    row = page.locator(f"#lesson-{second_id}")
    expect(row).to_contain_text("every week")
    assert_fits_phone_width(page, "My lessons with a weekly series")
    row.get_by_role("link", name="Cancel").click()
    expect(page.locator("#refund-amount")).to_have_text("$65.00")
    page.get_by_role("button", name="Cancel this lesson").click()
    page.wait_for_url(re.compile(rf"{re.escape(STUDIO)}/bookings/{second_id}$"))
    expect(page.locator(".alert-success")).to_contain_text("cancelled")
    page.goto(f"{STUDIO}/series/{series_id}")
    cancelled = page.locator(f"#lesson-{second_id}")
    expect(cancelled.locator(".badge")).to_have_text("Cancelled")
    refunded = re.compile(r"Paid \$65\.00 · (refunded in full|a refund of \$65\.00 is on its way)")
    expect(cancelled).to_contain_text(refunded, timeout=CONFIRM_TIMEOUT_MS)
    expect(page.locator("#rest-refund")).to_have_text("$260.00")
    assert [s for _, s in _series_rows(live_app, series_id)].count(BookingStatus.CANCELLED) == 1


def _waitlist_offer_and_wait(app) -> None:
    """The demo student waits for the one 16:00 piano lesson of the lesson day (it is offered to them), then joins
    again for the same hour (nothing is free: they wait)."""
    from datetime import datetime, time

    from portal.clock import utcnow
    from portal.models import Studio, User
    from portal.services import waitlist

    with app.app_context(), tenancy.all_tenants():
        studio = db.session.scalar(select(Studio).where(Studio.slug == STUDIO.rsplit("/", 1)[-1]))
        student = db.session.scalar(select(User).where(User.email == "student@example.com"))
        window = [datetime.combine(lesson_day(), time(h), studio.tz).isoformat() for h in (16, 17)]
        with tenancy.scoped(studio.id):
            for _ in range(2):
                waitlist.join(studio=studio, student=student, package_slug="lesson-60", resource_slug="piano",
                              from_raw=window[0], to_raw=window[1], now=utcnow())
                waitlist.sweep(now=utcnow())
        db.session.remove()


def test_admin_grants_a_credit_and_sees_it(page: Page, live_app, live_server):
    _waitlist_offer_and_wait(live_app)
    page.goto("/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill("demo-password-1")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{STUDIO}/admin/credits")
    expect(page.get_by_role("heading", level=1)).to_have_text("Weekly lessons and credits")
    form = page.locator("#adjust-credits")
    form.get_by_label("Student").select_option(label="student@example.com")
    form.get_by_label("Credits").fill("2")
    form.get_by_label("Lesson length").select_option(label="60 min")
    form.get_by_label("Note (for the audit log)").fill("missed lesson last term")
    form.get_by_role("button", name="Save").click()
    expect(page.locator(".alert-success")).to_contain_text("Credits granted")
    expect(page.locator("#balances tbody tr", has_text="student@example.com")).to_contain_text("2")
    waiting = page.locator("#waitlist tbody tr")
    expect(waiting).to_have_count(2)
    expect(waiting.nth(0)).to_contain_text("offer out")
    expect(waiting.nth(0)).to_contain_text("Piano room")
    expect(waiting.nth(1)).to_contain_text("waiting")
    assert_fits_phone_width(page, "the admin's credits page")
    page.goto(f"{STUDIO}/admin/audit")
    expect(page.locator("main")).to_contain_text("missed lesson last term")


def test_student_joins_and_leaves_the_waitlist(page: Page, live_app, live_server):
    log_in(page)
    open_package(page)
    show_piano_times_on(page, lesson_day())
    page.get_by_text("None of these suits? Join the waitlist").click()
    form = page.locator("#waitlist-form")
    form.get_by_label("From").fill("16:00")
    form.get_by_label("To").fill("18:00")
    form.get_by_role("button", name="Tell me when a time frees up").click()
    page.wait_for_url(f"**{STUDIO}/waitlist")
    expect(page.locator(".alert-success")).to_contain_text("You are on the waitlist")
    entry = page.locator("#waitlist > li").first
    expect(entry.locator(".badge")).to_have_text("Waiting")
    expect(entry).to_contain_text("Piano room")
    assert_fits_phone_width(page, "the waitlist")
    entry.get_by_role("button", name="Leave the waitlist").click()
    expect(page.locator("#waitlist > li").first.locator(".badge")).to_have_text("Cancelled")


def _log_in_as(page: Page, email: str) -> None:
    page.context.clear_cookies()
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("demo-password-1")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/(s/[\w-]+/)?(admin/)?$"))


def _credits(app, email: str) -> int:
    from portal.models import Studio, User
    from portal.services import credits

    with app.app_context(), tenancy.all_tenants():
        studio = db.session.scalar(select(Studio).where(Studio.slug == STUDIO.rsplit("/", 1)[-1]))
        student = db.session.scalar(select(User).where(User.email == email))
        with tenancy.scoped(studio.id):
            found = credits.usable(student.id, 60)
        db.session.remove()
    return found


def _spend_a_credit(app) -> None:
    from datetime import datetime, time

    from portal.clock import utcnow
    from portal.models import Studio, User
    from portal.services import credits

    with app.app_context(), tenancy.all_tenants():
        studio = db.session.scalar(select(Studio).where(Studio.slug == STUDIO.rsplit("/", 1)[-1]))
        student = db.session.scalar(select(User).where(User.email == "student@example.com"))
        with tenancy.scoped(studio.id):
            credits.book_with_credit(studio=studio, student=student, package_slug="lesson-60", resource_slug="piano",
                                     start_raw=datetime.combine(lesson_day(), time(11), studio.tz).isoformat(),
                                     now=utcnow())
        db.session.remove()


def test_admin_refunds_the_unused_credits_of_a_pack_the_student_bought(page: Page, live_app, live_server,
                                                                         stripe_standin):
    # The student buys the demo's ten-lesson pack ($585.00) through Checkout and uses one credit.
    log_in(page)
    page.get_by_role("navigation", name="Account").get_by_role("link", name="My lessons").click()
    page.locator("#packs-on-sale li", has_text="10 × 60 min").get_by_role("button", name="Buy").click()
    page.wait_for_url(re.compile(re.escape(stripe_standin.base_url) + r"/c/pay/cs_\w+$"))
    page.get_by_role("button", name=re.compile(r"^Pay 585\.00 USD$")).click()
    page.wait_for_url(f"**{STUDIO}/lessons?pack=paid")
    assert wait_for(lambda: _credits(live_app, "student@example.com"), lambda n: n == 10, timeout=15) == 10
    _spend_a_credit(live_app)

    # The admin sees the pack bought, and what refunding its nine unused credits sends back, before confirming.
    _log_in_as(page, "admin@example.com")
    page.goto(f"{STUDIO}/admin/credits")
    row = page.locator("#packs-bought tbody tr", has_text="student@example.com")
    expect(row).to_contain_text("9 of 10")
    expect(row).to_contain_text("$585.00")
    assert_fits_phone_width(page, "the admin's credits page with packs bought")
    row.get_by_role("link", name="Refund unused…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Refund unused credits")
    expect(page.locator("#refund-credits")).to_contain_text("9")
    expect(page.locator("#refund-amount strong")).to_have_text("$526.50")  # 9 × $585.00 ÷ 10
    assert_fits_phone_width(page, "the pack refund confirmation")
    page.get_by_label("Note for the audit log (required)").fill("the student moved away")
    page.get_by_role("button", name="Refund 9 credits and $526.50").click()
    expect(page.locator(".alert-success")).to_contain_text("$526.50 is on its way back")
    expect(page.locator("#packs-bought tbody tr", has_text="student@example.com")).to_contain_text("0 of 10")
    expect(page.locator("#packs-bought tbody tr", has_text="student@example.com")
           .get_by_role("link", name="Refund unused…")).to_have_count(0)
    assert _credits(live_app, "student@example.com") == 0
    assert wait_for(lambda: sorted((r["amount"], r["status"]) for r in stripe_standin.store.refunds.values()),
                    lambda found: found == [(52650, "succeeded")], timeout=15) == [(52650, "succeeded")]

    # The student's credit history shows the refund with its amount.
    _log_in_as(page, "student@example.com")
    page.goto(f"{STUDIO}/lessons")
    page.get_by_text("History").click()
    refunded = page.locator("table.credit-history tr.credit-refund")
    expect(refunded).to_contain_text("Refunded by the studio")
    expect(refunded).to_contain_text("$526.50 back to your card")
    expect(refunded).to_contain_text("-9 × 60 min")
    assert_fits_phone_width(page, "My lessons with a refunded pack")
