"""An admin adds a package and changes the studio's primary colour in a real browser: a draft that also features the
new package, a preview only they see, a publish a student sees on their next page (the new colour, the package
featured), a rollback that restores the old colour, and the audit log listing all of it.
Then an API key is created (shown once) and revoked. Every page is checked at phone width too.

On the demo data (Melody & Meter, whose published primary colour is #4b3fa7) and PostgreSQL.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import STUDENT, STUDIO, assert_fits_phone_width

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

ADMIN = ("admin@example.com", "demo-password-1")
OLD, NEW = "#4b3fa7", "#0b6e4f"
OLD_RGB, NEW_RGB = "rgb(75, 63, 167)", "rgb(11, 110, 79)"
CONFIG = f"{STUDIO}/admin/configuration"


def log_in_as(page: Page, who: tuple[str, str]) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(who[0])
    page.get_by_label("Password").fill(who[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def header_colour(page: Page) -> str:
    return page.evaluate("() => getComputedStyle(document.querySelector('.site-header')).backgroundColor")


def theme_href(page: Page) -> str:
    return page.locator('link[rel="stylesheet"][href*="/theme/"]').get_attribute("href")


def theme_text(page: Page) -> str:
    """The theme stylesheet the page really loaded, read from the browser's CSSOM."""
    return page.evaluate("""() => [...document.styleSheets].filter(s => s.href && s.href.includes('/theme/'))
        .map(s => [...s.cssRules].map(r => r.cssText).join('\\n')).join('\\n')""")


def test_an_admin_drafts_previews_publishes_and_rolls_back_a_colour(page: Page, browser, live_server):
    student_context = browser.new_context(base_url=live_server)
    try:
        student = student_context.new_page()
        log_in_as(student, STUDENT)
        student.goto(f"{STUDIO}/")
        assert header_colour(student) == OLD_RGB

        log_in_as(page, ADMIN)
        page.goto(f"{STUDIO}/admin/catalogue")
        page.get_by_role("link", name="Add a package").click()
        page.get_by_label("Name", exact=True).fill("Ensemble coaching")
        page.get_by_label("Length in minutes").fill("45")
        page.get_by_label(re.compile(r"^Price")).fill("55.00")
        page.get_by_role("button", name="Add package").click()
        expect(page.locator(".alert-success")).to_be_visible()
        page.goto(CONFIG)
        expect(page.get_by_role("heading", name="Published: version 1")).to_be_visible()
        assert_fits_phone_width(page, "the configuration page")
        page.get_by_role("link", name="Start a new draft").click()
        expect(page.get_by_role("heading", name="New draft")).to_be_visible()
        assert_fits_phone_width(page, "the draft editor")
        text = page.locator('input[name="branding.primary_color"]')
        expect(text).to_have_value(OLD)
        page.locator('input[name="branding.primary_color.picker"]').fill(NEW)
        expect(text).to_have_value(NEW)  # the picker and the text field move together
        page.locator('input[name="packages.ensemble-coaching.featured"]').check()
        page.locator('input[name="note"]').fill("Green for the spring term")
        page.get_by_role("button", name="Save and preview").click()

        page.wait_for_url(f"**{STUDIO}/")
        expect(page.locator(".preview-banner")).to_contain_text("Preview of draft version 2")
        assert theme_href(page).endswith("/theme/2.css")
        assert f"--brand: {NEW}" in theme_text(page)
        assert header_colour(page) == NEW_RGB
        assert_fits_phone_width(page, "the home page in preview")
        student.reload()
        assert header_colour(student) == OLD_RGB and student.locator(".preview-banner").count() == 0

        page.goto(f"{CONFIG}/versions/2")
        expect(page.locator('tr[data-path="branding.primary_color"] td.after')).to_have_text(NEW)
        assert_fits_phone_width(page, "the draft's page")
        publish = page.locator("#publish")
        publish.get_by_label("Note for the audit log").fill("Spring colours")
        publish.get_by_role("button", name="Publish version 2").click()
        page.wait_for_url(f"**{CONFIG}")
        expect(page.locator(".alert-success")).to_contain_text("Version 2 is published")
        expect(page.get_by_role("heading", name="Published: version 2")).to_be_visible()

        student.reload()
        assert header_colour(student) == NEW_RGB
        assert theme_href(student).endswith("/theme/2.css") and f"--brand: {NEW}" in theme_text(student)
        first_card = student.locator("#packages li.package").first
        expect(first_card).to_contain_text("Ensemble coaching")  # featured packages come first
        expect(first_card.locator(".featured-badge")).to_have_text("Featured")

        page.goto(f"{CONFIG}/diff?from=1&to=2")
        expect(page.locator('tr[data-path="branding.primary_color"]')).to_have_count(1)
        expect(page.locator('tr[data-path="packages.ensemble-coaching.featured"]')).to_have_count(1)
        assert_fits_phone_width(page, "the diff")
        page.goto(f"{CONFIG}/versions/1")
        rollback = page.locator("#rollback")
        rollback.get_by_label("Note for the audit log").fill("Back to purple")
        rollback.get_by_role("button", name="Roll back to version 1").click()
        page.wait_for_url(f"**{CONFIG}")
        expect(page.get_by_role("heading", name="Published: version 3")).to_be_visible()
        student.reload()
        assert header_colour(student) == OLD_RGB and theme_href(student).endswith("/theme/3.css")

        page.goto(f"{STUDIO}/admin/audit")
        entries = page.locator("li.audit-entry")
        expect(entries.first).to_contain_text("Published a configuration version")
        actions = entries.evaluate_all("els => els.map(e => e.dataset.action)")
        assert actions[:5] == ["configuration_version.publish", "config.rollback", "config.draft",
                               "configuration_version.publish", "config.draft"]
        expect(page.locator("#audit")).to_contain_text("Back to purple")
        expect(page.locator("#audit")).to_contain_text("Green for the spring term")
        expect(entries.nth(3).locator("td.after").first).to_have_text("published")
        assert_fits_phone_width(page, "the audit log")
    finally:
        student_context.close()


