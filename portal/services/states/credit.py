"""Lesson credits: the one owner of `credit_balances` and `credit_ledger`.

Every movement is an appended ledger entry plus the same amount added to the student's balance row, in one
transaction, with an audit row. Credits come in lots (a positive entry: a pack, a grant, a make-up, a returned
credit), each with its own expiry; a debit (a booking, an expiry, a revoke, a refund) names the lot it draws on,
so a lot's remaining credits are its amount plus its debits, and the earliest-expiring lot is spent first (an
expiry and a refund take what is left of their own lot).

The guarantee against a negative balance is the database's: a spend is `UPDATE credit_balances SET balance =
balance - n WHERE id = … AND balance >= n`, which on PostgreSQL waits for (and then re-reads) a concurrent spend
of the same row and on SQLite runs under the one write lock; a `CHECK (balance >= 0)` refuses anything that
slipped past. The lots are read only after that update, while the row is locked, so two spends never pick the
same last credit. Callers commit (or roll back on `NoCredit`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from portal.extensions import db
from portal.models import CreditBalance, CreditEntry, CreditKind
from portal.services import audit
from portal.services.errors import Conflict, InvalidInput

GAIN_KINDS = (CreditKind.PURCHASE, CreditKind.GRANT, CreditKind.MAKEUP, CreditKind.RETURNED)
TAKE_KINDS = (CreditKind.BOOKING, CreditKind.EXPIRY, CreditKind.REVOKE, CreditKind.REFUND)


class NoCredit(Conflict):
    """Nothing (or not enough) left to spend: a 409, and nothing changed."""

    code = "no_credit"


@dataclass(frozen=True)
class Lot:
    id: int
    remaining: int
    expires_at: datetime | None


def _insert_ignoring_duplicate(table):
    """`INSERT … ON CONFLICT DO NOTHING` in the dialect of the session's database."""
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def account_id(studio_id: int, student_id: int, minutes: int, *, now: datetime, create: bool) -> int | None:
    """The balance row of (studio, student, lesson length); created empty when `create` (two creators at once
    are fine: the unique constraint keeps one)."""
    if create:
        statement = _insert_ignoring_duplicate(CreditBalance.__table__).values(
            studio_id=studio_id, student_id=student_id, minutes=minutes, balance=0, updated_at=now)
        db.session.execute(statement.on_conflict_do_nothing(index_elements=["studio_id", "student_id", "minutes"]))
    return db.session.scalar(select(CreditBalance.id).where(
        CreditBalance.studio_id == studio_id, CreditBalance.student_id == student_id,
        CreditBalance.minutes == minutes))


def _entry(account: int, *, studio_id: int, student_id: int, minutes: int, kind: CreditKind, amount: int,
           now: datetime, actor: audit.Actor, note: str, expires_at: datetime | None = None, lot_id: int | None = None,
           booking_id: int | None = None, pack_id: int | None = None) -> CreditEntry:
    entry = CreditEntry(studio_id=studio_id, balance_id=account, student_id=student_id, minutes=minutes, kind=kind,
                        amount=amount, expires_at=expires_at, lot_id=lot_id, booking_id=booking_id, pack_id=pack_id,
                        actor_label=actor.label[:254], note=note, created_at=now)
    db.session.add(entry)
    db.session.flush()
    audit.record(actor=actor, action=f"credit.{kind.value}", target_type="credit_balance", target_id=account,
                 studio_id=studio_id, now=now, note=note,
                 after={"student_id": student_id, "minutes": minutes, "amount": amount, "entry": entry.id,
                        "booking_id": booking_id,
                        "expires_at": expires_at.isoformat() if expires_at else None})
    return entry


def gain(*, studio_id: int, student_id: int, minutes: int, amount: int, kind: CreditKind, now: datetime,
         actor: audit.Actor, note: str = "", expires_at: datetime | None = None, booking_id: int | None = None,
         pack_id: int | None = None) -> CreditEntry:
    """Add a lot of `amount` credits of `minutes` (a purchase, a grant, a make-up, a returned credit)."""
    if kind not in GAIN_KINDS or amount <= 0:
        raise InvalidInput("Credits added must be a positive number.", code="credit_amount_invalid", field="amount")
    account = account_id(studio_id, student_id, minutes, now=now, create=True)
    db.session.execute(update(CreditBalance).where(CreditBalance.id == account)
                       .values(balance=CreditBalance.balance + amount, updated_at=now)
                       .execution_options(synchronize_session=False))
    return _entry(account, studio_id=studio_id, student_id=student_id, minutes=minutes, kind=kind, amount=amount,
                  now=now, actor=actor, note=note, expires_at=expires_at, booking_id=booking_id, pack_id=pack_id)


def open_lots(account: int, now: datetime, *, limit: int | None = None) -> list[Lot]:
    """Lots with credits left that have not expired, earliest expiry first (no expiry last).

    Each lot's remaining credits are summed from its own debits through the `lot_id` index, so the cost follows
    the number of unexpired lots, not the length of the student's history."""
    # A plain table alias: the lot's own id already pins the studio, and the tenant filter on the inner query
    # would tempt the planner into intersecting with the (unselective) studio index for every lot.
    debit = CreditEntry.__table__.alias("debit")
    remaining = CreditEntry.amount + func.coalesce(
        select(func.sum(debit.c.amount)).where(debit.c.lot_id == CreditEntry.id).scalar_subquery(), 0)
    statement = (select(CreditEntry.id, remaining, CreditEntry.expires_at)
                 .where(CreditEntry.balance_id == account, CreditEntry.amount > 0, remaining > 0,
                        (CreditEntry.expires_at.is_(None)) | (CreditEntry.expires_at > now))
                 .order_by(CreditEntry.expires_at.is_(None), CreditEntry.expires_at, CreditEntry.id))
    if limit is not None:
        statement = statement.limit(limit)
    return [Lot(lot_id, int(left), expires) for lot_id, left, expires in db.session.execute(statement).all()]


