"""A small state machine over one status column, applied with conditional updates.

A transition reads the row's status, checks it against the table, and writes with
`UPDATE … WHERE id = :id AND status = :current`: of two racing attempts exactly one changes the row and the other
is refused with `IllegalTransition` (409), never a silent no-op. A transition can add an audit row to the same
transaction, so the change and its record are committed together (by the caller).

Written here rather than taken from a state-machine library: those keep the state on Python objects, while the
guarantee that matters here is the database's conditional update, and the table is a few lines.
"""
from __future__ import annotations

import enum
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, literal, select, update

from portal.extensions import db
from portal.services import audit
from portal.services.errors import Conflict, NotFound


class IllegalTransition(Conflict):
    """The row is not in a state the transition starts from (or it changed meanwhile)."""

    code = "illegal_transition"

    def __init__(self, message: str, *, current: enum.Enum | None = None):
        super().__init__(message)
        self.current = current


@dataclass(frozen=True)
class Transition:
    sources: frozenset
    target: enum.Enum
    verb: str  # completes "so it cannot be …" in a refusal

    def __init__(self, sources, target: enum.Enum, verb: str):
        object.__setattr__(self, "sources", frozenset(sources))
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "verb", verb)


@dataclass
class Machine:
    noun: str                 # "booking": audit target type, and how refusals name the row
    model: type
    transitions: Mapping[str, Transition] = field(default_factory=dict)
    column: str = "status"    # the model's state column

    def allows(self, name: str, current: enum.Enum) -> bool:
        return current in self.transitions[name].sources

    def refusal(self, name: str, current: enum.Enum | None) -> str:
        if current is None:
            return f"This {self.noun} no longer exists."
        status = current.value.replace("_", " ")
        return f"This {self.noun} is {status}, so it cannot be {self.transitions[name].verb}."

    def apply(self, row_id: int, name: str, *, now: datetime, actor: audit.Actor | None = None, note: str = "",
              values: Mapping[str, Any] | None = None, where=(), current: enum.Enum | None = None,
              before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None,
              stale: str | None = None, exactly: bool = False) -> enum.Enum | None:
        """Move row `row_id` along transition `name`; returns the status it left (None when it was not read, see
        `apply_returning`).

        `values` are written with the status; `where` adds conditions of the caller's (a lease, an expected
        count). `current` skips the read when the caller knows the status. With an `actor`, an audit row with
        `before`/`after` (plus the statuses) joins the transaction. Raises `IllegalTransition` when the status is
        not a source of the transition or the row changed meanwhile (`stale` is that refusal's message). With
        `exactly`, `current` is what a person saw: any other status is a stale page, refused even if allowed.
        """
        return self.apply_returning(row_id, name, now=now, actor=actor, note=note, values=values, where=where,
                                    current=current, before=before, after=after, stale=stale, exactly=exactly)[0]

    def apply_returning(self, row_id: int, name: str, *, now: datetime, actor: audit.Actor | None = None,
                        note: str = "", values: Mapping[str, Any] | None = None, where=(),
                        current: enum.Enum | None = None, before: Mapping[str, Any] | None = None,
                        after: Mapping[str, Any] | None = None, stale: str | None = None, exactly: bool = False,
                        returning=()) -> tuple[enum.Enum | None, tuple]:
        """`apply`, also returning the `returning` columns of the row as written (one round trip fewer than
        reading them afterwards). A transition with one source assumes the row is in it and skips the read: the
        conditional update checks it anyway, and a refusal reads the row to explain itself.

        Without an audit row to write (no `actor`, so the status left is not needed) and with no status given, the
        read is skipped too: one `UPDATE … WHERE status IN (sources)` decides, and the status left is returned as
        None. Only a refusal costs a second round trip, to explain itself."""
        transition = self.transitions[name]
        model = self.model
        status = getattr(model, self.column)
        if current is None and not exactly and len(transition.sources) == 1:
            (current,) = transition.sources
        if current is None and not exactly and actor is None:
            changed = db.session.execute(
                update(model).where(model.id == row_id, status.in_(transition.sources), *where)
                .values({self.column: transition.target, "updated_at": now, **(values or {})})
                .returning(model.studio_id, *returning)).all()
            if changed:
                return None, tuple(changed[0][1:])
            self.refuse(row_id, name, stale)
        for _ in range(3):
            if current is None:
                row = db.session.execute(select(status).where(model.id == row_id)).one_or_none()
                if row is None:
                    raise NotFound(f"No such {self.noun}.")
                current = row[0]
            if current not in transition.sources:
                raise IllegalTransition(self.refusal(name, current), current=current)
            changed = db.session.execute(
                update(model).where(model.id == row_id, status == current, *where)
                .values({self.column: transition.target, "updated_at": now, **(values or {})})
                .returning(model.studio_id, *returning)).all()
            if changed:
                break
            latest = db.session.scalar(select(status).where(model.id == row_id))
            if latest == current or exactly:  # the caller's own condition (or what they saw) does not hold
                raise IllegalTransition(stale or f"This {self.noun} changed meanwhile. Reload and try again.",
                                        current=latest)
            current = latest  # another writer moved it first: judge the transition from where it is now
        else:
            raise IllegalTransition(f"This {self.noun} keeps changing. Reload and try again.", current=current)
        if actor is not None:
            audit.record(actor=actor, action=f"{self.noun.replace(' ', '_')}.{name}", target_type=self.noun,
                         target_id=row_id, studio_id=changed[0][0], now=now, note=note,
                         before={"status": current.value, **(before or {})},
                         after={"status": transition.target.value, **(after or {})})
        return current, tuple(changed[0][1:])

    def refuse(self, row_id: int, name: str, stale: str | None = None) -> typing.NoReturn:
        """Explain why a conditional update of transition `name` changed no row: gone, in a state the transition
        does not start from, or (`stale`) the caller's own condition does not hold."""
        status = getattr(self.model, self.column)
        latest = db.session.execute(select(status).where(self.model.id == row_id)).one_or_none()
        if latest is None:
            raise NotFound(f"No such {self.noun}.")
        if latest[0] not in self.transitions[name].sources:
            raise IllegalTransition(self.refusal(name, latest[0]), current=latest[0])
        raise IllegalTransition(stale or f"This {self.noun} changed meanwhile. Reload and try again.",
                                current=latest[0])

    def prepare(self, name: str, *, where=(), values: Mapping[str, Any] | None = None, returning=(),
                stale: str | None = None) -> Prepared:
        """Transition `name` as one Core `UPDATE … WHERE id = :row_id AND status IN (sources) … RETURNING`, built
        once: for the transitions a worker applies to every event, where building the ORM statement and running it
        through the ORM's bulk-update machinery cost more CPU than the database spends on it.

        `where`, `values` and `returning` are Core expressions on the model's table (its `.c` columns, never the
        ORM attributes, which would bring the ORM back), with their own `param`s; `:now` is the time written to
        `updated_at`. No audit row (no actor), and no tenant filter: the row is named by its id. The session's
        objects are not updated with it (commit or refresh before reading them)."""
        transition = self.transitions[name]
        table = self.model.__table__
        status = table.c[self.column]
        sources = [literal(source, type_=status.type) for source in sorted(transition.sources, key=str)]
        plain = (update(table)
                 .where(table.c.id == self.param("row_id", "id"),
                        status == sources[0] if len(sources) == 1 else status.in_(sources), *where)
                 .values({self.column: literal(transition.target, type_=status.type),
                          "updated_at": self.param("now", "updated_at"), **(values or {})}))
        statement = plain.returning(table.c.id, *returning)  # the id: a row was changed, even returning nothing else
        return Prepared(self, name, statement, stale, plain)

    def param(self, name: str, column: str):
        """A parameter `name` typed like the table's `column` (so SQLite stores a time as SQLAlchemy writes it)."""
        return bindparam(name, type_=self.model.__table__.c[column].type)

    def table(self) -> dict[str, tuple[frozenset, enum.Enum]]:
        return {name: (t.sources, t.target) for name, t in self.transitions.items()}


