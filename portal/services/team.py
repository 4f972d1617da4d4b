"""A studio's team: its admins, invitations to join them, and removing one.

An invitation is a single-use `AccountToken` (purpose `invite`, the studio's id) that expires after 72 hours; the
emailed link carries its id, signed. A person without an account gets one waiting for them (unconfirmed, no usable
password): following the link, they choose their name and password and the address counts as confirmed. A person
with an account logs in and accepts. Either way they become an admin of the studio. A studio always keeps at least
one admin: the last one can neither leave nor be removed. Every change is audited.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, select, update

from portal.extensions import db
from portal.models import AccountToken, Membership, Role, Studio, TokenPurpose, User
from portal.services import account_mail, account_tokens, accounts, audit
from portal.services.errors import Conflict, InvalidInput, NotFound


class AlreadyAdmin(Conflict):
    code = "already_admin"


class LastAdmin(Conflict):
    code = "last_admin"


class WrongAccount(Conflict):
    status = 403
    code = "wrong_account"


@dataclass(frozen=True)
class Member:
    user_id: int
    name: str
    email: str
    since: datetime


@dataclass(frozen=True)
class Invitation:
    id: int
    email: str
    invited_at: datetime
    expires_at: datetime


def admins(studio: Studio) -> list[Member]:
    rows = db.session.execute(
        select(User.id, User.name, User.email, Membership.created_at).join(Membership, Membership.user_id == User.id)
        .where(Membership.studio_id == studio.id, Membership.role == Role.ADMIN)
        .order_by(func.lower(User.email))).all()
    return [Member(*r) for r in rows]


def pending_invitations(studio: Studio, *, now: datetime) -> list[Invitation]:
    rows = db.session.execute(
        select(AccountToken.id, User.email, AccountToken.created_at, AccountToken.expires_at)
        .join(User, User.id == AccountToken.user_id)
        .where(AccountToken.studio_id == studio.id, AccountToken.purpose == TokenPurpose.INVITE,
               AccountToken.used_at.is_(None), AccountToken.expires_at > now)
        .order_by(AccountToken.created_at.desc(), AccountToken.id.desc())).all()
    return [Invitation(*r) for r in rows]


def invite(studio: Studio, email: str, *, actor: audit.Actor, now: datetime) -> int:
    """Invite `email` to become an admin; the email is sent by a job. Inviting the same address again replaces the
    earlier link. Returns the invitation's id."""
    email = accounts.normalize_email(email)
    if not accounts.EMAIL_PATTERN.match(email) or len(email) > 254:
        raise InvalidInput("Enter a valid email address.", code="email_invalid", field="email")
    user = accounts.find_user(email)
    if user is not None and user.has_role(studio.id, Role.ADMIN):
        raise AlreadyAdmin(f"{user.email} is already an admin of this studio.", field="email")
    if user is None:
        user = User(email=email, name="", created_at=now)
        user.set_password(secrets.token_urlsafe(32))  # nobody knows it: the invitation sets the real one
        db.session.add(user)
        db.session.flush()
    token = account_tokens.issue(user, TokenPurpose.INVITE, now=now, studio_id=studio.id)
    audit.record(actor=actor, action="team.invite", target_type="invitation", target_id=token.id,
                 studio_id=studio.id, now=now, after={"email": user.email, "expires_at": token.expires_at.isoformat()})
    db.session.commit()
    account_mail.enqueue("invite", user.id, token_id=token.id, studio_id=studio.id)
    return token.id


def revoke(studio: Studio, invitation_id: int, *, actor: audit.Actor, now: datetime) -> None:
    """The link stops working at once. Refused (409) when it was accepted or revoked meanwhile."""
    token = db.session.scalar(select(AccountToken).where(
        AccountToken.id == invitation_id, AccountToken.studio_id == studio.id,
        AccountToken.purpose == TokenPurpose.INVITE))
    if token is None:
        raise NotFound("No such invitation.")
    done = db.session.execute(update(AccountToken).where(AccountToken.id == token.id, AccountToken.used_at.is_(None))
                              .values(used_at=now)).rowcount
    if done != 1:
        db.session.rollback()
        raise Conflict("This invitation was already accepted or revoked.")
    audit.record(actor=actor, action="team.revoke_invitation", target_type="invitation", target_id=token.id,
                 studio_id=studio.id, now=now, before={"email": token.user.email})
    db.session.commit()


