"""A stored Stripe event's life: queued, claimed by a worker (a lease), then processed, retried or dead.

| transition | from                                 | to         | when                                            |
|------------|--------------------------------------|------------|-------------------------------------------------|
| queue      | received, queued, retry              | queued     | handed to the job queue (again, by the sweep)   |
| claim      | received, queued, retry, processing* | processing | a worker takes it (*processing: lease ran out)  |
| finish     | processing                           | processed  | handled                                         |
| ignore     | processing                           | ignored    | not a type, or not an object, of ours           |
| retry      | processing                           | retry      | failed for a reason that may pass               |
| bury       | processing                           | dead       | out of attempts, or refused for good: for ops   |
| replay     | dead, retry, received, queued,       | queued     | ops replays it (attempts start again)           |
|            | processing*                          |            | (*only once its worker's lease ran out)         |
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import bindparam, func, literal, or_, select, update

from portal.extensions import db
from portal.models import EventStatus, WebhookEvent
from portal.services.states.machine import Machine, Transition

S = EventStatus

MACHINE = Machine("webhook event", WebhookEvent, {
    "queue": Transition({S.RECEIVED, S.QUEUED, S.RETRY}, S.QUEUED, "queued"),
    "claim": Transition({S.RECEIVED, S.QUEUED, S.RETRY, S.PROCESSING}, S.PROCESSING, "claimed"),
    "finish": Transition({S.PROCESSING}, S.PROCESSED, "marked as processed"),
    "ignore": Transition({S.PROCESSING}, S.IGNORED, "marked as ignored"),
    "retry": Transition({S.PROCESSING}, S.RETRY, "retried"),
    "bury": Transition({S.PROCESSING}, S.DEAD, "marked dead"),
    "replay": Transition({S.DEAD, S.RETRY, S.RECEIVED, S.QUEUED, S.PROCESSING}, S.QUEUED, "replayed"),
})


def _lease_expired(now: datetime, lease: timedelta):
    return WebhookEvent.updated_at < now - lease


def queue(event_id: int, *, now: datetime, current: EventStatus | None = None) -> None:
    MACHINE.apply(event_id, "queue", now=now, current=current)


class Claimed(NamedTuple):
    """An event taken for one attempt, with what processing it needs (read by the claim itself)."""
    attempt: int
    type: str
    payload: dict
    received_at: datetime


def claim(event_id: int, *, now: datetime, max_attempts: int, lease: timedelta) -> int:
    """Take the event for one attempt; returns the attempt's number, the token its final write must show (so a
    worker whose lease was taken over cannot overwrite the newer attempt). An event another worker holds is refused
    until its lease runs out."""
    return take(event_id, now=now, max_attempts=max_attempts, lease=lease).attempt


def take(event_id: int, *, now: datetime, max_attempts: int, lease: timedelta) -> Claimed:
    """`claim`, returning the event's type, payload and arrival with the attempt's number: one statement."""
    return Claimed(*_TAKE.apply(event_id, now=now, lease_ends_before=now - lease, max_attempts=max_attempts))


_c = WebhookEvent.__table__.c
#: The claim: once built, as a worker runs it for every event (`Machine.prepare`).
_TAKE = MACHINE.prepare(
    "claim",
    where=(or_(_c.status != S.PROCESSING, _c.updated_at < MACHINE.param("lease_ends_before", "updated_at")),
           _c.attempts < MACHINE.param("max_attempts", "attempts")),
    values={"attempts": _c.attempts + 1},
    returning=(_c.attempts, _c.type, _c.payload, _c.received_at),
    stale="This event is being processed, or has no attempts left.")
#: The end of an attempt that went through, `finish` or `ignore`: the studio the event turned out to be about is
#: written with it (a NULL `:studio_id` keeps the one known).
_DONE = {name: MACHINE.prepare(
    name, where=(_c.attempts == MACHINE.param("attempt", "attempts"),),
    values={"processed_at": MACHINE.param("now", "processed_at"), "last_error": "",
            "studio_id": func.coalesce(MACHINE.param("studio_id", "studio_id"), _c.studio_id)},
    stale="Another attempt took this event over.") for name in ("finish", "ignore")}


class Waiting(NamedTuple):
    """An event taken by `take_waiting`, with its id."""
    id: int
    attempt: int
    type: str
    payload: dict
    received_at: datetime


def take_waiting(*, now: datetime, max_attempts: int, limit: int) -> list[Waiting]:
    """Claim up to `limit` of the events waiting for a first go (received or queued), oldest first, in one
    statement. On PostgreSQL the rows other workers are claiming at that moment are skipped (`SKIP LOCKED`), so
    concurrent batches take different events and never wait for each other."""
    rows = db.session.connection().execute(_TAKE_WAITING, {"now": now, "max_attempts": max_attempts,
                                                          "limit": limit}).all()
    return sorted(Waiting(*row) for row in rows)


def any_waiting(*, max_attempts: int) -> bool:
    """Whether an event waits for a first go, locked or not: `take_waiting` skips a row another transaction holds
    for a moment (a redelivery counting itself on it), so finding none to take does not mean none waits."""
    return db.session.connection().execute(_ANY_WAITING, {"max_attempts": max_attempts}).first() is not None


def _waiting_rows():
    waiting = [literal(status, type_=_c.status.type) for status in (S.RECEIVED, S.QUEUED)]
    assert MACHINE.transitions["claim"].sources >= {S.RECEIVED, S.QUEUED}
    return waiting, select(_c.id).where(_c.status.in_(waiting), _c.attempts < bindparam("max_attempts"))


def _take_waiting_statement():
    waiting, rows = _waiting_rows()
    # A CTE, not a plain subquery: PostgreSQL evaluates a locking CTE once, where a subquery may be rescanned and,
    # skipping other rows each time, hand the UPDATE more than `limit` of them.
    oldest = rows.order_by(_c.id).limit(bindparam("limit")).with_for_update(skip_locked=True).cte("oldest")
    return (update(WebhookEvent.__table__)
            .where(_c.id.in_(select(oldest.c.id)), _c.status.in_(waiting))
            .values(status=literal(S.PROCESSING, type_=_c.status.type), attempts=_c.attempts + 1,
                    updated_at=MACHINE.param("now", "updated_at"))
            .returning(_c.id, _c.attempts, _c.type, _c.payload, _c.received_at))


_TAKE_WAITING = _take_waiting_statement()
_ANY_WAITING = _waiting_rows()[1].limit(1)


def finish_many(done: list[tuple[int, int, int | None]], *, now: datetime) -> int:
    """`finish` for many events at once, each `(event id, attempt, studio id)`; returns how many were finished
    (fewer than asked: another attempt took one over, and the caller rolls back)."""
    return _DONE["finish"].apply_many([{"row_id": event_id, "attempt": attempt, "studio_id": studio_id}
                                       for event_id, attempt, studio_id in done], now=now)


def _attempt(attempt: int | None):
    return (WebhookEvent.attempts == attempt,) if attempt is not None else ()


def _studio(studio_id: int | None) -> dict:
    """The studio the event turned out to be about, recorded with the attempt's outcome (one write fewer)."""
    return {"studio_id": studio_id} if studio_id is not None else {}


