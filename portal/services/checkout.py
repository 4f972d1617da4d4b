"""From a held slot to a Stripe Checkout Session, and back when the student walks away."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import update

from portal import metrics
from portal.extensions import db
from portal.models import Booking, BookingStatus, Payment, PaymentStatus, User
from portal.payments import PaymentProvider, PaymentProviderError
from portal.services.errors import DomainError

log = logging.getLogger(__name__)


class CheckoutUnavailable(DomainError):
    status = 503
    code = "checkout_unavailable"


def start_checkout(*, booking: Booking, student: User, provider: PaymentProvider, success_url: str,
                   cancel_url: str, now: datetime) -> Payment:
    """Open a Checkout Session expiring with the hold. On a provider error, release the hold and raise."""
    studio = booking.studio
    booking_id = booking.id
    request = dict(
        amount_minor=booking.price_minor, currency=booking.currency,
        product_name=f"{booking.package.name} · {booking.resource.name} · {studio.name}",
        reference=f"booking-{booking.id}", metadata={"booking_id": str(booking.id), "studio": studio.slug},
        customer_email=student.email, success_url=success_url, cancel_url=cancel_url,
        expires_at=booking.hold_expires_at, idempotency_key=f"booking-{booking.id}-checkout",
    )
    db.session.commit()  # no transaction (on SQLite: no write lock) is held while Stripe answers
    try:
        session = provider.create_checkout_session(**request)
    except PaymentProviderError as error:
        log.warning("checkout for booking %s failed: %s", booking_id, error)
        metrics.checkout_failures.inc()
        db.session.execute(update(Booking).where(Booking.id == booking_id, Booking.status == BookingStatus.HELD)
                           .values(status=BookingStatus.EXPIRED, updated_at=now))
        db.session.commit()
        raise CheckoutUnavailable("We could not reach the payment service, so your time was released. "
                                  "Please try again in a moment.") from None
    payment = Payment(studio_id=booking.studio_id, booking_id=booking_id, checkout_session_id=session.id,
                      checkout_url=session.url or "", amount_minor=request["amount_minor"],
                      currency=request["currency"])
    db.session.add(payment)
    db.session.commit()
    metrics.checkout_sessions_created.inc()
    return payment


def hold_expiry(now: datetime, hold_minutes: int) -> datetime:
    """When a new hold (and its Checkout Session) expires. Stripe requires at least 30 minutes from creation;
    a minute of margin keeps that true after the request's own latency."""
    return now + timedelta(minutes=max(hold_minutes, 30), seconds=60)


def release_hold(*, booking: Booking, provider: PaymentProvider, now: datetime) -> bool:
    """Free a held slot the student gave up on and expire its Checkout Session. False if it was not released.

    The status changes are conditional updates, so a payment settling at the same moment wins: a booking it
    confirmed, or a payment it marked paid, is never turned back.
    """
    if booking.status != BookingStatus.HELD:
        return False
    payment = booking.payment
    if payment is not None and payment.status not in (PaymentStatus.PENDING, PaymentStatus.FAILED):
        return False  # money is moving: the webhook decides
    booking_id = booking.id
    session_id = payment.checkout_session_id if payment is not None else None
    db.session.commit()
    if session_id is not None and _session_completed(provider, session_id):
        return False  # paid in another tab meanwhile: keep the slot for the webhook to confirm
    released = db.session.execute(
        update(Booking).where(Booking.id == booking_id, Booking.status == BookingStatus.HELD)
        .values(status=BookingStatus.EXPIRED, updated_at=now)).rowcount
    if released:
        db.session.execute(update(Payment).where(Payment.booking_id == booking_id,
                                                 Payment.status.in_((PaymentStatus.PENDING, PaymentStatus.FAILED)))
                           .values(status=PaymentStatus.EXPIRED, updated_at=now))
    db.session.commit()
    db.session.expire_all()
    if released and session_id is not None:
        expire_session_quietly(provider, session_id)
    return bool(released)


def _session_completed(provider: PaymentProvider, session_id: str) -> bool:
    try:
        return provider.retrieve_checkout_session(session_id).status == "complete"
    except PaymentProviderError:
        return False  # cannot tell: releasing is safe, a late payment is confirmed or refunded by its webhook


def expire_session_quietly(provider: PaymentProvider, session_id: str) -> None:
    """Best effort: a session that completed meanwhile is settled by its webhook (confirm or refund)."""
    try:
        provider.expire_checkout_session(session_id)
    except PaymentProviderError as error:
        log.info("could not expire checkout session %s: %s", session_id, error)
