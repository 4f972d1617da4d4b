"""A booking's history in one list: the hold, its Checkout Session and payment, Stripe's webhook events about
them, moves, refunds, emails and audit rows, oldest first, in the studio's time. The admin's booking page and the
ops console's drill-down both show it. Webhook events are found through their indexed object and PaymentIntent
ids, never by reading payloads."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select

from portal.extensions import db
from portal.formatting import money, when
from portal.models import (
    AuditEntry,
    Booking,
    CreditEntry,
    NotificationLog,
    PackPurchase,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Reschedule,
    Resource,
    Studio,
    WebhookEvent,
)


@dataclass(frozen=True)
class Entry:
    """One line of a booking's timeline."""

    at: datetime
    kind: str       # hold, checkout, payment, webhook, credits, move, refund, email, audit
    title: str
    detail: str = ""
    status: str = ""



def _money(minor: int, currency: str) -> str:
    return money(minor, currency)


def _when(studio: Studio, value: datetime) -> str:
    return when(value, studio.tz, studio.locale)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def of(studio: Studio, booking: Booking) -> list[Entry]:
    """Everything that happened to the booking, oldest first: the hold, its Checkout Session and payment, Stripe's
    webhook events about that session, moves, refunds, emails and the audit rows of the booking, its payment and
    its refunds."""
    entries: list[Entry] = []
    names = {r.id: r.name for r in db.session.scalars(select(Resource))}
    entries.append(Entry(booking.created_at, "hold", f"Held for {booking.student.name or booking.student.email}",
                         f"{booking.package.name}, {names.get(booking.resource_id, '?')}"
                         + (f"; the hold ran until {_when(studio, booking.hold_expires_at)}"
                            if booking.hold_expires_at else "")))
    payment = booking.payment
    refund_rows: list[Refund] = []
    if payment is not None:
        refund_rows = sorted(payment.refunds, key=lambda r: r.id)
        entries.append(Entry(payment.created_at, "checkout", "Checkout Session opened",
                             f"{payment.checkout_session_id} for {_money(payment.amount_minor, payment.currency)}"))
        entries.extend(_payment_entries(payment))
        entries.extend(_webhook_entries(payment.checkout_session_id, payment.payment_intent_id))
    for move in db.session.scalars(select(Reschedule).where(Reschedule.booking_id == booking.id)
                                   .order_by(Reschedule.id)):
        entries.append(Entry(move.created_at, "move", "Moved",
                             f"from {names.get(move.from_resource_id, '?')}, {_when(studio, move.from_start_at)} "
                             f"to {names.get(move.to_resource_id, '?')}, {_when(studio, move.to_start_at)}"))
    entries.extend(_refund_entries(refund_rows))
    for mail in db.session.scalars(select(NotificationLog).where(NotificationLog.booking_id == booking.id,
                                                                 NotificationLog.studio_id == studio.id)
                                   .order_by(NotificationLog.id)):
        detail_text = f"to {mail.recipient}; {_plural(mail.attempts, 'attempt')}"
        if mail.last_error:
            detail_text += f"; last error: {mail.last_error}"
        entries.append(Entry(mail.sent_at or mail.created_at, "email",
                             f"Email: {mail.kind.replace('_', ' ')}", detail_text, mail.status))
    targets = [(AuditEntry.target_type == "booking") & (AuditEntry.target_id == booking.id)]
    if payment is not None:
        targets.append((AuditEntry.target_type == "payment") & (AuditEntry.target_id == payment.id))
    entries.extend(_audit_entries(studio, targets, refund_rows))
    return _in_order(entries)


def of_pack_purchase(studio: Studio, purchase: PackPurchase) -> list[Entry]:
    """Everything that happened to a lesson pack bought through Checkout, oldest first: its session and payment,
    the credits it added and took back, Stripe's events about it, its refunds and the audit rows of the purchase
    and its refunds."""
    pack = purchase.pack
    entries = [Entry(purchase.created_at, "checkout", "Checkout Session opened",
                     f"{purchase.checkout_session_id} for {_money(purchase.amount_minor, purchase.currency)}: "
                     f"{pack.name} for {purchase.student.email}")]
    if purchase.paid_at is not None:
        entries.append(Entry(purchase.paid_at, "payment", "Payment received",
                             _money(purchase.amount_minor, purchase.currency)))
    elif purchase.status.value != "pending":
        entries.append(Entry(purchase.updated_at, "payment", f"Purchase {purchase.status.value}", "",
                             purchase.status.value))
    if purchase.lot_id is not None:
        moves = db.session.scalars(select(CreditEntry).where(
            or_(CreditEntry.id == purchase.lot_id, CreditEntry.lot_id == purchase.lot_id)).order_by(CreditEntry.id))
        for move in moves:
            entries.append(Entry(move.created_at, "credits", f"Credits {move.amount:+d} ({move.kind.value})",
                                 move.note))
    entries.extend(_webhook_entries(purchase.checkout_session_id, purchase.payment_intent_id))
    refund_rows = sorted(purchase.refunds, key=lambda r: r.id)
    entries.extend(_refund_entries(refund_rows))
    targets = [(AuditEntry.target_type == "pack purchase") & (AuditEntry.target_id == purchase.id)]
    entries.extend(_audit_entries(studio, targets, refund_rows))
    return _in_order(entries)


