"""Accounts: sign-up confirmed by email, sign-in, sessions that end for real, password reset and change.

Sign-up never tells whether an address has an account: a new address gets a confirmation link, a known one gets
an email saying so (with links to log in or reset the password), and the person signing up sees the same answer
either way. A session is valid only while its user's `session_generation` matches the one it was issued with, so
logging out or changing the password ends it on the server, not just in the browser.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from portal.extensions import db
from portal.models import Membership, Role, Studio, TokenPurpose, User
from portal.parsing import whole_number
from portal.services import account_mail, account_tokens
from portal.services.errors import InvalidInput

MIN_PASSWORD_LENGTH = 10
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def find_user(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == normalize_email(email)))


def authenticate(email: str, password: str) -> User | None:
    """The active user with these credentials, or None. Always hashes once, so timing does not reveal emails."""
    user = find_user(email)
    if user is None:
        User(password_hash="").set_password(password or "x")  # constant-ish work for unknown emails
        return None
    if not user.active or not user.check_password(password or ""):
        return None
    return user


def load_session_user(session_id: str) -> User | None:
    """Flask-Login's loader: `<user id>:<session generation>`, valid only while the generation is current."""
    user_id, _, generation = (session_id or "").partition(":")
    user_number, generation_number = whole_number(user_id, 1), whole_number(generation)
    if user_number is None or generation_number is None:
        return None
    user = db.session.get(User, user_number)
    if user is None or user.session_generation != generation_number or user.email_verified_at is None:
        return None
    return user


def end_sessions(user: User) -> None:
    """End every session of `user` (this browser's and any other's), e.g. at logout."""
    db.session.execute(update(User).where(User.id == user.id)
                       .values(session_generation=User.session_generation + 1))
    db.session.commit()
    db.session.refresh(user)


def _check_password(password: str, field: str = "password") -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"Use at least {MIN_PASSWORD_LENGTH} characters for your password.", field=field)
    if len(password) > 1024:
        raise InvalidInput("That password is too long.", field=field)


# --- sign-up ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signup:
    user_id: int
    new: bool  # False: the address already had a confirmed account (the person signing up is not told)


def register_student(*, studio: Studio, email: str, password: str, name: str, now: datetime) -> Signup:
    """Start a sign-up at `studio`. A new (or never confirmed) address gets an account waiting for confirmation and
    a link; a confirmed account gets an email instead, and nothing about it changes."""
    email = normalize_email(email)
    if not EMAIL_PATTERN.match(email) or len(email) > 254:
        raise InvalidInput("Enter a valid email address.", field="email")
    _check_password(password)
    name = (name or "").strip()[:120]
    user = find_user(email)
    if user is not None and user.email_verified_at is not None:
        account_mail.enqueue("account_exists", user.id, studio_id=studio.id)
        return Signup(user.id, new=False)
    if user is None:
        user = User(email=email, name=name, created_at=now)
        db.session.add(user)
    elif name:
        user.name = name
    user.set_password(password)  # an unconfirmed account takes the latest sign-up's password
    db.session.flush()
    if not user.has_role(studio.id, Role.STUDENT):
        db.session.add(Membership(user=user, studio_id=studio.id, role=Role.STUDENT, created_at=now))
    token = account_tokens.issue(user, TokenPurpose.CONFIRM_EMAIL, now=now, studio_id=studio.id)
    db.session.commit()
    account_mail.enqueue("confirm_email", user.id, token_id=token.id, studio_id=studio.id)
    return Signup(user.id, new=True)


def confirm_signup(raw_token: str, *, now: datetime) -> User:
    """Follow a confirmation link: the account can log in from now on."""
    token = account_tokens.find(raw_token, TokenPurpose.CONFIRM_EMAIL, now=now)
    account_tokens.consume(token, now=now)
    user = token.user
    if user.email_verified_at is None:
        user.email_verified_at = now
    db.session.commit()
    return user


def resend_confirmation(email: str, *, studio: Studio, now: datetime) -> None:
    """A new link for an account still waiting for confirmation; nothing (and no tell) otherwise."""
    user = find_user(email)
    if user is None or user.email_verified_at is not None or not user.active:
        return
    token = account_tokens.issue(user, TokenPurpose.CONFIRM_EMAIL, now=now, studio_id=studio.id)
    db.session.commit()
    account_mail.enqueue("confirm_email", user.id, token_id=token.id, studio_id=studio.id)


def join_studio(user: User, studio: Studio, *, now: datetime) -> None:
    """A logged-in person becomes a student of another studio (one account for every studio)."""
    if not user.has_role(studio.id, Role.STUDENT):
        db.session.add(Membership(user=user, studio_id=studio.id, role=Role.STUDENT, created_at=now))
        db.session.commit()


# --- passwords --------------------------------------------------------------------------------------------------

def request_password_reset(email: str, *, now: datetime, studio_id: int | None = None) -> None:
    """Email a reset link if the address has an active account; the caller answers the same either way."""
    user = find_user(email)
    if user is None or not user.active:
        return
    token = account_tokens.issue(user, TokenPurpose.RESET_PASSWORD, now=now, studio_id=studio_id)
    db.session.commit()
    account_mail.enqueue("password_reset", user.id, token_id=token.id, studio_id=studio_id)


def check_reset_link(raw_token: str, *, now: datetime) -> None:
    account_tokens.find(raw_token, TokenPurpose.RESET_PASSWORD, now=now)


def reset_password(raw_token: str, password: str, *, now: datetime) -> User:
    """Set a new password from a reset link; every session of the account ends. Following the link proves the
    address, so an account still waiting for confirmation is confirmed too."""
    _check_password(password)
    token = account_tokens.find(raw_token, TokenPurpose.RESET_PASSWORD, now=now)
    account_tokens.consume(token, now=now)
    user = token.user
    user.set_password(password)
    user.email_verified_at = user.email_verified_at or now
    user.session_generation += 1
    db.session.commit()
    return user


def change_password(user: User, *, current: str, new: str) -> None:
    """Change a logged-in user's password; every session ends (the caller logs this browser in again)."""
    if not user.check_password(current or ""):
        raise InvalidInput("That is not your current password.", field="current_password")
    _check_password(new, field="new_password")
    if current == new:
        raise InvalidInput("Choose a password different from the current one.", field="new_password")
    user.set_password(new)
    user.session_generation += 1
    db.session.commit()


def default_studio_for(user: User) -> Studio | None:
    """Where to land after login: the first studio the user belongs to."""
    memberships = sorted(user.memberships, key=lambda m: (m.role != Role.ADMIN, m.id))
    return memberships[0].studio if memberships else None
