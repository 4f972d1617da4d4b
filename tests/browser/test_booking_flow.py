"""A student books a lesson in a real browser: log in, pick a package, change the date (htmx swaps the free
times in and pushes the URL), hold a time, land on the Stripe stand-in's Checkout page; the booking page then
shows the hold and a link back to Checkout. On the demo data and PostgreSQL."""
from __future__ import annotations

import re
from datetime import datetime

import pytest
from playwright.sync_api import Page, expect

from portal import formatting
from portal.clock import utcnow
from portal.models import BookingStatus, PaymentStatus
from tests.browser.helpers import (
    PACKAGE,
    PACKAGE_SLUG,
    PORTAL_PRICE,
    SLOT_BUTTON,
    STUDENT,
    STUDIO,
    booking_for_session,
    lesson_day,
    log_in,
    on_checkout_page,
    open_package,
    show_piano_times_on,
    slot_start,
)

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


def assert_booking_page(page: Page, booking: dict) -> None:
    """The student's own booking page shows the hold, with a link back to its Checkout page."""
    page.goto(f"{STUDIO}/bookings/{booking['id']}")
    article = page.locator("#booking")
    expect(article.locator(".badge")).to_have_text("Held")
    expect(article).to_contain_text("held until")
    expect(article.get_by_role("heading", level=1)).to_have_text(PACKAGE)
    expect(article).to_contain_text("Piano room")
    pay = article.get_by_role("link", name=f"Pay {PORTAL_PRICE}")
    expect(pay).to_have_attribute("href", booking["checkout_url"])
    # Not polling: the student has not come back from Checkout, nothing is on its way.
    expect(article.locator("#booking-status")).not_to_have_attribute("hx-get", re.compile(".*"))


def test_student_holds_a_slot_picked_through_htmx(page: Page, live_app, stripe_standin):
    day = lesson_day()
    log_in(page)
    open_package(page)
    show_piano_times_on(page, day)

    slot = page.locator(SLOT_BUTTON).nth(2)
    start = datetime.fromisoformat(slot_start(slot))
    expect(slot).to_have_accessible_name(re.compile(rf"^Hold .+ on {re.escape(formatting.day(day))}$"))
    slot.click()

    session_id = on_checkout_page(page, stripe_standin.base_url)
    row = booking_for_session(live_app, session_id)
    assert row["status"] == BookingStatus.HELD
    assert row["payment_status"] == PaymentStatus.PENDING
    assert row["checkout_url"] == page.url
    assert row["start_at"] == start
    assert row["hold_expires_at"] > utcnow()
    assert (row["student"], row["studio"], row["package"], row["resource"]) == (
        STUDENT[0], "melody-and-meter", PACKAGE_SLUG, "piano")

    assert_booking_page(page, row)
    page.get_by_role("link", name=f"Pay {PORTAL_PRICE}").click()
    assert on_checkout_page(page, stripe_standin.base_url) == session_id  # the same session, not a new one


@pytest.mark.parametrize("context_options", [{"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                                              "has_touch": True, "device_scale_factor": 3}])
def test_phone_slot_list_fits_and_works_from_the_keyboard(page: Page, live_app, stripe_standin):
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
    assert focused_start == slot_start(page.locator(SLOT_BUTTON).first)

    page.keyboard.press("Enter")
    session_id = on_checkout_page(page, stripe_standin.base_url)
    row = booking_for_session(live_app, session_id)
    assert row["status"] == BookingStatus.HELD
    assert row["start_at"] == datetime.fromisoformat(focused_start)

    assert_booking_page(page, row)
    assert fits(), "the booking page scrolls sideways on a phone"


CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(location.href, `${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
                            + ` at ${event.sourceFile || location.href}:${event.lineNumber}`);
});
"""


def test_portal_pages_raise_no_console_errors_or_csp_violations(page: Page, live_server, live_app, stripe_standin):
    """The package page, its htmx swaps, the booking form's redirect to Checkout (CSP `form-action` covers
    redirects) and the booking page. The stand-in's Checkout page is not ours: what happens there is ignored."""
    problems: list[str] = []

    def report(url: str, text: str) -> None:
        if (url or "").startswith(live_server):
            problems.append(text)

    def on_console(message) -> None:
        source = message.location.get("url", "") or page.url
        if message.type == "error":
            report(source, f"console: {message.text} ({source})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: report(page.url, f"page error: {error} ({page.url})"))
    # A request the browser drops because the page navigated on (net::ERR_ABORTED) is not a failure of the page.
    page.on("requestfailed", lambda request: request.failure != "net::ERR_ABORTED"
            and report(request.url, f"request failed: {request.url} {request.failure}"))
    page.on("response", lambda response: response.status >= 500
            and report(response.url, f"HTTP {response.status}: {response.url}"))
    page.expose_function("reportCspViolation", lambda url, text: report(url, f"CSP violation: {text}"))
    page.add_init_script(CSP_LISTENER)  # injected by the devtools protocol, so the page's CSP does not block it

    log_in(page)
    open_package(page)
    csp = page.evaluate("() => fetch(location.href).then(r => r.headers.get('content-security-policy'))")
    assert csp and "script-src 'self'" in csp, "the CSP this test relies on is missing"
    form_action = next(d for d in csp.split(";") if d.strip().startswith("form-action")).split()
    assert stripe_standin.base_url in form_action, "the booking form could not reach Checkout"
    show_piano_times_on(page, lesson_day())
    page.locator("#slots").get_by_role("link", name="Next day →").click()  # a plain link: a full navigation
    expect(page.locator("#slots-heading")).to_be_visible()
    page.locator("#date").fill(lesson_day().isoformat())
    expect(page.locator("#slots-heading")).to_contain_text(formatting.day(lesson_day()))
    assert problems == []

    page.locator(SLOT_BUTTON).first.click()  # POST, then 303 to the stand-in's origin
    booking = booking_for_session(live_app, on_checkout_page(page, stripe_standin.base_url))
    assert_booking_page(page, booking)
    assert problems == []

    # Prove the listener works, so the empty list above meant "no violations", not "nobody was listening".
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "void 0";
                             document.head.appendChild(s); }""")
    for _ in range(60):
        if any(p.startswith("CSP violation: script-src") for p in problems):
            break
        page.wait_for_timeout(50)
    assert any(p.startswith("CSP violation: script-src") for p in problems), problems