_ORDER = {kind: i for i, kind in enumerate(("hold", "checkout", "webhook", "payment", "credits", "move", "refund",
                                            "audit", "email"))}


def _in_order(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (e.at, _ORDER[e.kind]))


def _refund_entries(refund_rows: list[Refund]) -> list[Entry]:
    entries = []
    for refund in refund_rows:
        amount = _money(refund.amount_minor, refund.currency)
        detail_text = f"reason: {refund.reason}; {_plural(refund.attempts, 'attempt')}"
        if refund.last_error:
            detail_text += f"; last error: {refund.last_error}"
        entries.append(Entry(refund.created_at, "refund", f"Refund of {amount} recorded", detail_text,
                             refund.status.value))
        if refund.status != RefundStatus.PENDING:
            entries.append(Entry(refund.updated_at, "refund", f"Refund of {amount} {refund.status.value}",
                                 refund.last_error if refund.status == RefundStatus.FAILED else
                                 (refund.provider_refund_id or ""), refund.status.value))
    return entries


def _audit_entries(studio: Studio, targets: list, refund_rows: list[Refund]) -> list[Entry]:
    if refund_rows:
        targets = [*targets,
                   (AuditEntry.target_type == "refund") & AuditEntry.target_id.in_([r.id for r in refund_rows])]
    entries = []
    for row in db.session.scalars(select(AuditEntry).where(AuditEntry.studio_id == studio.id, or_(*targets))
                                  .order_by(AuditEntry.id)):
        change = _change(row.before, row.after)
        detail_text = "; ".join(part for part in (change, f"note: {row.note}" if row.note else "") if part)
        entries.append(Entry(row.created_at, "audit", f"{row.action} by {row.actor_label or row.actor_kind}",
                             detail_text))
    return entries


def _change(before: dict | None, after: dict | None) -> str:
    before, after = before or {}, after or {}
    if "status" in before:
        text = f"{before['status']} → {after.get('status', '–')}"
    elif "status" in after:
        text = f"status: {after['status']}"
    else:
        text = ""
    extra = [f"{k}: {v}" for k, v in after.items() if k != "status"]
    return ", ".join([text, *extra] if text else extra)


def _payment_entries(payment: Payment) -> list[Entry]:
    entries = []
    if payment.paid_at is not None and payment.amount_received_minor is not None:
        entries.append(Entry(payment.paid_at, "payment", "Payment received",
                             _money(payment.amount_received_minor, payment.received_currency or payment.currency)))
    status = payment.status
    if status not in (PaymentStatus.PENDING, PaymentStatus.PAID) and payment.updated_at is not None:
        label = status.value.replace("_", " ")
        detail_text = payment.flag_detail or payment.last_error
        if status in (PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED):
            detail_text = f"{_money(payment.amount_refunded_minor, payment.currency)} refunded in all"
        entries.append(Entry(payment.updated_at, "payment", f"Payment {label}", detail_text, status.value))
    return entries


def _webhook_entries(session_id: str, intent_id: str | None) -> list[Entry]:
    """Stripe's events about a Checkout Session (or its PaymentIntent, for refunds and charges)."""
    about = [WebhookEvent.object_id == session_id]
    if intent_id:
        about.append(WebhookEvent.intent_id == intent_id)
    found = db.session.scalars(select(WebhookEvent).where(or_(*about)).order_by(WebhookEvent.id))
    entries = []
    for event in found:
        detail_text = _plural(event.attempts, "attempt")
        if event.deliveries > 1:
            detail_text += f"; delivered {event.deliveries} times"
        if event.last_error:
            detail_text += f"; last error: {event.last_error}"
        entries.append(Entry(event.received_at, "webhook", f"Stripe event {event.type}", detail_text,
                             event.status.value))
    return entries


