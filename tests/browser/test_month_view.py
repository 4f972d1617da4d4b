"""The picker's month view in a real browser: the calendar marks exactly the days the range API says have free
times, a day is chosen by click or keyboard, months page forward and back, and it all fits a phone."""
from __future__ import annotations

import calendar
import re
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from portal import formatting
from portal.clock import utcnow
from tests.browser.helpers import PACKAGE_SLUG, STUDIO, assert_fits_phone_width, lesson_day, log_in, open_package

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

MONTH = "#slots .month"
NEW_YORK = ZoneInfo("America/New_York")  # the demo studio's timezone


def free_days_from_the_api(page: Page, month_first: date) -> set[str]:
    last = month_first.replace(day=calendar.monthrange(month_first.year, month_first.month)[1])
    answer = page.request.get(f"{STUDIO}/api/availability?package={PACKAGE_SLUG}&resource=piano"
                              f"&from={month_first}&to={last}")
    assert answer.ok
    return {d["date"] for d in answer.json()["days"] if d["slots"]}


def linked_days(page: Page, month_first: date) -> set[str]:
    numbers = page.locator(f"{MONTH} td.has-times a").all_inner_texts()
    return {month_first.replace(day=int(n)).isoformat() for n in numbers}


def choose_piano(page: Page) -> None:
    page.locator("#resource").select_option("piano")
    expect(page.locator("#slots-heading")).to_contain_text("Piano room")


def test_month_view_marks_the_free_days_and_opens_one(page: Page, live_app):
    log_in(page)
    open_package(page)
    choose_piano(page)
    month = page.locator(MONTH)
    today = utcnow().astimezone(NEW_YORK).date()
    shown_first = today.replace(day=1)
    expect(month.get_by_role("heading", level=2)).to_have_text(f"{calendar.month_name[today.month]} {today.year}")
    expect(month.get_by_role("table")).to_have_accessible_name(f"{calendar.month_name[today.month]} {today.year}")
    assert linked_days(page, shown_first) == free_days_from_the_api(page, shown_first)
    assert month.locator("th").first.get_attribute("abbr") == "Sunday"  # en_US weeks start on Sunday

    day = lesson_day()
    if day.month != today.month:
        month.get_by_role("link", name="Next month").click()
        expect(month.get_by_role("heading", level=2)).to_have_text(f"{calendar.month_name[day.month]} {day.year}")
        assert linked_days(page, day.replace(day=1)) == free_days_from_the_api(page, day.replace(day=1))
        expect(page.locator("#slots-heading")).to_contain_text("Piano room")  # the room stays chosen
    link = month.get_by_role("link", name=re.compile(rf"^{re.escape(formatting.day(day))}: \d+ free times$"))
    link.click()
    expect(page.locator("#slots-heading")).to_contain_text(f"Free times on {formatting.day(day)}")
    expect(page).to_have_url(re.compile(rf"\?(?=.*resource=piano)(?=.*date={day.isoformat()})"))
    expect(page.locator("#date")).to_have_value(day.isoformat())
    chosen = month.locator("[aria-current=date]")
    expect(chosen).to_have_text(str(day.day))
    count = int(re.search(r"(\d+) free times", chosen.get_attribute("aria-label")).group(1))
    expect(page.locator("#slots ul.slot-list li")).to_have_count(count)

    # The keyboard: tab to the next day with times and open it with Enter.
    following = month.locator("td.has-times a").filter(has_not=page.locator("[aria-current]"))
    target = next((a for a in following.all() if int(a.inner_text()) > day.day), None)
    if target is not None:
        target.focus()
        page.keyboard.press("Enter")
        other = day.replace(day=int(target.inner_text()))
        expect(page.locator("#slots-heading")).to_contain_text(f"Free times on {formatting.day(other)}")


@pytest.mark.parametrize("context_options", [{"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                                              "has_touch": True, "device_scale_factor": 3}])
def test_month_view_fits_a_phone_and_pages_back(page: Page, live_app):
    open_package(page)
    choose_piano(page)
    month = page.locator(MONTH)
    expect(month.get_by_role("link", name="Previous month")).to_have_count(0)  # before the booking window
    month.get_by_role("link", name="Next month").click()
    next_first = (utcnow().astimezone(NEW_YORK).date().replace(day=1) + timedelta(days=32)).replace(day=1)
    expect(month.get_by_role("heading", level=2)).to_have_text(
        f"{calendar.month_name[next_first.month]} {next_first.year}")
    box = month.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    cell = month.locator("td.has-times a").first.bounding_box()
    assert cell["height"] >= 40 and cell["width"] >= 40  # big enough to tap
    assert_fits_phone_width(page, "the package page with its month view")
    month.get_by_role("link", name="Previous month").tap()
    today = utcnow().astimezone(NEW_YORK).date()
    expect(month.get_by_role("heading", level=2)).to_have_text(f"{calendar.month_name[today.month]} {today.year}")
