"""A student moving or cancelling a paid lesson, under the policy snapshot taken when it was paid."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from portal.extensions import db
from portal.models import Booking, BookingStatus, MakeupCredit, Refund, Resource, Studio, User
from portal.services import availability, credits, notifications, refunds, series
from portal.services.audit import Actor
from portal.services.bookings import parse_start, refuse_if_suspended, slot_write
from portal.services.errors import Conflict, DomainError, InvalidInput
from portal.services.policy import cancel_terms, reschedule_decision
from portal.services.states import booking as booking_states


class PolicyRefusal(Conflict):
    code = "policy_refused"


def reschedule(*, studio: Studio, booking: Booking, actor: User, resource_slug: str, start_raw: str | None,
               now: datetime) -> Booking:
    """The student moves `booking` to a new slot (same package, any resource of the studio) in one transaction,
    under the policy snapshot. The database's no-overlap guarantee covers the move: if someone takes the slot
    first, nothing changes and `SlotUnavailable` is raised. No second payment is taken."""
    decision = reschedule_decision(booking, now)
    if not decision.allowed:
        raise PolicyRefusal(decision.reason)
    # The lesson keeps its package, even one the studio has stopped selling; only the resource is new.
    offer = availability.Offer(booking.package, availability.find_resource(studio, resource_slug or ""))
    return _move(studio, booking, offer, parse_start(start_raw), actor=Actor.of(actor), now=now,
                 note="Moved by the student.")


def move_by_studio(*, studio: Studio, booking: Booking, actor: Actor, resource_slug: str, start_raw: str | None,
                   note: str, now: datetime) -> Booking:
    """The studio moves a confirmed lesson to any free time of an open resource: the policy does not apply (no
    lead time, no limit on moves), the no-overlap guarantee does, and the student is emailed."""
    if booking.status != BookingStatus.CONFIRMED:
        raise Conflict("Only a confirmed lesson can be moved.")
    resource = db.session.scalar(select(Resource).where(Resource.slug == (resource_slug or ""),
                                                        Resource.active.is_(True)))
    if resource is None:
        raise InvalidInput("No such room, instrument or teacher at this studio.", code="resource_not_found",
                           field="resource")
    offer = availability.Offer(booking.package, resource)
    return _move(studio, booking, offer, parse_start(start_raw), actor=actor, now=now, note=note)


def _move(studio: Studio, booking: Booking, offer: availability.Offer, start: datetime, *, actor: Actor,
          now: datetime, note: str) -> Booking:
    refuse_if_suspended(studio)
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
    with slot_write("The lesson stays where it was."):
        booking_states.release_overlapping_expired(resource_id=offer.resource.id, start=start,
                                                   until=start + duration + studio.buffer, now=now)
        moved = db.session.get(Booking, booking_id)
        booking_states.move(moved, now=now, actor=actor, resource_id=offer.resource.id, start=start,
                            end=start + duration, until=start + duration + studio.buffer,
                            expected_moves=expected_moves, note=note)
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
    payment, paid = series.payment_share(booking)  # a week of a series owns its share of the series' payment
    terms = cancel_terms(booking, now, paid_minor=paid)
    owed = min(terms.refund_minor, series.refundable_share(booking)[1])  # less what the studio refunded already
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
        credits.give_back(booking, now=now, actor=who, late=terms.late, makeup=terms.makeup)
        refund_id = None
        if payment is not None and owed > 0:
            refund_id = refunds.record(payment=payment, amount_minor=owed, now=now, actor=who,
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



def cancel_by_studio(*, booking: Booking, actor: Actor, note: str, now: datetime, reason: str = "") -> Booking:
    """The studio cancels a confirmed lesson: the slot is freed, everything paid is refunded (by a job), the
    student is emailed, and nothing counts against them (no late fee, no policy). `reason` is what the email tells
    the student (a blackout's reason, say); `note` goes to the audit log. A second attempt is refused (409) and
    changes nothing, so nothing is refunded or sent twice."""
    # A single lesson's payment is all its own; a week of a series gets back what is left of its share.
    payment, amount = series.refundable_share(booking)
    booking_id = booking.id
    try:
        booking_states.cancel(booking_id, now=now, actor=actor, late=False, note=note, by_studio=True,
                              reason=reason)
        credits.give_back(booking, now=now, actor=actor, late=False, makeup=False, by_studio=True)
        refund_id = None
        if payment is not None and amount > 0:
            refund_id = refunds.record(payment=payment, amount_minor=amount, reason="studio_cancelled",
                                       purpose_key=f"booking:{booking_id}:studio_cancel", now=now, actor=actor,
                                       note="Cancelled by the studio: refunded in full.").id
    except DomainError:
        db.session.rollback()
        raise
    db.session.commit()
    db.session.refresh(booking)
    if refund_id is not None:
        refunds.queue(refund_id)
    notifications.enqueue("cancellation", booking_id, key=notifications.cancellation_key(booking_id))
    return booking


def refund_part(*, booking: Booking, amount_minor: int, actor: Actor, note: str, request_key: str,
                now: datetime) -> int:
    """The studio refunds part of what was paid for a lesson (a goodwill gesture, a shortened lesson). The lesson
    itself is unchanged. `request_key` identifies the admin's form submission: the same submission sent twice
    records one refund. A week of a series paid in one Checkout refunds from its own share of that payment.
    Returns the refund's id."""
    payment, refundable_minor = series.refundable_share(booking)
    if payment is None or payment.paid_minor <= 0:
        raise Conflict("Nothing was paid for this lesson, so there is nothing to refund.")
    purpose = f"booking:{booking.id}:studio_refund:{request_key[:60]}"
    existing = db.session.scalar(select(Refund.id).where(Refund.purpose_key == purpose))
    if existing is not None:
        return existing
    if amount_minor > refundable_minor:
        raise InvalidInput("A refund cannot exceed what is left of this lesson's payment.",
                           code="refund_too_large", field="amount")
    refund_id = refunds.record(payment=payment, amount_minor=amount_minor, reason="requested_by_customer",
                               purpose_key=purpose, now=now, actor=actor, note=note).id
    db.session.commit()
    refunds.queue(refund_id)
    return refund_id


def mark_no_show(*, booking: Booking, actor: Actor, note: str, now: datetime) -> None:
    booking_states.mark_no_show(booking.id, now=now, actor=actor, note=note)
    db.session.commit()
