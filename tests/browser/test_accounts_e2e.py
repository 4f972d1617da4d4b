"""A new student's account in a real browser on a phone: sign up, confirm from the email, change the password,
log out, forget it, reset it from the email, and log back in. Every page is checked for sideways scrolling."""
from __future__ import annotations

import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import STUDIO, assert_fits_phone_width, wait_for

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
EMAIL = "nina@example.com"


def mails_to(app, address: str, subject: str) -> list:
    folder = Path(app.instance_path) / "mail"
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"] == address and message["Subject"] == subject:
            found.append(message)
    return found


def link_from(app, address: str, subject: str, marker: str) -> str:
    mails = wait_for(lambda: mails_to(app, address, subject), bool)
    assert mails, f"no '{subject}' email to {address}"
    text = mails[-1].get_body(("plain",)).get_content()
    return re.search(r"\S*" + re.escape(marker) + r"\S*", text).group(0)


@pytest.mark.parametrize("context_options", [PHONE])
def test_sign_up_confirm_change_forget_and_reset_a_password(page: Page, live_app, live_server):
    page.goto(f"{STUDIO}/")
    page.get_by_role("link", name="Sign up").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Join Melody & Meter")
    assert_fits_phone_width(page, "sign-up")
    page.get_by_label("Your name").fill("Nina")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill("first-password-1")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    assert_fits_phone_width(page, "check your inbox")

    confirm = link_from(live_app, EMAIL, "Confirm your email to finish signing up", "/signup/confirm/")
    assert confirm.startswith(live_server)
    page.goto(confirm)
    assert_fits_phone_width(page, "confirm your email")
    page.get_by_role("button", name="Confirm my email").click()
    page.wait_for_url(f"**{STUDIO}/")
    expect(page.locator(".alert-success")).to_contain_text("Your email is confirmed")
    expect(page.locator(".site-header")).to_contain_text("Nina")

    page.get_by_role("link", name="Nina").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    assert_fits_phone_width(page, "your account")
    page.get_by_label("Current password").fill("first-password-1")
    page.get_by_label("New password").fill("second-password-2")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".alert-success")).to_contain_text("Your password was changed")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.get_by_role("link", name="Forgot your password?").click()
    assert_fits_phone_width(page, "forgot your password")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_role("button", name="Send the link").click()
    expect(page.locator(".alert-info")).to_contain_text("If an account uses that address")

    reset = link_from(live_app, EMAIL, "Reset your password", "/password/reset/")
    page.goto(reset)
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    assert_fits_phone_width(page, "choose a new password")
    page.get_by_label("New password").fill("third-password-3")
    page.get_by_role("button", name="Change my password").click()
    page.wait_for_url("**/login")
    expect(page.locator(".alert-success")).to_contain_text("Log in with the new password")

    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill("second-password-2")  # the old one no longer works
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_contain_text("do not match")
    page.get_by_label("Password").fill("third-password-3")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{STUDIO}/")
    page.goto(reset)  # the link worked once
    expect(page.locator("#reset-error")).to_contain_text("not valid any more")
