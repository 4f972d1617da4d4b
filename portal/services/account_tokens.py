"""Single-use, expiring links for account emails (confirm a sign-up, reset a password, join a studio's team).

A link carries the id of an `AccountToken` row, signed with the app's secret key (itsdangerous, salted per
purpose); the row says whether it was used and until when it is valid. Nothing secret is stored, and the jobs that
send the emails sign the link themselves from the row's id.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select, update

from portal.extensions import db
from portal.models import AccountToken, TokenPurpose, User
from portal.services.errors import InvalidInput

LIFETIMES = {TokenPurpose.CONFIRM_EMAIL: timedelta(hours=72), TokenPurpose.RESET_PASSWORD: timedelta(hours=1),
             TokenPurpose.INVITE: timedelta(hours=72)}


class LinkInvalid(InvalidInput):
    code = "link_invalid"


def _serializer(purpose: TokenPurpose) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=f"account-token:{purpose.value}")


def issue(user: User, purpose: TokenPurpose, *, now: datetime, studio_id: int | None = None) -> AccountToken:
    """Add a new token row to the session (the caller commits); earlier unused ones of the purpose stop working
    (for an invitation: earlier ones to the same studio)."""
    earlier = [AccountToken.user_id == user.id, AccountToken.purpose == purpose, AccountToken.used_at.is_(None)]
    if purpose == TokenPurpose.INVITE:
        earlier.append(AccountToken.studio_id == studio_id)
    db.session.execute(update(AccountToken).where(*earlier).values(used_at=now))
    token = AccountToken(user_id=user.id, studio_id=studio_id, purpose=purpose, expires_at=now + LIFETIMES[purpose],
                         created_at=now)
    db.session.add(token)
    db.session.flush()
    return token


def sign(token: AccountToken) -> str:
    return _serializer(token.purpose).dumps(token.id)


def find(raw: str, purpose: TokenPurpose, *, now: datetime) -> AccountToken:
    """The valid, unused token a link carries, or `LinkInvalid`."""
    try:
        token_id = _serializer(purpose).loads(raw or "")
    except BadSignature:
        token_id = None
    token = None
    if isinstance(token_id, int):
        token = db.session.scalar(select(AccountToken).where(AccountToken.id == token_id,
                                                             AccountToken.purpose == purpose))
    if token is None or token.used_at is not None:
        raise LinkInvalid("This link is not valid any more. Links work once; ask for a new one below.")
    if token.expires_at <= now:
        raise LinkInvalid("This link has expired. Ask for a new one below.")
    return token


def consume(token: AccountToken, *, now: datetime) -> None:
    """Mark the token used, once: a second use of the same link (a double click) is refused."""
    used = db.session.execute(update(AccountToken).where(AccountToken.id == token.id, AccountToken.used_at.is_(None))
                              .values(used_at=now)).rowcount
    if used != 1:
        raise LinkInvalid("This link was just used. Links work once.")
