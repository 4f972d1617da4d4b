"""A student moving or cancelling a paid lesson, under the policy snapshot taken when it was paid."""
from __future__ import annotations

from datetime import datetime, timezone

from portal.extensions import db
from portal.models import Booking, MakeupCredit, Studio, User
from portal.services import availability, notifications, refunds
from portal.services.audit import Actor
from portal.services.bookings import parse_start, slot_write
from portal.services.errors import Conflict, DomainError, InvalidInput
from portal.services.policy import cancel_terms, reschedule_decision
from portal.services.states import booking as booking_states


class PolicyRefusal(Conflict):
    code = "policy_refused"


def reschedule(*, studio: Studio, booking: Booking, actor: User, resource_slug: str, start_raw: str | None,
               now: datetime) -> Booking:
    """Move `booking` to a new slot (same package, any resource of the studio) in one transaction.

    The database's no-overlap guarantee covers the move: if someone takes the slot first, nothing changes and
    `SlotUnavailable` is raised. No second payment is taken.
    """
    decision = reschedule_decision(booking, now)
    if not decision.allowed:
        raise PolicyRefusal(decision.reason)
    offer = availability.find_offer(booking.package.slug, resource_slug or "")
    start = parse_start(start_raw)
    if start == booking.start_at and offer.resource.id == booking.resource_id:
        raise InvalidInput("That is the lesson's current time. Pick a different one.", code="same_slot",
                           field="start")
    local_day = start.astimezone(studio.tz).date()
    bookable = availability.free_slots(studio, offer, local_day, local_day, now, ignore_bookings=True)
    if start not in {s.astimezone(timezone.utc) for s in bookable.get(local_day, [])}:
        raise InvalidInput("That time is not open for booking. Pick one of the listed times.",
                           code="start_not_bookable", field="start")

    duration = booking.end_at - booking.start_at
    booking_id, expected_moves = booking.id, booking.reschedule_count
    db.session.commit()  # the move's transaction starts with a write (see bookings.hold_slot)
    with slot_write("Your lesson stays where it was."):
        booking_states.release_overlapping_expired(resource_id=offer.resource.id, start=start,
                                                   until=start + duration + studio.buffer, now=now)
        moved = db.session.get(Booking, booking_id)
        booking_states.move(moved, now=now, actor=Actor.of(actor), resource_id=offer.resource.id, start=start,
                            end=start + duration, until=start + duration + studio.buffer,
                            expected_moves=expected_moves, note="Moved by the student.")
        db.session.commit()
    db.session.refresh(moved)
    notifications.enqueue("reschedule", moved.id,
                          key=notifications.reschedule_key(moved.id, moved.reschedule_count))
    return moved


def cancel(*, booking: Booking, actor: User, now: datetime) -> Booking:
    """Cancel a confirmed lesson: free the slot now and refund what the policy allows (by a job).

    Outside the cancel window the refund is full; inside it the booking is a late cancel and the fee is kept.
    The booking's payment becomes refunded when Stripe confirms the refund.
    """
    payment = booking.payment
    paid = payment.paid_minor if payment else 0
    terms = cancel_terms(booking, now, paid_minor=paid)
    if not terms.allowed:
        raise PolicyRefusal(terms.reason)
    # One transaction: the slot is freed, the penalty noted and the refund owed recorded together; a concurrent
    # cancel of the same lesson finds it no longer confirmed and changes nothing.
    who = Actor.of(actor)
    booking_id = booking.id
    try:
        booking_states.cancel(booking_id, now=now, actor=who, late=terms.late,
                              note="Cancelled late by the student." if terms.late else "Cancelled by the student.")
        if terms.makeup:
            db.session.add(MakeupCredit(studio_id=booking.studio_id, student_id=booking.student_id,
                                        booking_id=booking_id, minutes=booking.duration_minutes))
        refund_id = None
        if payment is not None and terms.refund_minor > 0:
            refund_id = refunds.record(payment=payment, amount_minor=terms.refund_minor, now=now, actor=who,
                                       reason="requested_by_customer", purpose_key=f"booking:{booking_id}:cancel",
                                       note="Refund owed by the cancellation policy.").id
    except DomainError:
        db.session.rollback()  # nothing changes: the lesson stays confirmed
        raise
    db.session.commit()
    db.session.refresh(booking)
    if refund_id is not None:
        refunds.queue(refund_id)
    notifications.enqueue("cancellation", booking.id, key=notifications.cancellation_key(booking.id))
    return booking

