"""From a held slot to a Stripe Checkout Session, and back when the student walks away."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from portal import metrics
from portal.extensions import db
from portal.models import Booking, BookingStatus, Payment, User
from portal.payments import PaymentProvider, PaymentProviderError
from portal.services import audit
from portal.services.errors import DomainError
from portal.services.states import booking as booking_states
from portal.services.states.machine import IllegalTransition

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
        booking_states.release(booking_id, now=now, actor=audit.SYSTEM,
                               note=f"The payment service could not open Checkout: {error}"[:500])
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


def release_hold(*, booking: Booking, provider: PaymentProvider, now: datetime, actor: audit.Actor) -> None:
    """Free a held slot the student gave up on and expire its Checkout Session.

    Raises `IllegalTransition` (409) when the booking is not a hold any more (paid, cancelled, released) or its
    payment is under way. A payment settling at the same moment wins: the transitions are conditional updates,
    and a session Stripe reports complete keeps the hold for its webhook to confirm.
    """
    booking_id = booking.id
    payment = booking.payment
    session_id = payment.checkout_session_id if payment is not None else None
    if not booking_states.MACHINE.allows("release", booking.status):
        raise IllegalTransition(_not_releasable(booking), current=booking.status)
    db.session.commit()
    if session_id is not None and _session_completed(provider, session_id):
        raise IllegalTransition("Your payment has just gone through, so this time stays yours. "
                                "The booking confirms in a moment.", current=BookingStatus.HELD)
    booking_states.release(booking_id, now=now, actor=actor, note="Given up before paying.")
    db.session.commit()
    db.session.expire_all()
    if session_id is not None:
        expire_session_quietly(provider, session_id)


def _not_releasable(booking: Booking) -> str:
    if booking.status == BookingStatus.CONFIRMED:
        return ("This lesson is paid and confirmed, so there is no hold to release. "
                "To cancel it, use Cancel lesson on the booking page.")
    if booking.status == BookingStatus.EXPIRED:
        return "This hold was already released; the time is free again."
    return f"This booking is {booking.status.value}, so there is no hold to release."


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
