"""Accounts over HTTP: sign-up confirmed by email without telling who has an account, sessions that end on the
server, and passwords reset or changed."""
from __future__ import annotations

import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Membership, Role, User
from tests.conftest import csrf_token_from
from tests.factories import PASSWORD, make_studio, make_user
from tests.payments.helpers import drain

STUDIO = "/s/melody-and-meter"


@pytest.fixture
def studio(app):
    # No app context stays pushed in the test thread: requests would share its session, and on SQLite its open
    # transaction would hold the write lock while the mail jobs wait for it.
    with app.app_context():
        studio = make_studio()
        make_user("student@example.com", roles=[(studio, Role.STUDENT)])
        return studio.id


def mailbox(app) -> list:
    """Messages the file mail backend wrote, oldest first."""
    drain(app)
    folder = Path(app.instance_path) / "mail"
    return [message_from_bytes(path.read_bytes(), policy=policy.default)
            for path in sorted(folder.glob("*.eml"))] if folder.exists() else []


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def link_in(message, pattern: str) -> str:
    match = re.search(r"\S*" + re.escape(pattern) + r"\S*", text_of(message))
    assert match, text_of(message)
    return re.sub(r"^https?://[^/]+", "", match.group(0))


def _signup(client, email, password="long-enough-1", name="Nina"):
    token = csrf_token_from(client.get(f"{STUDIO}/signup").get_data(as_text=True))
    return client.post(f"{STUDIO}/signup", data={"name": name, "email": email, "password": password,
                                                 "csrf_token": token})


def _without_token(response) -> str:
    """The page with its CSRF token blanked: the token is signed with the second it was made in."""
    html = response.get_data(as_text=True)
    return html.replace(csrf_token_from(html), "…")


def _login(client, email, password):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def test_sign_up_is_finished_by_the_emailed_link(app, client, studio):
    short = _signup(client, "new@example.com", password="short")
    assert short.status_code == 422 and "at least 10 characters" in short.get_data(as_text=True)
    created = _signup(client, "New@Example.com")
    assert created.status_code == 303 and created.headers["Location"] == f"{STUDIO}/signup/sent"
    assert "Check your inbox" in client.get(created.headers["Location"]).get_data(as_text=True)
    (first_mail,) = mailbox(app)
    not_yet = _login(client, "new@example.com", "long-enough-1")
    assert not_yet.status_code == 422 and "confirm your email address first" in not_yet.get_data(as_text=True)
    (latest_mail,) = [m for m in mailbox(app) if m["Message-ID"] != first_mail["Message-ID"]]  # a new link
    for mail in (first_mail, latest_mail):
        assert (mail["To"], mail["Subject"]) == ("new@example.com", "Confirm your email to finish signing up")
    first_link, latest_link = (link_in(mail, "/signup/confirm/") for mail in (first_mail, latest_mail))
    assert "Confirm my email" in client.get(latest_link).get_data(as_text=True)  # a GET changes nothing
    token = csrf_token_from(client.get(latest_link).get_data(as_text=True))
    assert client.post(first_link, data={"csrf_token": token}).status_code == 410  # replaced by the newer link
    confirmed = client.post(latest_link, data={"csrf_token": token})
    assert confirmed.status_code == 303 and confirmed.headers["Location"] == f"{STUDIO}/"
    assert "Nina" in client.get(f"{STUDIO}/").get_data(as_text=True)  # logged in
    assert client.post(latest_link, data={"csrf_token": token}).status_code == 410  # a link works once
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "new@example.com"))
        assert user.email_verified_at is not None
        assert db.session.scalar(select(Membership.role).where(Membership.user_id == user.id)) == Role.STUDENT


