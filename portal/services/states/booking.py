"""A booking's life: `held` → `confirmed` → `cancelled`, or `held` → `expired`; a move keeps it `confirmed`.

| transition | from               | to        | who                                                             |
|------------|--------------------|-----------|-----------------------------------------------------------------|
| release    | held               | expired   | the student, the hold sweep, a failed or expired Checkout        |
| confirm    | held, expired      | confirmed | payment verified (an expired hold whose slot is still free too)  |
| cancel     | confirmed          | cancelled | the student under the policy, or the studio                      |
| move       | confirmed          | confirmed | a reschedule (its history goes to `reschedules`)                |
| no_show    | confirmed          | no_show   | the studio, after the lesson's start, when nobody came          |

Holding a slot creates a `held` booking (`services.bookings.hold_slot`); everything after goes through here, and
each change that moves a booking in or out of `confirmed` (or cancels it late) adds to the metrics' running totals
in the same transaction (`services.booking_totals`).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from portal.extensions import db
from portal.models import Booking, BookingStatus, Payment, PaymentStatus, Reschedule
from portal.services import audit, booking_totals
from portal.services.states import payment as payments
from portal.services.states.machine import IllegalTransition, Machine, Transition

HELD, CONFIRMED, CANCELLED, EXPIRED, NO_SHOW = (BookingStatus.HELD, BookingStatus.CONFIRMED,
                                                BookingStatus.CANCELLED, BookingStatus.EXPIRED, BookingStatus.NO_SHOW)

MACHINE = Machine("booking", Booking, {
    "release": Transition({HELD}, EXPIRED, "released"),
    "confirm": Transition({HELD, EXPIRED}, CONFIRMED, "confirmed"),
    "cancel": Transition({CONFIRMED}, CANCELLED, "cancelled"),
    "move": Transition({CONFIRMED}, CONFIRMED, "moved"),
    "no_show": Transition({CONFIRMED}, NO_SHOW, "marked as a no-show"),
})

#: Payment states in which nobody is paying for a hold any more, so releasing it cannot race the money.
_RELEASABLE_PAYMENTS = (PaymentStatus.PENDING, PaymentStatus.FAILED, PaymentStatus.EXPIRED)


def release(booking_id: int, *, now: datetime, actor: audit.Actor, note: str,
            even_if_paying: bool = False) -> list[int]:
    """A hold ends unpaid: its slot is free again and its open payment (if any) expires. A payment that failed
    stays `failed`: that is what happened to it. Returns the ids of the bookings released.

    A week of a weekly series is paid with the other held weeks in one Checkout, so releasing it releases every
    held week of the series together (each audited) and expires that one payment: no week stays held for a
    Checkout that can no longer be paid.

    Refused while money is moving for it (the payment is processing or paid: its webhook decides), unless
    `even_if_paying` (a new hold takes the slot of one that expired: a late payment is then refunded).
    """
    series_id = db.session.scalar(select(Booking.series_id).where(Booking.id == booking_id))
    payment = payment_of(booking_id, series_id)
    if payment is not None and payment.status not in _RELEASABLE_PAYMENTS and not even_if_paying:
        raise IllegalTransition("The payment for this booking is under way, so its time stays held until the "
                                "payment settles.", current=HELD)
    MACHINE.apply(booking_id, "release", now=now, actor=actor, note=note)
    released = [booking_id]
    if series_id is not None:
        for week_id in db.session.scalars(select(Booking.id).where(
                Booking.series_id == series_id, Booking.status == HELD, Booking.id != booking_id)
                .order_by(Booking.start_at)).all():
            MACHINE.apply(week_id, "release", now=now, actor=actor, current=HELD,
                          note=f"{note} (released with the rest of its weekly series)"[:500],
                          after={"with_booking": booking_id})
            released.append(week_id)
    if payment is not None and payment.status == PaymentStatus.PENDING:
        payments.expire(payment.id, now=now, current=PaymentStatus.PENDING)
    return released


def payment_of(booking_id: int, series_id: int | None = None):
    """The payment (id, status, checkout_session_id) covering a booking: its own, or its series' one Checkout."""
    columns = (Payment.id, Payment.status, Payment.checkout_session_id)
    own = db.session.execute(select(*columns).where(Payment.booking_id == booking_id)).one_or_none()
    if own is not None or series_id is None:
        return own
    return db.session.execute(select(*columns).where(Payment.series_id == series_id)).one_or_none()