def finish(event_id: int, *, now: datetime, attempt: int | None, ignored: bool = False,
           studio_id: int | None = None) -> None:
    if attempt is None:
        MACHINE.apply(event_id, "ignore" if ignored else "finish", now=now, current=S.PROCESSING,
                      values={"processed_at": now, "last_error": "", **_studio(studio_id)},
                      stale="Another attempt took this event over.")
        return
    _DONE["ignore" if ignored else "finish"].apply(event_id, now=now, attempt=attempt, studio_id=studio_id)


def retry(event_id: int, *, now: datetime, attempt: int | None, error: str, studio_id: int | None = None) -> None:
    MACHINE.apply(event_id, "retry", now=now, current=S.PROCESSING, where=_attempt(attempt),
                  values={"last_error": error[:2000], **_studio(studio_id)},
                  stale="Another attempt took this event over.")


def bury(event_id: int, *, now: datetime, error: str, attempt: int | None = None,
         abandoned_after: tuple[timedelta, int] | None = None, studio_id: int | None = None) -> None:
    """Out of attempts: the event goes to the ops console. `abandoned_after=(lease, max_attempts)` buries an event
    whose worker stopped on its last attempt (its lease ran out and no attempts are left)."""
    where = _attempt(attempt)
    if abandoned_after is not None:
        lease, max_attempts = abandoned_after
        where += (_lease_expired(now, lease), WebhookEvent.attempts >= max_attempts)
    MACHINE.apply(event_id, "bury", now=now, current=S.PROCESSING, where=where,
                  values={"last_error": error[:2000], **_studio(studio_id)},
                  stale="Another attempt took this event over.")


def replay(event_id: int, *, now: datetime, actor, note: str, lease: timedelta,
           expected: EventStatus | None = None) -> None:
    """Ops sends an unprocessed event round again, with a fresh set of attempts (one a worker holds only once its
    lease ran out). `expected` is the status the ops page showed: if it moved since, the replay is refused (409)
    rather than applied to something else."""
    MACHINE.apply(event_id, "replay", now=now, actor=actor, note=note, current=expected, exactly=expected is not None,
                  where=(or_(WebhookEvent.status != S.PROCESSING, _lease_expired(now, lease)),),
                  values={"attempts": 0},
                  stale="This event changed since the page was shown, or a worker is processing it. Reload it.")
