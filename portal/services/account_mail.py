"""Account emails: confirm a sign-up, "you already have an account", reset a password, join a studio's team.

Queued as jobs that carry only ids (`send_account_email`); the job signs the link itself from the token row, and
each message is sent once per key, like the booking notifications.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime

from portal import dispatch, formatting
from portal.extensions import db
from portal.models import AccountToken, Studio, User
from portal.services import account_tokens, configuration, notifications

log = logging.getLogger(__name__)

KINDS = ("confirm_email", "account_exists", "password_reset", "invite")
SUBJECTS = {
    "confirm_email": "Confirm your email to finish signing up",
    "account_exists": "You already have an account",
    "password_reset": "Reset your password",
    "invite": "You are invited to run a studio on Studio Portal",
}


def enqueue(kind: str, user_id: int, *, token_id: int | None = None, studio_id: int | None = None) -> bool:
    """Queue an account email; call it after the change it belongs to is committed."""
    if kind not in KINDS:
        raise ValueError(f"unknown account email {kind!r}")
    reference = str(token_id) if token_id is not None else uuid.uuid4().hex
    try:
        dispatch.enqueue("send_account_email", kind, user_id, token_id, studio_id, reference)
    except dispatch.DispatchError as error:
        log.warning("%s email for user %s not queued: %s", kind, user_id, error)
        return False
    return True


def send(kind: str, user_id: int, token_id: int | None, studio_id: int | None, reference: str, *,
         now: datetime) -> bool:
    user = db.session.get(User, user_id)
    if user is None:
        return False
    studio = db.session.get(Studio, studio_id) if studio_id is not None else None
    context = {"kind": kind, "recipient": user.email, "student_name": user.name or user.email,
               "studio_name": configuration.document_of(studio)["branding"]["display_name"] if studio
               else "Studio Portal", "subject": SUBJECTS[kind],
               "login_url": notifications.absolute_url("auth.login"),
               "forgot_url": notifications.absolute_url("auth.forgot_password")}
    if token_id is not None:
        token = db.session.get(AccountToken, token_id)
        if token is None or token.used_at is not None:
            return False  # replaced by a newer link meanwhile
        signed = account_tokens.sign(token)
        if kind == "confirm_email":
            context["action_url"] = notifications.absolute_url("studio.signup_confirm", studio_slug=studio.slug,
                                                               token=signed)
        elif kind == "invite":
            context["action_url"] = notifications.absolute_url("admin.team_invitation", studio_slug=studio.slug,
                                                               token=signed)
            context["expires_at"] = formatting.when(token.expires_at, studio.tz, studio.locale)
            context["has_account"] = user.email_verified_at is not None
            context["student_name"] = user.name or user.email
            context["subject"] = f"You are invited to help run {context['studio_name']}"
        else:
            context["action_url"] = notifications.absolute_url("auth.reset_password", token=signed)
    else:
        context["action_url"] = context["login_url"]
        if studio is not None:
            context["studio_url"] = notifications.absolute_url("studio.home", studio_slug=studio.slug)
    message = notifications.render_message(kind, context, now)
    db.session.rollback()  # hold no transaction while the mail server answers
    draft = notifications.Draft(studio_id=studio_id, recipient=user.email, message=message)
    return notifications.deliver(f"account:{kind}:{reference}", kind, draft, now)
