"""Lesson credits as students and studios use them: the balance and its history, booking a lesson with a credit,
a credit given back when such a lesson is cancelled, grants and revocations by the studio, and expiry.

Every change goes through `portal.services.states.credit`, the owner of the ledger and the balance rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from portal import tenancy
from portal.extensions import db
from portal.models import Booking, CreditBalance, CreditEntry, CreditKind, Studio, User
from portal.services import audit, bookings, notifications, pack_refunds
from portal.services.errors import InvalidInput, NotFound
from portal.services.states import booking as booking_states
from portal.services.states import credit as credit_states
from portal.services.states.credit import NoCredit  # noqa: F401  (re-exported: callers catch it from here)

KIND_LABELS = {
    CreditKind.PURCHASE: "Lesson pack bought", CreditKind.GRANT: "Given by the studio",
    CreditKind.MAKEUP: "Make-up lesson", CreditKind.RETURNED: "Credit returned (lesson cancelled)",
    CreditKind.BOOKING: "Lesson booked", CreditKind.EXPIRY: "Expired", CreditKind.REVOKE: "Taken back by the studio",
    CreditKind.REFUND: "Refunded by the studio (unused pack credits)",
}


@dataclass(frozen=True)
class Balance:
    minutes: int
    balance: int


def balances(student_id: int) -> list[Balance]:
    """The student's balance per lesson length at the studio in scope (lengths ever credited, zero included)."""
    rows = db.session.execute(select(CreditBalance.minutes, CreditBalance.balance)
                              .where(CreditBalance.student_id == student_id).order_by(CreditBalance.minutes)).all()
    return [Balance(minutes, balance) for minutes, balance in rows]


def history(student_id: int, *, limit: int = 200) -> list[CreditEntry]:
    """The student's ledger at the studio in scope, newest first."""
    return db.session.scalars(select(CreditEntry).where(CreditEntry.student_id == student_id)
                              .order_by(CreditEntry.created_at.desc(), CreditEntry.id.desc()).limit(limit)).all()


def ledger_sum(student_id: int) -> int:
    return int(db.session.scalar(select(func.coalesce(func.sum(CreditEntry.amount), 0))
                                 .where(CreditEntry.student_id == student_id)) or 0)


def usable(student_id: int, minutes: int) -> int:
    """Credits of `minutes` the student holds (what a booking can spend)."""
    return int(db.session.scalar(select(CreditBalance.balance).where(
        CreditBalance.student_id == student_id, CreditBalance.minutes == minutes)) or 0)


def as_json(student_id: int) -> dict:
    """`GET /api/me/credits`: the balance is the sum of the entries (every entry is listed)."""
    entries = history(student_id, limit=10_000)
    money = pack_refunds.money_for(entries)
    return {
        "balance": sum(e.amount for e in entries),
        "balances": [{"minutes": b.minutes, "balance": b.balance} for b in balances(student_id)],
        "entries": [{"kind": e.kind.value, "amount": e.amount, "minutes": e.minutes, "at": e.created_at.isoformat(),
                     "expires_at": e.expires_at.isoformat() if e.expires_at else None, "booking": e.booking_id,
                     "note": e.note, "refund": _refund_json(money.get(e.id))} for e in entries],
    }


def _refund_json(refund) -> dict | None:
    """The money sent back with a `refund` entry of a pack bought through Checkout (None for any other entry)."""
    if refund is None:
        return None
    return {"amount_minor": refund.amount_minor, "currency": refund.currency, "status": refund.status.value}


def spent_on(booking_id: int) -> CreditEntry | None:
    """The credit a lesson was booked with, if it was."""
    return db.session.scalar(select(CreditEntry).where(CreditEntry.booking_id == booking_id,
                                                       CreditEntry.kind == CreditKind.BOOKING).limit(1))


def book_with_credit(*, studio: Studio, student: User, package_slug: str, resource_slug: str,
                     start_raw: str | None, now: datetime) -> Booking:
    """Book a lesson paid with one credit of its length: confirmed at once, with the policy of now.

    One transaction spends the credit and claims the slot: if either is refused (`NoCredit`, or `SlotUnavailable`
    from the no-overlap guarantee) nothing changes.
    """
    offer, start = bookings.bookable_offer(studio=studio, package_slug=package_slug, resource_slug=resource_slug,
                                           start_raw=start_raw, now=now)
    booking = bookings.new_hold(studio=studio, student=student, offer=offer, start=start, now=now)
    booking.price_minor = 0  # paid with a credit: no money changes hands
    minutes, policy = offer.package.duration_minutes, studio.policy_snapshot()
    resource_id, studio_id, student_id = offer.resource.id, studio.id, student.id
    who = audit.Actor.of(student)
    db.session.commit()  # the transaction below starts with a write (see bookings.hold_slot)
    with bookings.slot_write("Your credit was not used."):
        booking_states.release_overlapping_expired(resource_id=resource_id, start=start,
                                                   until=booking.occupied_until, now=now)
        db.session.add(booking)
        db.session.flush()
        credit_states.take(studio_id=studio_id, student_id=student_id, minutes=minutes, count=1,
                           kind=CreditKind.BOOKING, now=now, actor=who, booking_id=booking.id,
                           note="Lesson booked with a credit.")
        booking_states.confirm(booking.id, now=now, policy=policy)
        db.session.commit()
    db.session.refresh(booking)
    notifications.enqueue("confirmation", booking.id, key=notifications.confirmation_key(booking.id))
    return booking