def test_an_admin_creates_and_revokes_an_api_key(page: Page, live_server):
    log_in_as(page, ADMIN)
    page.goto(f"{STUDIO}/admin/api-keys")
    page.get_by_label("Name").fill("pricing assistant")
    page.get_by_label("config:propose").check()
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").input_value()
    assert re.fullmatch(r"sp_[0-9a-f]{12}_\S+", secret)
    expect(page.locator(".new-key")).to_contain_text("only time it is shown")
    assert_fits_phone_width(page, "the API keys page with a new key")
    answer = page.request.post(f"{STUDIO}/api/admin/config/proposals", headers={"Authorization": f"Bearer {secret}"},
                               data={"config": {"policy": {"max_reschedules": 3}}, "note": "Fewer moves"})
    assert answer.status == 201
    page.goto(f"{STUDIO}/admin/api-keys")
    assert secret.split("_", 2)[2] not in page.content()
    expect(page.locator("#api-keys .last-used").first).not_to_have_text("never")
    page.get_by_role("link", name="Revoke…").click()
    assert_fits_phone_width(page, "the revoke confirmation")
    page.get_by_label("Yes, revoke this key").check()
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.locator(".alert-success")).to_contain_text("is revoked")
    again = page.request.get(f"{STUDIO}/api/admin/config/versions", headers={"Authorization": f"Bearer {secret}"})
    assert again.status == 401

    page.goto(CONFIG)
    page.locator("#pending-proposals").get_by_role("link", name=re.compile("Review")).click()
    expect(page.locator('tr[data-path="policy.max_reschedules"]').first).to_be_visible()
    assert_fits_phone_width(page, "the proposal review")
    approve = page.locator("#approve")
    approve.get_by_label("Note for the audit log").fill("Fine by me")
    approve.get_by_role("button", name="Approve and publish").click()
    page.wait_for_url(f"**{CONFIG}")
    expect(page.get_by_role("heading", name="Published: version 2")).to_be_visible()
