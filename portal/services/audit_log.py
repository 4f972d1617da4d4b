"""Reading a studio's audit log: filters (actor, entity, studio-local dates), pages newest first, and each row
described for people (who, what, on what, and its before → after as field changes).

Writing rows is `portal.services.audit`; audit rows are not tenant-owned (platform actions have no studio), so
every query here names the studio itself.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEntry, Studio
from portal.services.errors import InvalidInput
from portal.services.timeinput import parse_date

PER_PAGE = 50
MAX_LIMIT = 200

ACTIONS = {
    "config.draft": "Saved a configuration draft",
    "config.edit_draft": "Changed a configuration draft",
    "configuration_version.publish": "Published a configuration version",
    "configuration_version.discard": "Discarded a configuration draft",
    "config.publish_refused": "Tried to publish (refused)",
    "config.rollback": "Rolled the configuration back",
    "config.rollback_refused": "Tried to roll back (refused)",
    "config.propose": "Proposed a configuration change",
    "proposal.approve": "Approved a proposal",
    "proposal.reject": "Rejected a proposal",
    "api_key.create": "Created an API key",
    "api_key.revoke": "Revoked an API key",
}


@dataclass(frozen=True)
class Filters:
    actor: str = ""            # an actor as the log names it (an email, a key, "system", a job)
    entity: str = ""           # a target type ("configuration version", "booking", …)
    since: date | None = None  # studio-local dates, both inclusive
    until: date | None = None

    def query_args(self) -> dict[str, str]:
        """The filters as query-string values (for links that keep them)."""
        return {k: v for k, v in (("actor", self.actor), ("entity", self.entity),
                                  ("from", self.since.isoformat() if self.since else ""),
                                  ("to", self.until.isoformat() if self.until else "")) if v}


def filters_from(args: Mapping[str, str]) -> Filters:
    """Filters from query-string values `actor`, `entity`, `from`, `to` (`InvalidInput` naming the field)."""
    def day(name: str) -> date | None:
        raw = (args.get(name) or "").strip()
        return parse_date(raw, field=name) if raw else None

    since, until = day("from"), day("to")
    if since and until and since > until:
        raise InvalidInput("The end date comes before the start date.", code="dates_reversed", field="to")
    return Filters(actor=(args.get("actor") or "").strip()[:254], entity=(args.get("entity") or "").strip()[:64],
                   since=since, until=until)


def _select(studio: Studio, filters: Filters):
    query = select(AuditEntry).where(AuditEntry.studio_id == studio.id)
    if filters.actor:
        query = query.where(AuditEntry.actor_label == filters.actor)
    if filters.entity:
        query = query.where(AuditEntry.target_type == filters.entity)
    if filters.since:
        query = query.where(AuditEntry.created_at >= datetime.combine(filters.since, time.min, studio.tz))
    if filters.until:
        query = query.where(AuditEntry.created_at
                            < datetime.combine(filters.until + timedelta(days=1), time.min, studio.tz))
    return query


@dataclass(frozen=True)
class Page:
    entries: list[AuditEntry]
    number: int
    pages: int
    total: int


def page(studio: Studio, filters: Filters, number: int = 1, per_page: int = PER_PAGE) -> Page:
    """Page `number` (from 1) of the matching rows, newest first (in the order they were recorded)."""
    query = _select(studio, filters)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, -(-total // per_page))
    number = min(max(1, number), pages)
    entries = db.session.scalars(query.order_by(AuditEntry.id.desc())
                                 .offset((number - 1) * per_page).limit(per_page)).all()
    return Page(list(entries), number, pages, total)


def after_cursor(studio: Studio, filters: Filters, cursor: int | None, limit: int = PER_PAGE
                 ) -> tuple[list[AuditEntry], int | None]:
    """Up to `limit` matching rows older than `cursor` (a row id; None: the newest), newest first, and the cursor
    of the next page (None when there is none)."""
    query = _select(studio, filters)
    if cursor is not None:
        query = query.where(AuditEntry.id < cursor)
    rows = db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)).all()
    return list(rows[:limit]), (rows[limit - 1].id if len(rows) > limit else None)


def actors(studio: Studio) -> list[str]:
    return list(db.session.scalars(select(AuditEntry.actor_label).where(AuditEntry.studio_id == studio.id)
                                   .distinct().order_by(AuditEntry.actor_label)))


def entities(studio: Studio) -> list[str]:
    return list(db.session.scalars(select(AuditEntry.target_type).where(AuditEntry.studio_id == studio.id)
                                   .distinct().order_by(AuditEntry.target_type)))


# --- describing rows ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    field: str
    before: str
    after: str


@dataclass(frozen=True)
class Row:
    entry: AuditEntry
    who: str
    what: str
    entity: str
    changes: list[Change]


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 300 else text[:299] + "…"


def _changes(before: dict | None, after: dict | None) -> list[Change]:
    before, after = before or {}, after or {}
    rows = []
    for key in dict.fromkeys([*before, *after]):
        if key == "changes":
            continue
        old, new = before.get(key), after.get(key)
        rows.append(Change(key.replace("_", " "), _show(old) if key in before else "",
                           _show(new) if key in after else ""))
    for change in after.get("changes") or []:
        if isinstance(change, dict) and "path" in change:
            rows.append(Change(str(change["path"]), _show(change.get("before")), _show(change.get("after"))))
    return rows


def _entity(entry: AuditEntry) -> str:
    if entry.target_type == "configuration version":
        for side in (entry.after, entry.before):
            if isinstance(side, dict) and isinstance(side.get("version"), int):
                return f"configuration version {side['version']}"
    return f"{entry.target_type} #{entry.target_id}" if entry.target_id is not None else entry.target_type


def describe(entry: AuditEntry) -> Row:
    what = ACTIONS.get(entry.action) or entry.action.replace("_", " ").replace(".", ": ").capitalize()
    return Row(entry, entry.actor_label or entry.actor_kind, what, _entity(entry), _changes(entry.before, entry.after))


def as_json(entry: AuditEntry) -> dict:
    return {"id": entry.id, "actor": entry.actor_label or entry.actor_kind, "actor_kind": entry.actor_kind,
            "action": entry.action, "entity": entry.target_type, "entity_id": entry.target_id,
            "before": entry.before, "after": entry.after, "note": entry.note, "at": entry.created_at.isoformat()}