def take(*, studio_id: int, student_id: int, minutes: int, count: int, kind: CreditKind, now: datetime,
         actor: audit.Actor, note: str = "", booking_id: int | None = None) -> list[CreditEntry]:
    """Spend or remove `count` credits of `minutes`, from the earliest-expiring lots. Raises `NoCredit` when the
    balance (or what has not expired of it) is short; the caller then rolls back."""
    if kind not in TAKE_KINDS or count <= 0:
        raise InvalidInput("Credits taken must be a positive number.", code="credit_amount_invalid", field="amount")
    short = NoCredit(f"You have no {minutes}-minute lesson credit left to use." if count == 1 else
                     f"There are not {count} {minutes}-minute lesson credits left.")
    account = account_id(studio_id, student_id, minutes, now=now, create=False)
    if account is None:
        raise short
    locked = db.session.execute(
        update(CreditBalance).where(CreditBalance.id == account, CreditBalance.balance >= count)
        .values(balance=CreditBalance.balance - count, updated_at=now).returning(CreditBalance.id)
        .execution_options(synchronize_session=False)).all()
    if not locked:
        raise short
    entries, need = [], count
    for lot in open_lots(account, now, limit=count):
        used = min(lot.remaining, need)
        entries.append(_entry(account, studio_id=studio_id, student_id=student_id, minutes=minutes, kind=kind,
                              amount=-used, now=now, actor=actor, note=note, lot_id=lot.id, booking_id=booking_id))
        need -= used
        if need == 0:
            return entries
    raise NoCredit(f"Your {minutes}-minute lesson credits have expired." if count == 1 else short.message)


def expire_lot(lot_id: int, *, now: datetime) -> int:
    """Write off what is left of an expired lot; returns how many credits that was (0 when nothing was left)."""
    lot = db.session.get(CreditEntry, lot_id)
    if lot is None or lot.expires_at is None or lot.expires_at > now or lot.amount <= 0:
        return 0
    # Lock the balance row first, then read what is left, so a spend cannot slip in between.
    db.session.execute(update(CreditBalance).where(CreditBalance.id == lot.balance_id).values(updated_at=now)
                       .execution_options(synchronize_session=False))
    drawn = db.session.scalar(select(func.coalesce(func.sum(CreditEntry.amount), 0))
                              .where(CreditEntry.lot_id == lot_id)) or 0
    remaining = lot.amount + int(drawn)
    if remaining <= 0:
        return 0
    changed = db.session.execute(
        update(CreditBalance).where(CreditBalance.id == lot.balance_id, CreditBalance.balance >= remaining)
        .values(balance=CreditBalance.balance - remaining).returning(CreditBalance.id)
        .execution_options(synchronize_session=False)).all()
    if not changed:  # cannot happen while the ledger and the balance agree; refuse rather than go negative
        raise NoCredit("The balance does not cover this lot; nothing was written off.")
    _entry(lot.balance_id, studio_id=lot.studio_id, student_id=lot.student_id, minutes=lot.minutes,
           kind=CreditKind.EXPIRY, amount=-remaining, now=now, actor=audit.Actor.job("expire_credits"),
           note="Expired unused.", lot_id=lot_id)
    return remaining


def lot_remaining(lot_id: int) -> int:
    """What is left of a lot: its amount plus its debits."""
    lot_amount = db.session.scalar(select(CreditEntry.amount).where(CreditEntry.id == lot_id)) or 0
    drawn = db.session.scalar(select(func.coalesce(func.sum(CreditEntry.amount), 0))
                              .where(CreditEntry.lot_id == lot_id)) or 0
    return int(lot_amount) + int(drawn)


def refund_lot(lot_id: int, *, balance_id: int, expected: int, now: datetime, actor: audit.Actor,
               note: str) -> CreditEntry:
    """Take back every credit left of one lot (a `refund` entry), as many as the person saw (`expected`).

    The transaction must start here, with the write: the balance row is locked before the lot is read, so a booking
    spending a credit of the same lot at the same moment either went first (then fewer credits are left than were
    shown: a 409, nothing changed) or waits and finds the credits gone (its own 409 `no_credit`)."""
    db.session.execute(update(CreditBalance).where(CreditBalance.id == balance_id).values(updated_at=now)
                       .execution_options(synchronize_session=False))
    remaining = lot_remaining(lot_id)
    if remaining <= 0:
        raise NoCredit("Nothing is left of these credits to refund: they were refunded, used or expired.")
    if remaining != expected:
        raise Conflict(f"The student's credits changed since this page was shown: {remaining} of them are left now, "
                       f"not {expected}. Reload the page to see the new amount.")
    changed = db.session.execute(
        update(CreditBalance).where(CreditBalance.id == balance_id, CreditBalance.balance >= remaining)
        .values(balance=CreditBalance.balance - remaining).returning(CreditBalance.id)
        .execution_options(synchronize_session=False)).all()
    if not changed:  # cannot happen while the ledger and the balance agree; refuse rather than go negative
        raise NoCredit("The balance does not cover these credits; nothing was refunded.")
    lot = db.session.get(CreditEntry, lot_id)
    return _entry(balance_id, studio_id=lot.studio_id, student_id=lot.student_id, minutes=lot.minutes,
                  kind=CreditKind.REFUND, amount=-remaining, now=now, actor=actor, note=note, lot_id=lot_id,
                  pack_id=lot.pack_id)
