"""The studio refunds the unused credits of a lesson pack: a `refund` entry on the ledger takes back what is left of
the pack's lot, and, when the pack was bought through Checkout, the student gets the unused share of what they paid
back through the usual refunds path (the job, Stripe's webhooks, the ops console's refund queries).

The money is pro rata and in whole minor units, rounded down: unused credits × price paid ÷ credits in the pack,
never more than is left unrefunded of the pack's payment. A pack sold at the desk (or otherwise bought without
Checkout) refunds its credits only: the portal holds no payment to send money back to.

The admin sees the amount before confirming; the form carries a fingerprint of what it showed (credits left and
amount), so a stale page or a second click is a 409 that changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import CreditEntry, CreditKind, LessonPack, PackPurchase, Refund, RefundStatus, Studio, User
from portal.services import audit, refunds
from portal.services.errors import Conflict, DomainError, InvalidInput, NotFound
from portal.services.states import credit as credit_states

REASON = "unused_credits"


@dataclass(frozen=True)
class Quote:
    """A pack's lot as the admin sees it, and what refunding its unused credits would send back."""

    lot_id: int
    balance_id: int
    student: User
    pack_name: str
    minutes: int
    credits: int              # in the pack as bought
    remaining: int            # unused (not spent, expired or refunded)
    bought_at: datetime
    expires_at: datetime | None
    purchase_id: int | None   # bought through Checkout
    paid_minor: int           # paid through Checkout (0 for a pack sold at the desk)
    left_minor: int           # of that, not refunded yet
    amount_minor: int         # what refunding the unused credits sends back now
    currency: str
    expired: bool

    @property
    def fingerprint(self) -> str:
        return f"{self.remaining}:{self.amount_minor}"

    @property
    def refundable(self) -> bool:
        return self.remaining > 0 and not self.expired