def test_sign_up_with_a_known_address_answers_the_same_and_emails_the_owner(app, client, studio):
    fresh = _signup(client, "someone-new@example.com", password="guessing-123")
    known = _signup(client, "student@example.com", password="guessing-123")
    assert (known.status_code, known.headers["Location"]) == (fresh.status_code, fresh.headers["Location"])
    known_page, fresh_page = (_without_token(client.get(r.headers["Location"])) for r in (known, fresh))
    assert known_page == fresh_page
    (notice,) = [m for m in mailbox(app) if m["To"] == "student@example.com"]
    assert notice["Subject"] == "You already have an account"
    assert "/login" in text_of(notice) and "/password/forgot" in text_of(notice)
    assert _login(client, "student@example.com", "guessing-123").status_code == 422  # nothing was changed
    assert _login(client, "student@example.com", PASSWORD).status_code == 303


def test_logout_ends_the_session_on_the_server(app, client, studio):
    assert _login(client, "student@example.com", PASSWORD).status_code == 303
    captured = client.get_cookie("session").value
    assert client.get(f"{STUDIO}/lessons").status_code == 200
    token = csrf_token_from(client.get(f"{STUDIO}/").get_data(as_text=True))
    client.post("/logout", data={"csrf_token": token})
    replayed = app.test_client()
    replayed.set_cookie("session", captured, domain="localhost")
    again = replayed.get(f"{STUDIO}/lessons")
    assert again.status_code == 302 and again.headers["Location"].startswith("/login")


def test_a_password_change_ends_every_other_session(app, client, studio):
    laptop, phone = client, app.test_client()
    for device in (laptop, phone):
        assert _login(device, "student@example.com", PASSWORD).status_code == 303
    token = csrf_token_from(laptop.get("/account").get_data(as_text=True))
    wrong = laptop.post("/account/password", data={"current_password": "not-it-at-all", "new_password": "x" * 12,
                                                   "csrf_token": token})
    assert wrong.status_code == 422 and "not your current password" in wrong.get_data(as_text=True)
    changed = laptop.post("/account/password", data={"current_password": PASSWORD,
                                                     "new_password": "a-brand-new-one", "csrf_token": token})
    assert changed.status_code == 303
    assert laptop.get(f"{STUDIO}/lessons").status_code == 200  # this browser goes on
    assert phone.get(f"{STUDIO}/lessons").status_code == 302  # the other one is logged out
    assert _login(phone, "student@example.com", "a-brand-new-one").status_code == 303


def test_a_forgotten_password_is_reset_once_by_the_emailed_link(app, client, studio):
    token = csrf_token_from(client.get("/password/forgot").get_data(as_text=True))
    unknown = client.post("/password/forgot", data={"email": "nobody@example.com", "csrf_token": token})
    known = client.post("/password/forgot", data={"email": "student@example.com", "csrf_token": token})
    assert unknown.get_data(as_text=True) == known.get_data(as_text=True)  # no tell
    (mail,) = mailbox(app)
    assert mail["To"] == "student@example.com" and mail["Subject"] == "Reset your password"
    link = link_in(mail, "/password/reset/")
    other = app.test_client()
    assert _login(other, "student@example.com", PASSWORD).status_code == 303
    assert client.get(link).status_code == 200
    reset = client.post(link, data={"password": "my-new-password", "csrf_token": token})
    assert reset.status_code == 303 and reset.headers["Location"] == "/login"
    assert client.post(link, data={"password": "another-password", "csrf_token": token}).status_code == 410
    assert other.get(f"{STUDIO}/lessons").status_code == 302  # sessions ended
    assert _login(client, "student@example.com", "my-new-password").status_code == 303
    assert client.get("/password/reset/forged-token").status_code == 410


def test_a_member_of_another_studio_joins_with_one_click(app, client, studio):
    with app.app_context():
        make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("violin",))
    assert _login(client, "student@example.com", PASSWORD).status_code == 303
    home = client.get("/s/north-strings/").get_data(as_text=True)
    assert "Book lessons here" in home
    joined = client.post("/s/north-strings/join", data={"csrf_token": csrf_token_from(home)})
    assert joined.status_code == 303
    assert "Book lessons here" not in client.get("/s/north-strings/").get_data(as_text=True)
    assert client.get("/s/north-strings/lessons").status_code == 200