def give_back(booking: Booking, *, now: datetime, actor: audit.Actor, late: bool, makeup: bool,
              by_studio: bool = False) -> CreditEntry | None:
    """After a cancellation, in the caller's transaction.

    - a late cancel under a make-up policy (`makeup`), or a lesson booked with a credit that the studio cancelled:
      a make-up credit, valid for the studio's make-up period;
    - a lesson booked with a credit and cancelled in time: the credit comes back, with the expiry it had;
    - a late cancel without make-up: nothing.
    """
    spent = spent_on(booking.id)
    if makeup or (by_studio and spent is not None):
        note = ("The studio cancelled a lesson booked with a credit." if by_studio else
                "Make-up lesson for a late cancellation.")
        return credit_states.gain(studio_id=booking.studio_id, student_id=booking.student_id,
                                  minutes=booking.duration_minutes, amount=1, kind=CreditKind.MAKEUP, now=now,
                                  actor=actor, booking_id=booking.id, note=note,
                                  expires_at=now + timedelta(days=booking.studio.makeup_valid_days))
    if spent is None or late:
        return None
    lot = db.session.get(CreditEntry, spent.lot_id) if spent.lot_id else None
    return credit_states.gain(studio_id=booking.studio_id, student_id=booking.student_id, minutes=spent.minutes,
                              amount=1, kind=CreditKind.RETURNED, now=now, actor=actor, booking_id=booking.id,
                              expires_at=lot.expires_at if lot else None,
                              note="The lesson booked with this credit was cancelled.")


def grant(*, studio: Studio, student_id: int, minutes: int, amount: int, valid_days: int | None, note: str,
          actor: audit.Actor, now: datetime) -> CreditEntry:
    """The studio gives a student credits (with a note, audited)."""
    _check_adjustment(student_id, minutes, amount, note)
    expires = now + timedelta(days=valid_days) if valid_days else None
    entry = credit_states.gain(studio_id=studio.id, student_id=student_id, minutes=minutes, amount=amount,
                               kind=CreditKind.GRANT, now=now, actor=actor, note=note, expires_at=expires)
    db.session.commit()
    return entry


def revoke(*, studio: Studio, student_id: int, minutes: int, amount: int, note: str, actor: audit.Actor,
           now: datetime) -> list[CreditEntry]:
    """The studio takes credits back (with a note, audited); refused with 409 when the student has fewer."""
    _check_adjustment(student_id, minutes, amount, note)
    db.session.commit()
    try:
        entries = credit_states.take(studio_id=studio.id, student_id=student_id, minutes=minutes, count=amount,
                                     kind=CreditKind.REVOKE, now=now, actor=actor, note=note)
    except NoCredit:
        db.session.rollback()
        raise
    db.session.commit()
    return entries


def _check_adjustment(student_id: int, minutes: int, amount: int, note: str) -> None:
    if db.session.get(User, student_id) is None:
        raise NotFound("No such student.")
    if not 0 < minutes <= 480:
        raise InvalidInput("Pick a lesson length.", code="minutes_invalid", field="minutes")
    if not 0 < amount <= 200:
        raise InvalidInput("Give a number of credits between 1 and 200.", code="amount_invalid", field="amount")
    if not note.strip():
        raise InvalidInput("Say why, for the audit log.", code="note_required", field="note")


def expire_due(*, now: datetime, limit: int = 500) -> int:
    """Write off what is left of every lot past its expiry, across studios (a periodic sweep). Returns the number
    of credits written off."""
    debit = aliased(CreditEntry)
    drawn = (select(func.coalesce(func.sum(debit.amount), 0)).where(debit.lot_id == CreditEntry.id)
             .scalar_subquery())
    with tenancy.all_tenants():
        expired = db.session.scalars(select(CreditEntry.id).where(
            CreditEntry.amount > 0, CreditEntry.expires_at <= now, CreditEntry.amount + drawn > 0)
            .order_by(CreditEntry.expires_at).limit(limit)).all()
        db.session.rollback()
        total = 0
        for lot_id in expired:
            total += credit_states.expire_lot(lot_id, now=now)
            db.session.commit()
    return total
