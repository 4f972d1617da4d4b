"""A student books a lesson in a real browser: log in, pick a package, change the date (htmx swaps the free
times in and pushes the URL), hold a time, land on the booking page. On the demo data and PostgreSQL."""
from __future__ import annotations

import re
from datetime import date, datetime

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.formatting import long_date
from portal.models import Booking, BookingStatus
from tests.factories import next_weekday

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

STUDIO = "/s/melody-and-meter"
PACKAGE = "60-minute lesson"
PACKAGE_SLUG = "lesson-60"
STUDENT = ("student@example.com", "demo-password-1")
SLOT_BUTTON = "#slots ul.slot-list button.slot"
BOOKING_URL = re.compile(re.escape(STUDIO) + r"/bookings/(\d+)$")


def lesson_day() -> date:
    """A Wednesday at least 3 days ahead (studio-local): the piano room is open 09:00-18:00, no blackout."""
    return next_weekday(2, after_days=3)


def log_in(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(STUDENT[0])
    page.get_by_label("Password").fill(STUDENT[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{STUDIO}/")  # a student lands on their studio's home


def open_package(page: Page) -> None:
    page.goto(f"{STUDIO}/")
    card = page.locator("#packages li.package", has_text=PACKAGE)
    card.get_by_role("link", name="Choose a time").click()
    page.wait_for_url(f"**{STUDIO}/packages/{PACKAGE_SLUG}")
    expect(page.get_by_role("heading", level=1)).to_have_text(PACKAGE)


def show_piano_times_on(page: Page, day: date) -> None:
    """Pick the piano room, then the day; each change swaps #slots through htmx (no full page load)."""
    heading = page.locator("#slots-heading")
    marker = page.evaluate("() => (window.__fullLoads = (window.__fullLoads || 0) + 1)")
    page.locator("#resource").select_option("piano")
    expect(heading).to_contain_text("Piano room")
    page.locator("#date").fill(day.isoformat())
    expect(heading).to_contain_text(f"Free times on {long_date(day)}")
    expect(page).to_have_url(re.compile(rf"{re.escape(STUDIO)}/packages/{PACKAGE_SLUG}\?(?=.*resource=piano)"
                                        rf"(?=.*date={day.isoformat()})"))
    expect(page.locator(SLOT_BUTTON).first).to_be_visible()
    # The same document throughout: a full navigation would have reset this counter.
    assert page.evaluate("() => window.__fullLoads") == marker


def booking_row(app, booking_id: int) -> dict:
    """What the database says about a booking, read outside any request (hence every tenant in view)."""
    with app.app_context(), tenancy.all_tenants():
        booking = db.session.scalar(select(Booking).where(Booking.id == booking_id))
        assert booking is not None, f"booking {booking_id} is not in the database"
        return {"status": booking.status, "start_at": booking.start_at, "hold_expires_at": booking.hold_expires_at,
                "student": booking.student.email, "package": booking.package.slug,
                "resource": booking.resource.slug, "studio": booking.studio.slug}


def assert_booking_page(page: Page) -> int:
    page.wait_for_url(BOOKING_URL)
    booking_id = int(BOOKING_URL.search(page.url).group(1))
    article = page.locator("#booking")
    expect(article.locator(".badge")).to_have_text("Held")
    expect(article).to_contain_text("held until")
    expect(article.get_by_role("heading", level=1)).to_have_text(PACKAGE)
    expect(article).to_contain_text("Piano room")
    return booking_id


def test_student_holds_a_slot_picked_through_htmx(page: Page, live_app):
    day = lesson_day()
    log_in(page)
    open_package(page)
    show_piano_times_on(page, day)

    slot = page.locator(SLOT_BUTTON).nth(2)
    start = datetime.fromisoformat(slot.locator("xpath=../input[@name='start']").input_value())
    expect(slot).to_have_accessible_name(re.compile(rf"^Hold .+ on {re.escape(long_date(day))}$"))
    slot.click()

    booking_id = assert_booking_page(page)
    row = booking_row(live_app, booking_id)
    assert row["status"] == BookingStatus.HELD
    assert row["start_at"] == start
    assert row["hold_expires_at"] > utcnow()
    assert (row["student"], row["studio"], row["package"], row["resource"]) == (
        STUDENT[0], "melody-and-meter", PACKAGE_SLUG, "piano")


@pytest.mark.parametrize("context_options", [{"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                                              "has_touch": True, "device_scale_factor": 3}])
def test_phone_slot_list_fits_and_works_from_the_keyboard(page: Page, live_app):
    day = lesson_day()
    log_in(page)
    open_package(page)
    show_piano_times_on(page, day)
    assert page.evaluate("() => window.innerWidth") == 390

    def fits() -> bool:
        return page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")

    assert fits(), "the package page scrolls sideways on a phone"
    assert page.locator(SLOT_BUTTON).count() > 1

    # From the date field, Tab eventually reaches the first slot button (and nothing traps focus first).
    page.locator("#date").focus()
    on_slot = "() => document.activeElement && document.activeElement.matches('#slots button.slot')"
    for _ in range(25):
        page.keyboard.press("Tab")
        if page.evaluate(on_slot):
            break
    else:
        pytest.fail("Tab never reached a slot button; focus ended on "
                    + page.evaluate("() => document.activeElement.outerHTML.slice(0, 120)"))
    focused_start = page.evaluate("() => document.activeElement.form.elements.start.value")
    assert focused_start == page.locator(SLOT_BUTTON).first.locator("xpath=../input[@name='start']").input_value()

    page.keyboard.press("Enter")
    booking_id = assert_booking_page(page)
    assert fits(), "the booking page scrolls sideways on a phone"
    row = booking_row(live_app, booking_id)
    assert row["status"] == BookingStatus.HELD
    assert row["start_at"] == datetime.fromisoformat(focused_start)


CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
                            + ` at ${event.sourceFile || location.href}:${event.lineNumber}`);
});
"""


def test_package_page_and_slot_swaps_raise_no_console_errors_or_csp_violations(page: Page):
    problems: list[str] = []

    def on_console(message) -> None:
        source = message.location.get("url", "")
        if message.type == "error":
            problems.append(f"console: {message.text} ({source})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url} {request.failure}"))
    page.on("response", lambda response: response.status >= 500
            and problems.append(f"HTTP {response.status}: {response.url}"))
    page.expose_function("reportCspViolation", lambda text: problems.append(f"CSP violation: {text}"))
    page.add_init_script(CSP_LISTENER)  # injected by the devtools protocol, so the page's CSP does not block it

    log_in(page)
    open_package(page)
    csp = page.evaluate("() => fetch(location.href).then(r => r.headers.get('content-security-policy'))")
    assert csp and "script-src 'self'" in csp, "the CSP this test relies on is missing"
    show_piano_times_on(page, lesson_day())
    page.locator("#slots").get_by_role("link", name="Next day →").click()  # a plain link: a full navigation
    expect(page.locator("#slots-heading")).to_be_visible()
    page.locator("#date").fill(lesson_day().isoformat())
    expect(page.locator("#slots-heading")).to_contain_text(long_date(lesson_day()))

    assert problems == []

    # Prove the listener works, so the empty list above meant "no violations", not "nobody was listening".
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "void 0";
                             document.head.appendChild(s); }""")
    for _ in range(60):
        if any(p.startswith("CSP violation: script-src") for p in problems):
            break
        page.wait_for_timeout(50)
    assert any(p.startswith("CSP violation: script-src") for p in problems), problems