def pro_rata(remaining: int, credits: int, paid_minor: int, left_minor: int) -> int:
    """Unused credits × price paid ÷ credits in the pack, rounded down, never more than is left of the payment."""
    if remaining <= 0 or credits <= 0 or paid_minor <= 0:
        return 0
    return max(0, min(remaining * paid_minor // credits, left_minor))


def _remaining():
    debit = CreditEntry.__table__.alias("debit")
    return CreditEntry.amount + func.coalesce(
        select(func.sum(debit.c.amount)).where(debit.c.lot_id == CreditEntry.id).scalar_subquery(), 0)


def _quotes(where, now: datetime, limit: int) -> list[Quote]:
    remaining = _remaining()
    rows = db.session.execute(
        select(CreditEntry, remaining, User, LessonPack.name, LessonPack.currency, PackPurchase)
        .join(User, User.id == CreditEntry.student_id)
        .outerjoin(LessonPack, LessonPack.id == CreditEntry.pack_id)
        .outerjoin(PackPurchase, PackPurchase.lot_id == CreditEntry.id)
        .where(CreditEntry.kind == CreditKind.PURCHASE, *where)
        .order_by(CreditEntry.created_at.desc(), CreditEntry.id.desc()).limit(limit)).all()
    bought = [purchase.id for *_rest, purchase in rows if purchase is not None]
    committed = dict(db.session.execute(  # refunds succeeded or under way, per purchase (as `refunds.refundable`)
        select(Refund.pack_purchase_id, func.sum(Refund.amount_minor))
        .where(Refund.pack_purchase_id.in_(bought), Refund.status != RefundStatus.FAILED)
        .group_by(Refund.pack_purchase_id)).all()) if bought else {}
    quotes = []
    for lot, left, student, pack_name, pack_currency, purchase in rows:
        paid = purchase.paid_minor if purchase is not None else 0
        unrefunded = paid - int(committed.get(purchase.id, 0)) if purchase is not None else 0
        expired = lot.expires_at is not None and lot.expires_at <= now
        quotes.append(Quote(
            lot_id=lot.id, balance_id=lot.balance_id, student=student, pack_name=pack_name or "Lesson pack",
            minutes=lot.minutes, credits=lot.amount, remaining=int(left), bought_at=lot.created_at,
            expires_at=lot.expires_at, purchase_id=purchase.id if purchase is not None else None, paid_minor=paid,
            left_minor=unrefunded, amount_minor=0 if expired else pro_rata(int(left), lot.amount, paid, unrefunded),
            currency=purchase.currency if purchase is not None else (pack_currency or ""), expired=expired))
    return quotes


def packs_bought(now: datetime, *, limit: int = 200) -> list[Quote]:
    """The studio's packs bought (through Checkout or at the desk), newest first, with what a refund would send."""
    return _quotes((), now, limit)


def quote(lot_id: int, now: datetime) -> Quote:
    found = _quotes((CreditEntry.id == lot_id,), now, 1) if 0 < lot_id < 2**31 else []
    if not found:
        raise NotFound("No such lesson pack bought at this studio.")
    return found[0]


@dataclass(frozen=True)
class Refunded:
    credits: int
    amount_minor: int
    currency: str
    refund_id: int | None


def refund_unused(studio: Studio, lot_id: int, *, seen: str | None, note: str | None, actor: audit.Actor,
                  now: datetime) -> Refunded:
    """Refund the unused credits of one pack (and their share of its payment), as the admin saw them (`seen`: the
    quote's fingerprint). A second click, a stale page or credits spent meanwhile is a 409 and changes nothing."""
    note = (note or "").strip()
    if not note:
        raise InvalidInput("Say why, for the audit log.", code="note_required", field="note")
    shown = quote(lot_id, now)
    if shown.expired:
        raise Conflict("These credits have expired: there is nothing left to refund.")
    if shown.remaining <= 0:
        raise Conflict("Nothing is left of this pack to refund: its credits were refunded or used.")
    if seen != shown.fingerprint:
        raise Conflict("This pack changed since the page was shown: it now refunds "
                       f"{shown.remaining} credit{'' if shown.remaining == 1 else 's'}. Reload the page and check "
                       "the amount again.")
    db.session.commit()  # the refund's transaction starts with its write (see states.credit.refund_lot)
    refund_id = None
    try:
        credit_states.refund_lot(lot_id, balance_id=shown.balance_id, expected=shown.remaining, now=now,
                                 actor=actor, note=note[:2000])
        if shown.purchase_id is not None and shown.paid_minor > 0:
            purchase = db.session.get(PackPurchase, shown.purchase_id)
            amount = pro_rata(shown.remaining, shown.credits, purchase.paid_minor, refunds.refundable(purchase))
            if amount != shown.amount_minor:
                raise Conflict("The pack's payment changed since the page was shown. Reload the page and check the "
                               "amount again.")
            if amount > 0:
                refund_id = refunds.record(payment=purchase, amount_minor=amount, reason=REASON,
                                           purpose_key=f"pack_purchase:{purchase.id}:lot:{lot_id}", now=now,
                                           actor=actor, note=note[:2000]).id
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("This pack's unused credits were already refunded.") from None
    except DomainError:
        db.session.rollback()
        raise
    if refund_id is not None:
        refunds.queue(refund_id)
    return Refunded(shown.remaining, shown.amount_minor if refund_id else 0, shown.currency, refund_id)


def money_for(entries: list[CreditEntry]) -> dict[int, Refund]:
    """The money refund behind each `refund` entry of a pack bought through Checkout, by entry id."""
    lots = {e.lot_id: e.id for e in entries if e.kind == CreditKind.REFUND and e.lot_id}
    if not lots:
        return {}
    rows = db.session.execute(select(PackPurchase.lot_id, Refund)
                              .join(Refund, Refund.pack_purchase_id == PackPurchase.id)
                              .where(PackPurchase.lot_id.in_(lots), Refund.reason == REASON)).all()
    return {lots[lot_id]: refund for lot_id, refund in rows}