@dataclass(frozen=True)
class Prepared:
    """A transition's conditional update built once (`Machine.prepare`); `apply` runs it with its parameters."""
    machine: Machine
    name: str
    statement: Any
    stale: str | None = None
    plain: Any = None  # the statement without RETURNING, for `apply_many`

    def apply(self, row_id: int, *, now: datetime, **params: Any) -> tuple:
        """Apply the transition to row `row_id`; returns the `returning` columns of the row as written. Raises
        `IllegalTransition` (or `NotFound`) as `Machine.apply` does. Pending changes of the session are flushed
        first, as the ORM would before any statement, and the statement runs in the session's transaction."""
        session = db.session
        if session.autoflush:
            session.flush()
        row = session.connection().execute(self.statement, {"row_id": row_id, "now": now, **params}).first()
        if row is None:
            self.machine.refuse(row_id, self.name, self.stale)
        return tuple(row[1:])

    def apply_many(self, rows: list[dict[str, Any]], *, now: datetime) -> int:
        """Apply the transition to many rows in one `executemany` (on PostgreSQL, psycopg sends them pipelined: one
        round trip), each dict giving `row_id` and that row's parameters. Returns how many rows changed: fewer than
        `len(rows)` means some were refused, and the caller rolls back (nothing says which)."""
        if not rows:
            return 0
        session = db.session
        if session.autoflush:
            session.flush()
        result = session.connection().execute(self.plain, [{"now": now, **row} for row in rows])
        return result.rowcount