def release_overlapping_expired(*, resource_id: int, start: datetime, until: datetime, now: datetime) -> int:
    """Release holds past their expiry that overlap [start, until) on the resource, so a new booking may take the
    slot in the same transaction."""
    stale = db.session.scalars(select(Booking.id).where(
        Booking.resource_id == resource_id, Booking.status == HELD, Booking.hold_expires_at <= now,
        Booking.start_at < until, Booking.occupied_until > start)).all()
    for booking_id in stale:
        release(booking_id, now=now, actor=audit.SYSTEM, even_if_paying=True,
                note="The hold had expired unpaid and its time was booked again.")
    return len(stale)


def confirm(booking_id: int, *, now: datetime, policy: dict) -> None:
    """Payment verified: the booking is confirmed with the policy in force now (it decides the booking's fate)."""
    counted = _CONFIRM.apply(booking_id, now=now, policy=policy)
    booking_totals.count((booking_totals.Counted(*counted), 1, 0))


def confirm_many(confirmed: list[tuple[int, dict, booking_totals.Counted]], *, now: datetime) -> int:
    """`confirm` for many bookings at once, each `(booking id, policy, where it counts)` (where it counts was read
    with it: a booking that can be confirmed has not moved); returns how many were confirmed (fewer than asked: one
    moved meanwhile, and the caller rolls back)."""
    changed = _CONFIRM.apply_many([{"row_id": booking_id, "policy": policy} for booking_id, policy, _ in confirmed],
                                  now=now)
    booking_totals.count(*((counted, 1, 0) for _, _, counted in confirmed))
    return changed


#: `confirm`, built once (a worker confirms a booking on every paid Checkout).
_CONFIRM = MACHINE.prepare("confirm", values={"policy": MACHINE.param("policy", "policy")},
                           returning=[Booking.__table__.c[column.key] for column in booking_totals.COUNTED_COLUMNS])


def cancel(booking_id: int, *, now: datetime, actor: audit.Actor, late: bool, note: str = "",
           by_studio: bool = False, reason: str = "") -> None:
    """Free the slot now. `late` marks a late cancellation (the policy's fee and make-up apply); `by_studio` a
    cancellation by the studio, which never counts against the student (`reason` is what they are told)."""
    MACHINE.apply(booking_id, "cancel", now=now, actor=actor, note=note,
                  values={"cancelled_at": now, "ical_sequence": Booking.ical_sequence + 1,
                          "penalty_reason": "late_cancel" if late and not by_studio else None,
                          "cancelled_by": "studio" if by_studio else "student",
                          "cancel_reason": reason[:200] or None},
                  after={"late": late and not by_studio, "by": "studio" if by_studio else "student"})
    booking_totals.count((booking_totals.where_counted(booking_id), -1, 1 if late and not by_studio else 0))


def mark_no_show(booking_id: int, *, now: datetime, actor: audit.Actor, note: str) -> None:
    """The lesson's time came and the student did not: nothing is refunded. Only once the lesson has started."""
    MACHINE.apply(booking_id, "no_show", now=now, actor=actor, note=note, where=(Booking.start_at <= now,),
                  stale="A lesson can be marked as a no-show only once it has started.")
    booking_totals.count((booking_totals.where_counted(booking_id), -1, 0))


def move(booking: Booking, *, now: datetime, actor: audit.Actor, resource_id: int, start: datetime,
         end: datetime, until: datetime, expected_moves: int, note: str = "") -> Reschedule:
    """Move a confirmed lesson (the database's no-overlap guarantee covers the new span) and record the move.

    `expected_moves` is the reschedule count the caller decided on: if another move landed first, this one is
    refused rather than applied on top of it.
    """
    origin = {"resource_id": booking.resource_id, "start_at": booking.start_at.isoformat()}
    from_resource, from_start, booking_id = booking.resource_id, booking.start_at, booking.id
    counted_before = booking_totals.where_counted(booking_id)
    MACHINE.apply(booking_id, "move", now=now, actor=actor, note=note,
                  where=(Booking.reschedule_count == expected_moves,),
                  values={"resource_id": resource_id, "start_at": start, "end_at": end, "occupied_until": until,
                          "reschedule_count": Booking.reschedule_count + 1,
                          "ical_sequence": Booking.ical_sequence + 1},
                  before=origin, after={"resource_id": resource_id, "start_at": start.isoformat()},
                  stale="This lesson changed meanwhile. Reload the page and try again.")
    booking_totals.count((counted_before, -1, 0), (booking_totals.where_counted(booking_id), 1, 0))
    move = Reschedule(studio_id=booking.studio_id, booking_id=booking_id, actor_id=actor.user_id,
                      from_resource_id=from_resource, from_start_at=from_start, to_resource_id=resource_id,
                      to_start_at=start, lead_minutes=int((from_start - now).total_seconds() // 60), created_at=now)
    db.session.add(move)
    return move
