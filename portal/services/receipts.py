"""What was paid for a booking, in one definition: the booking page, My lessons and the emails all read it here.

A lesson's price is what it costs; what was paid is what Stripe reports receiving (nothing while a payment is
open); refunds count once Stripe confirms them, and refunds still under way are shown as such.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from portal.extensions import db
from portal.formatting import money
from portal.models import Booking, BookingStatus, Payment, PaymentStatus, RefundStatus

#: `PaymentSummary.state` values.
NO_PAYMENT, AWAITING, PROCESSING, PAID, UNDER_REVIEW, FAILED, NOT_PAID, CREDIT = (
    "no_payment", "awaiting", "processing", "paid", "under_review", "failed", "not_paid", "credit")


@dataclass(frozen=True)
class PaymentSummary:
    state: str
    currency: str
    price_minor: int             # what the lesson costs
    paid_minor: int              # what the student paid (Stripe's figure), 0 while nothing arrived
    refunded_minor: int          # refunds Stripe has confirmed
    refund_pending_minor: int    # refunds recorded or sent, not confirmed yet
    refund_failed: bool          # a refund failed: the studio has been told and will sort it out
    checkout_url: str | None     # where the student can pay now, when they can

    @property
    def can_pay(self) -> bool:
        return self.checkout_url is not None

    @property
    def settled(self) -> bool:
        """Money arrived (whether or not it matched, and whatever was refunded since)."""
        return self.state in (PAID, UNDER_REVIEW)

    def amount(self, minor: int) -> str:
        return money(minor, self.currency)

    @property
    def label(self) -> str:
        """One line saying where the money stands, e.g. "Paid $65.00 · $32.50 refunded"."""
        if self.state == AWAITING:
            return "Waiting for payment"
        if self.state == NO_PAYMENT:
            return "Not paid"
        if self.state == CREDIT:
            return "Paid with a lesson credit"
        if self.state == PROCESSING:
            return "Payment processing at your bank"
        if self.state == FAILED:
            return "Payment failed; nothing was charged"
        if self.state == NOT_PAID:
            return "Not paid"
        if self.state == UNDER_REVIEW:
            text = f"Payment of {self.amount(self.paid_minor)} received; the studio is checking it"
        else:
            text = f"Paid {self.amount(self.paid_minor)}"
        if self.refunded_minor and self.refunded_minor >= self.paid_minor:
            text += " · refunded in full"
        elif self.refunded_minor:
            text += f" · {self.amount(self.refunded_minor)} refunded"
        if self.refund_pending_minor:
            text += f" · a refund of {self.amount(self.refund_pending_minor)} is on its way"
        return text


def summarize(booking: Booking, now: datetime) -> PaymentSummary:
    """A week of a series paid in one Checkout shows its own share: its price, and the refunds made for it."""
    payment = booking.payment
    if payment is None and booking.series_id is not None:
        payment = db.session.scalar(select(Payment).where(Payment.series_id == booking.series_id))
    if payment is None:
        state = CREDIT if booking.price_minor == 0 and booking.status != BookingStatus.HELD else NO_PAYMENT
        return PaymentSummary(state, booking.currency, booking.price_minor, 0, 0, 0, False, None)
    status = payment.status
    refunds = list(payment.refunds)
    paid = payment.paid_minor
    if payment.series_id is not None:
        refunds = [r for r in refunds if (r.purpose_key or "").startswith(f"booking:{booking.id}:")]
        paid = booking.price_minor if paid >= booking.price_minor else paid
    refunded = sum(r.amount_minor for r in refunds if r.status == RefundStatus.SUCCEEDED)
    pending = sum(r.amount_minor for r in refunds if r.status == RefundStatus.PENDING)
    failed = any(r.status == RefundStatus.FAILED for r in refunds)
    checkout_url = None
    if status == PaymentStatus.PENDING:
        live = booking.status == BookingStatus.HELD and booking.is_live(now)
        state = AWAITING if live else NOT_PAID
        checkout_url = (payment.checkout_url or None) if live else None
    elif status == PaymentStatus.PROCESSING:
        state = PROCESSING
    elif status == PaymentStatus.MISMATCH:
        state = UNDER_REVIEW
    elif status in (PaymentStatus.PAID, PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED):
        state = PAID
    elif status == PaymentStatus.FAILED:
        state = FAILED
    else:
        state = NOT_PAID
    return PaymentSummary(state, payment.currency, booking.price_minor, paid, refunded, pending,
                          failed, checkout_url)
