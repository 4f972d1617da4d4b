"""Audit rows: who changed what, with the state before and after, a note and the time.

Every change a person makes is audited, and system changes where someone would later ask "why did this change?"
(a hold expired, a payment refunded automatically). A row is added to the session of the change it describes, so
both are committed, or neither.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from portal.extensions import db
from portal.models import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who made a change: a person ("user"), the portal on its own ("system"), a named job ("job"), or a studio API
    key ("api_key"). `label` is how the audit log names it; `user_id` links a person's rows to their account."""

    kind: str
    label: str
    user_id: int | None = None

    @classmethod
    def of(cls, user) -> Actor:
        return cls("user", user.email, user.id)

    @classmethod
    def job(cls, name: str) -> Actor:
        return cls("job", name)

    @classmethod
    def api_key(cls, key_id: int, name: str) -> Actor:
        return cls("api_key", f"{name} (key #{key_id})")


SYSTEM = Actor("system", "system")


def record(*, actor: Actor, action: str, target_type: str, target_id: int | None, studio_id: int | None,
           now: datetime, before: dict | None = None, after: dict | None = None, note: str = "") -> AuditEntry:
    """Add an audit row to the session; the caller's commit makes it durable with the change it describes."""
    entry = AuditEntry(actor_kind=actor.kind, actor_id=actor.user_id, actor_label=actor.label[:254], action=action,
                       target_type=target_type, target_id=target_id, studio_id=studio_id, before=before,
                       after=after, note=note, created_at=now)
    db.session.add(entry)
    return entry
