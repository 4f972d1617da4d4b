"""Platform-level studio life: onboarding a new studio, suspending and resuming one (ops work, audited)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from portal import tenancy
from portal.extensions import db
from portal.models import Studio
from portal.services import audit
from portal.services.errors import Conflict, InvalidInput, NotFound


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
