"""Find a booking, payment, lesson pack purchase, refund or webhook event across studios from what a person has in
hand: a booking reference (`#42`), a student's email, a Checkout Session (`cs_…`), PaymentIntent (`pi_…`), refund
(`re_…`) or Stripe event (`evt_…`) id. Ops only; each lookup is one indexed equality."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone

from sqlalchemy import func, select

from portal import tenancy
from portal.extensions import db
from portal.formatting import when
from portal.models import Booking, PackPurchase, Payment, Refund, Studio, User, WebhookEvent
from portal.parsing import whole_number

LIMIT = 50


@dataclass(frozen=True)
class Hit:
    kind: str          # booking | payment | pack_purchase | refund | event
    id: int
    studio: str | None
    label: str         # one line: what it is
    status: str


def find(text: str) -> list[Hit]:
    text = text.strip()
    if not text or len(text) > 255:
        return []
    with tenancy.all_tenants():
        slugs = dict(db.session.execute(select(Studio.id, Studio.slug)).all())
        if text.lstrip("#").isdigit():  # a booking reference (only ASCII digits name one)
            booking_id = whole_number(text.lstrip("#"), 1)
            return _bookings([Booking.id == booking_id], slugs) if booking_id is not None else []
        if "@" in text:
            user_ids = select(User.id).where(func.lower(User.email) == text.lower())
            return _bookings([Booking.student_id.in_(user_ids)], slugs)
        if text.startswith("cs_"):
            return (_payments([Payment.checkout_session_id == text], slugs)
                    + _packs([PackPurchase.checkout_session_id == text], slugs))
        if text.startswith("pi_"):
            return (_payments([Payment.payment_intent_id == text], slugs)
                    + _packs([PackPurchase.payment_intent_id == text], slugs))
        if text.startswith("re_"):
            refunds = db.session.scalars(select(Refund).where(Refund.provider_refund_id == text)).all()
            return [Hit("refund", r.id, slugs.get(r.studio_id),
                        f"refund of lesson pack purchase {r.pack_purchase_id}" if r.pack_purchase_id is not None
                        else f"refund of payment #{r.payment_id}", r.status.value)
                    for r in refunds]
        if text.startswith("evt_"):
            return _events([WebhookEvent.provider_event_id == text], slugs)
        return _events([WebhookEvent.object_id == text], slugs)  # a charge, a refund… an event is about


def _bookings(where, slugs) -> list[Hit]:
    rows = db.session.execute(select(Booking.id, Booking.studio_id, Booking.status, Booking.start_at, User.email)
                              .join(User, User.id == Booking.student_id).where(*where)
                              .order_by(Booking.start_at.desc()).limit(LIMIT)).all()
    return [Hit("booking", row.id, slugs.get(row.studio_id),
                f"booking #{row.id} of {row.email} at {when(row.start_at, timezone.utc)}", row.status.value)
            for row in rows]


def _payments(where, slugs) -> list[Hit]:
    rows = db.session.execute(select(Payment.id, Payment.studio_id, Payment.status, Payment.booking_id)
                              .where(*where).limit(LIMIT)).all()
    return [Hit("payment", row.id, slugs.get(row.studio_id), f"payment for booking #{row.booking_id}",
                row.status.value) for row in rows]


def _packs(where, slugs) -> list[Hit]:
    rows = db.session.execute(select(PackPurchase.id, PackPurchase.studio_id, PackPurchase.status, User.email)
                              .join(User, User.id == PackPurchase.student_id).where(*where).limit(LIMIT)).all()
    return [Hit("pack_purchase", row.id, slugs.get(row.studio_id), f"lesson pack bought by {row.email}",
                row.status.value) for row in rows]


def _events(where, slugs) -> list[Hit]:
    rows = db.session.execute(select(WebhookEvent.id, WebhookEvent.studio_id, WebhookEvent.status,
                                     WebhookEvent.type, WebhookEvent.provider_event_id)
                              .where(*where).order_by(WebhookEvent.id.desc()).limit(LIMIT)).all()
    return [Hit("event", row.id, slugs.get(row.studio_id), f"{row.type} {row.provider_event_id}", row.status.value)
            for row in rows]
