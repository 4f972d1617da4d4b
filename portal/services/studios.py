"""Platform-level studio life: onboarding a new studio, suspending and resuming one (ops work, audited)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, available_timezones

from babel import Locale, UnknownLocaleError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from portal import tenancy
from portal.extensions import db
from portal.formatting import SYMBOLS, ZERO_DECIMAL
from portal.models import Studio
from portal.services import accounts, audit, configuration, team
from portal.services.errors import Conflict, InvalidInput, NotFound

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
#: Currencies the portal can show and charge (Stripe takes many more; each needs its display rule here first).
CURRENCIES = tuple(sorted(set(SYMBOLS) | ZERO_DECIMAL))
RESERVED_SLUGS = {"admin", "api", "ops", "login", "logout", "static", "www"}


@dataclass(frozen=True)
class NewStudio:
    name: str
    slug: str
    timezone: str
    currency: str
    locale: str
    admin_email: str


def validate(form: NewStudio) -> tuple[NewStudio, dict[str, str]]:
    """The form cleaned up, and a message per field that is wrong."""
    errors: dict[str, str] = {}
    name, slug = form.name.strip(), form.slug.strip().lower()
    if not name or len(name) > 120:
        errors["name"] = "Give the studio a name of up to 120 characters."
    if not _SLUG.match(slug) or slug in RESERVED_SLUGS:
        errors["slug"] = "Use lower-case letters, digits and dashes (it becomes the address /s/<slug>/)."
    elif db.session.scalar(select(Studio.id).where(Studio.slug == slug)) is not None:
        errors["slug"] = "Another studio has this address already."
    timezone = form.timezone.strip()
    if timezone not in available_timezones():
        errors["timezone"] = "Choose a timezone like America/New_York or Europe/London."
    currency = form.currency.strip().lower()
    if currency not in CURRENCIES:
        errors["currency"] = f"Choose one of {', '.join(c.upper() for c in CURRENCIES)}."
    locale = form.locale.strip() or "en_US"
    try:
        Locale.parse(locale)
    except (ValueError, UnknownLocaleError):
        errors["locale"] = "Choose a locale like en_US or en_GB."
    email = form.admin_email.strip().lower()
    if not accounts.EMAIL_PATTERN.match(email) or len(email) > 254:
        errors["admin_email"] = "Enter the email address of the studio's first admin."
    return NewStudio(name, slug, timezone, currency, locale, email), errors


def create(form: NewStudio, *, actor: audit.Actor, now: datetime) -> Studio:
    """A new studio with its first configuration version (no rooms or packages yet: its admin adds them), and an
    invitation to its first admin. `InvalidInput` names the first field that is wrong."""
    with tenancy.all_tenants():
        form, errors = validate(form)
        if errors:
            field, message = next(iter(errors.items()))
            raise InvalidInput(message, code=f"{field}_invalid", field=field)
        ZoneInfo(form.timezone)
        studio = Studio(slug=form.slug, name=form.name, timezone=form.timezone, currency=form.currency,
                        locale=form.locale, created_at=now)
        db.session.add(studio)
        try:
            db.session.flush()
        except IntegrityError:  # the same address taken by a request that passed validation at the same moment
            db.session.rollback()
            raise InvalidInput("Another studio has this address already.", code="slug_invalid",
                               field="slug") from None
        configuration.start(studio, now=now, actor=actor)
        audit.record(actor=actor, action="studio.create", target_type="studio", target_id=studio.id,
                     studio_id=studio.id, now=now,
                     after={"slug": form.slug, "name": form.name, "timezone": form.timezone,
                            "currency": form.currency, "locale": form.locale})
        db.session.commit()
        with tenancy.scoped(studio.id):
            team.invite(studio, form.admin_email, actor=actor, now=now)
        return studio


def _set_active(studio_id: int, active: bool, *, actor: audit.Actor, note: str, now: datetime) -> None:
    note = (note or "").strip()
    if not note:
        raise InvalidInput("Write a note saying why: it goes in the audit log.", code="note_missing", field="note")
    with tenancy.all_tenants():
        if db.session.get(Studio, studio_id) is None:
            raise NotFound("No such studio.")
        changed = db.session.execute(update(Studio).where(Studio.id == studio_id, Studio.active.is_(not active))
                                     .values(active=active)).rowcount
        if changed != 1:
            db.session.rollback()
            raise Conflict(f"This studio is already {'open' if active else 'suspended'}.")
        audit.record(actor=actor, action="studio.resume" if active else "studio.suspend", target_type="studio",
                     target_id=studio_id, studio_id=studio_id, now=now, note=note[:2000],
                     before={"active": not active}, after={"active": active})
        db.session.commit()


def suspend(studio_id: int, *, actor: audit.Actor, note: str, now: datetime) -> None:
    """The studio's pages say it is not taking bookings; nothing is deleted, booked lessons stand."""
    _set_active(studio_id, False, actor=actor, note=note, now=now)


def resume(studio_id: int, *, actor: audit.Actor, note: str, now: datetime) -> None:
    _set_active(studio_id, True, actor=actor, note=note, now=now)
