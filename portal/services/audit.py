"""Audit rows for admin and ops mutations (actor, action, before/after, note, time)."""
from __future__ import annotations

from datetime import datetime

from portal.extensions import db
from portal.models import AuditEntry, User


def record(*, actor: User | None, action: str, target_type: str, target_id: int | None, studio_id: int | None,
           before: dict | None = None, after: dict | None = None, note: str = "",
           now: datetime | None = None) -> AuditEntry:
    """Add an audit row to the session; the caller's commit makes it durable with the change it describes."""
    entry = AuditEntry(actor_id=actor.id if actor else None, action=action, target_type=target_type,
                       target_id=target_id, studio_id=studio_id, before=before, after=after, note=note)
    if now is not None:
        entry.created_at = now
    db.session.add(entry)
    return entry
