"""Steps and database reads shared by the browser tests (on the demo data: Melody & Meter, its piano room)."""
from __future__ import annotations

import re
import time
from datetime import date

from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import formatting, tenancy
from portal.extensions import db
from portal.models import Booking, Payment, WebhookEvent
from tests.factories import next_weekday

STUDIO = "/s/melody-and-meter"
PACKAGE = "60-minute lesson"
PACKAGE_SLUG = "lesson-60"
PRODUCT = "60-minute lesson · Piano room · Melody & Meter"
PORTAL_PRICE = "$65.00"  # the portal's own formatting
CHECKOUT_AMOUNT = "65.00 USD"  # the stand-in's hosted page formats amounts its own way
STUDENT = ("student@example.com", "demo-password-1")
SLOT_BUTTON = "#slots ul.slot-list button.slot"


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
    expect(heading).to_contain_text(f"Free times on {formatting.day(day)}")
    expect(page).to_have_url(re.compile(rf"{re.escape(STUDIO)}/packages/{PACKAGE_SLUG}\?(?=.*resource=piano)"
                                        rf"(?=.*date={day.isoformat()})"))
    expect(page.locator(SLOT_BUTTON).first).to_be_visible()
    # The same document throughout: a full navigation would have reset this counter.
    assert page.evaluate("() => window.__fullLoads") == marker


def slot_start(slot) -> str:
    """The `start` value (ISO datetime) posted by a slot button's form."""
    return slot.locator("xpath=../input[@name='start']").input_value()


def on_checkout_page(page: Page, standin_base: str) -> str:
    """The browser is on the stand-in's hosted Checkout page for this lesson; returns the session id."""
    page.wait_for_url(re.compile(re.escape(standin_base) + r"/c/pay/cs_\w+$"))
    expect(page.locator("#amount")).to_have_text(CHECKOUT_AMOUNT)
    expect(page.locator("main")).to_contain_text(PRODUCT)
    expect(page.locator("#email")).to_have_text(STUDENT[0])
    session_id = page.locator("#session-id").inner_text()
    assert page.url.endswith(f"/c/pay/{session_id}")
    return session_id


def booking_row(app, booking_id: int) -> dict:
    """What the database says about a booking, read outside any request (hence every tenant in view)."""
    with app.app_context(), tenancy.all_tenants():
        booking = db.session.scalar(select(Booking).where(Booking.id == booking_id))
        assert booking is not None, f"booking {booking_id} is not in the database"
        payment = booking.payment
        row = {"id": booking.id, "status": booking.status, "start_at": booking.start_at,
               "hold_expires_at": booking.hold_expires_at, "student": booking.student.email,
               "package": booking.package.slug, "resource": booking.resource.slug, "studio": booking.studio.slug,
               "payment_status": payment.status if payment else None,
               "session_id": payment.checkout_session_id if payment else None,
               "checkout_url": payment.checkout_url if payment else None,
               "amount_received": payment.amount_received_minor if payment else None}
        db.session.remove()
        return row


def booking_for_session(app, session_id: str) -> dict:
    """The booking whose payment opened this Checkout Session."""
    with app.app_context(), tenancy.all_tenants():
        booking_id = db.session.scalar(select(Payment.booking_id).where(Payment.checkout_session_id == session_id))
        db.session.remove()
    assert booking_id is not None, f"no payment row for checkout session {session_id}"
    return booking_row(app, booking_id)


def session_events(app, session_id: str, event_type: str) -> list[dict]:
    """Stored webhook events of one type about one Checkout Session."""
    with app.app_context():
        events = db.session.scalars(select(WebhookEvent).where(WebhookEvent.type == event_type)
                                    .order_by(WebhookEvent.id)).all()
        found = [{"id": e.id, "provider_event_id": e.provider_event_id, "status": e.status, "attempts": e.attempts,
                  "deliveries": e.deliveries, "last_error": e.last_error} for e in events
                 if ((e.payload.get("data") or {}).get("object") or {}).get("id") == session_id]
        db.session.remove()
        return found


def wait_for(read, check, timeout: float = 10.0, interval: float = 0.1):
    """Call `read()` until `check(value)` holds; returns the last value either way (assert on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if check(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


#: axe-core impact levels that fail a test: what keeps a person from using the page, not advice.
BLOCKING_IMPACTS = ("serious", "critical")


def assert_accessible(page: Page, what: str) -> None:
    """axe-core (bundled with axe-playwright-python, nothing downloaded) finds no serious or critical WCAG 2.x A/AA
    violation on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a",
                                                                             "wcag21aa"]}})
    blocking = [f"{v['id']} ({v['impact']}): {v['help']} at " + ", ".join(
                    f"{node['html'][:120]} ({node.get('failureSummary', '').splitlines()[-1][:160]})"
                    for node in v["nodes"][:3])
                for v in results.response["violations"] if v.get("impact") in BLOCKING_IMPACTS]
    assert not blocking, f"{what} is not accessible:\n" + "\n".join(blocking)


def assert_fits_phone_width(page: Page, what: str) -> None:
    """The page works at a phone's width (390 px, no sideways scrolling) and, there, passes the accessibility
    check: every page the browser tests look at on a phone is also checked by axe."""
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        assert page.evaluate("() => window.innerWidth") == 390
        overflow = page.evaluate("""() => {
            const width = window.innerWidth;
            if (document.scrollingElement.scrollWidth <= width) return null;
            const wide = [...document.querySelectorAll("body *")]
                .filter(el => el.getBoundingClientRect().right > width + 0.5)
                .map(el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
                     + (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "")
                     + " right=" + Math.round(el.getBoundingClientRect().right));
            return {scrollWidth: document.scrollingElement.scrollWidth, wide: wide.slice(0, 10)};
        }""")
        assert overflow is None, f"{what} scrolls sideways at 390 px: {overflow}"
        assert_accessible(page, what)
    finally:
        page.set_viewport_size({"width": 1280, "height": 720})