def remove_admin(studio: Studio, user_id: int, *, actor: audit.Actor, now: datetime, note: str = "") -> None:
    """Take the admin role away (any other role stays). The studio's last admin stays, whoever asks."""
    # One statement decides: the row goes only while another admin remains. The studio row is locked first
    # (PostgreSQL), so two admins removing each other at once cannot both succeed.
    db.session.execute(select(Studio.id).where(Studio.id == studio.id).with_for_update())
    others = (select(func.count(Membership.id)).where(Membership.studio_id == studio.id,
                                                      Membership.role == Role.ADMIN, Membership.user_id != user_id)
              .scalar_subquery())
    target = and_(Membership.studio_id == studio.id, Membership.role == Role.ADMIN, Membership.user_id == user_id)
    email = db.session.scalar(select(User.email).join(Membership, Membership.user_id == User.id).where(target))
    if email is None:
        db.session.rollback()
        raise NotFound("That person is not an admin of this studio.")
    removed = db.session.execute(delete(Membership).where(target, others > 0)
                                 .execution_options(synchronize_session=False)).rowcount
    if removed != 1:
        db.session.rollback()
        raise LastAdmin("A studio needs at least one admin: invite someone else first, then try again.")
    audit.record(actor=actor, action="team.remove_admin", target_type="user", target_id=user_id,
                 studio_id=studio.id, now=now, before={"email": email, "role": "admin"}, note=note)
    db.session.commit()
    db.session.expire_all()


# --- following the link -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Welcome:
    """What the invitation page shows."""

    token: AccountToken
    email: str
    needs_password: bool  # no confirmed account yet: they choose a name and password


def open_invitation(raw: str, studio: Studio, *, now: datetime) -> Welcome:
    token = account_tokens.find(raw, TokenPurpose.INVITE, now=now)
    if token.studio_id != studio.id:
        raise account_tokens.LinkInvalid("This invitation is for another studio.")
    return Welcome(token, token.user.email, token.user.email_verified_at is None)


def _join(studio: Studio, user: User, token: AccountToken, now: datetime) -> None:
    account_tokens.consume(token, now=now)
    if not user.has_role(studio.id, Role.ADMIN):
        db.session.add(Membership(user_id=user.id, studio_id=studio.id, role=Role.ADMIN, created_at=now))
    audit.record(actor=audit.Actor.of(user), action="team.join", target_type="invitation", target_id=token.id,
                 studio_id=studio.id, now=now, after={"email": user.email, "role": "admin"})
    db.session.commit()
    db.session.refresh(user)


def accept_as_new(raw: str, studio: Studio, *, name: str, password: str, now: datetime) -> User:
    """Someone without an account: they choose their name and password; following the link confirmed the address."""
    welcome = open_invitation(raw, studio, now=now)
    if not welcome.needs_password:
        raise Conflict("This address already has an account: log in to accept the invitation.")
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Tell us your name: the rest of the team sees it.", code="name_missing", field="name")
    accounts._check_password(password)
    user = welcome.token.user
    user.name = name[:120]
    user.set_password(password)
    user.email_verified_at = now
    user.session_generation += 1
    _join(studio, user, welcome.token, now)
    return user


def accept_as_member(raw: str, studio: Studio, *, user: User, now: datetime) -> None:
    """Someone with an account, logged in as the person invited."""
    welcome = open_invitation(raw, studio, now=now)
    if welcome.token.user_id != user.id:
        raise WrongAccount(f"This invitation was sent to {welcome.email}. Log out, then log in with that account "
                           "to accept it.")
    _join(studio, user, welcome.token, now)
