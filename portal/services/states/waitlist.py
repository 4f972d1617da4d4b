"""A waitlist entry's life: `waiting` → `offered` → `claimed`, or `offered` → `expired` (the offer lapsed and the time
passes to the next student); `waiting`/`offered` → `cancelled` when the student leaves the queue.

| transition | from             | to        | who                                                      |
|------------|------------------|-----------|----------------------------------------------------------|
| offer      | waiting          | offered   | the waitlist sweep, holding a freed time for the student |
| claim      | offered          | claimed   | the student, before the offer expires                    |
| lapse      | offered          | expired   | the waitlist sweep, once the offer expired unclaimed     |
| cancel     | waiting, offered | cancelled | the student                                              |
"""
from __future__ import annotations

from datetime import datetime

from portal.models import WaitlistEntry, WaitlistStatus
from portal.services import audit
from portal.services.states.machine import Machine, Transition

WAITING, OFFERED, CLAIMED, EXPIRED, CANCELLED = (WaitlistStatus.WAITING, WaitlistStatus.OFFERED,
                                                 WaitlistStatus.CLAIMED, WaitlistStatus.EXPIRED,
                                                 WaitlistStatus.CANCELLED)

MACHINE = Machine("waitlist entry", WaitlistEntry, {
    "offer": Transition({WAITING}, OFFERED, "offered a time"),
    "claim": Transition({OFFERED}, CLAIMED, "claimed"),
    "lapse": Transition({OFFERED}, EXPIRED, "expired"),
    "cancel": Transition({WAITING, OFFERED}, CANCELLED, "cancelled"),
})


def offer(entry_id: int, *, booking_id: int, expires_at: datetime, now: datetime) -> None:
    MACHINE.apply(entry_id, "offer", now=now, actor=audit.Actor.job("waitlist"), note="A freed time is held.",
                  values={"offer_booking_id": booking_id, "offer_expires_at": expires_at},
                  after={"booking_id": booking_id, "expires_at": expires_at.isoformat()})


def claim(entry_id: int, *, now: datetime, actor: audit.Actor) -> None:
    MACHINE.apply(entry_id, "claim", now=now, actor=actor, where=(WaitlistEntry.offer_expires_at > now,),
                  stale="This offer has expired: the time was passed to the next student.")


def lapse(entry_id: int, *, now: datetime) -> None:
    MACHINE.apply(entry_id, "lapse", now=now, actor=audit.Actor.job("waitlist"),
                  where=(WaitlistEntry.offer_expires_at <= now,), note="The offer expired unclaimed.")


def cancel(entry_id: int, *, now: datetime, actor: audit.Actor) -> None:
    MACHINE.apply(entry_id, "cancel", now=now, actor=actor)
