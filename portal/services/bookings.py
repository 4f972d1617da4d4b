"""Holding a slot. The database's no-overlap constraint is the guarantee; this module turns its verdict
into a clear answer and keeps expired holds from blocking a slot nobody is paying for."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from portal.extensions import db
from portal.models import Booking, BookingStatus, Studio, User
from portal.services import availability
from portal.services.checkout import hold_expiry
from portal.services.errors import Conflict, InvalidInput, NotFound, SlotUnavailable
from portal.services.states import booking as booking_states
from portal.services.timeinput import parse_instant

#: A student may keep this many unpaid holds at once, so nobody can sit on a studio's whole week.
MAX_OPEN_HOLDS = 3


class StudioSuspended(Conflict):
    code = "studio_suspended"


def refuse_if_suspended(studio: Studio) -> None:
    """A suspended studio takes no new bookings and no moves (its lessons stand; cancelling still works)."""
    if not studio.active:
        raise StudioSuspended(f"{studio.name} is not taking bookings at the moment.")


def parse_start(raw: str | None) -> datetime:
    """The lesson start a form posted: an ISO 8601 instant with its UTC offset, as the availability API gives it."""
    return parse_instant(raw, field="start")


def is_overlap_violation(error: IntegrityError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    return sqlstate == "23P01" or "booking_overlap" in str(error.orig)


@contextmanager
def slot_write(outcome: str):
    """Run a write that claims a slot; turn the database's refusal into `SlotUnavailable`.

    The no-overlap constraint (or SQLite's one-writer lock timing out) refuses the write; everything in the
    transaction is rolled back and the student is told, with `outcome` saying what happens to them now.
    """
    try:
        yield
    except IntegrityError as error:
        db.session.rollback()
        if is_overlap_violation(error):
            raise SlotUnavailable(f"Sorry, someone has just taken that time. {outcome}") from None
        raise
    except OperationalError as error:
        db.session.rollback()
        if "locked" in str(error.orig):
            raise SlotUnavailable(f"That time is being booked right now. {outcome}") from None
        raise
    except Exception:
        db.session.rollback()
        raise


def bookable_offer(*, studio: Studio, package_slug: str, resource_slug: str, start_raw: str | None,
                   now: datetime) -> tuple[availability.Offer, datetime]:
    """The package, resource and start a booking form posted, checked to be a bookable time (ignoring other
    bookings: whether it is free is the database's call). Raises `InvalidInput` (422) otherwise."""
    refuse_if_suspended(studio)
    try:
        offer = availability.find_offer(studio, package_slug or "", resource_slug or "")
    except NotFound as missing:  # in a booking form, an unknown choice is bad input
        raise InvalidInput(missing.message, code=missing.code, field=missing.field) from None
    start = parse_start(start_raw)
    local_day = start.astimezone(studio.tz).date()
    bookable = availability.free_slots(studio, offer, local_day, local_day, now, ignore_bookings=True)
    if start not in {s.astimezone(timezone.utc) for s in bookable.get(local_day, [])}:
        raise InvalidInput("That time is not open for booking. Pick one of the listed times.",
                           code="start_not_bookable", field="start")
    return offer, start


def new_hold(*, studio: Studio, student: User, offer: availability.Offer, start: datetime, now: datetime,
             series_id: int | None = None) -> Booking:
    """A `held` booking of `offer` at `start` (not yet added to the session): the price and expiry of now."""
    end = start + timedelta(minutes=offer.package.duration_minutes)
    return Booking(
        studio_id=studio.id, student_id=student.id, package_id=offer.package.id, resource_id=offer.resource.id,
        start_at=start, end_at=end, occupied_until=end + studio.buffer, status=BookingStatus.HELD,
        hold_expires_at=hold_expiry(now, studio.hold_minutes), series_id=series_id,
        price_minor=offer.package.price_minor, currency=offer.package.currency,
    )


def hold_slot(*, studio: Studio, student: User, package_slug: str, resource_slug: str, start_raw: str | None,
              now: datetime) -> Booking:
    """Hold `start` for `student` until the hold expires, or raise.

    Raises `NotFound` (unknown package/resource), `InvalidInput` (not a bookable time, too many open holds)
    or `SlotUnavailable` (someone holds or booked it: the database refused the overlap).
    """
    offer, start = bookable_offer(studio=studio, package_slug=package_slug, resource_slug=resource_slug,
                                  start_raw=start_raw, now=now)
    open_holds = db.session.scalar(select(func.count(Booking.id)).where(
        Booking.student_id == student.id, Booking.status == BookingStatus.HELD, Booking.hold_expires_at > now,
        Booking.series_id.is_(None)))
    if open_holds >= MAX_OPEN_HOLDS:
        raise InvalidInput(f"You already have {open_holds} lessons waiting for payment. "
                           "Pay for or release one first.", code="too_many_holds")

    booking = new_hold(studio=studio, student=student, offer=offer, start=start, now=now)
    resource_id, occupied_until = offer.resource.id, booking.occupied_until
    # Start a fresh transaction whose first statement writes: on SQLite it then waits its turn for the write
    # lock instead of failing because it read an older snapshot.
    db.session.commit()
    try:
        with slot_write("Please pick another."):
            booking_states.release_overlapping_expired(resource_id=resource_id, start=start, until=occupied_until,
                                                       now=now)
            db.session.add(booking)
            db.session.commit()
    except SlotUnavailable:
        own = _own_live_hold(student.id, resource_id, start, occupied_until, now)
        if own is not None:
            raise AlreadyYours(*own) from None
        raise
    return booking


class AlreadyYours(SlotUnavailable):
    """The student asked for a time their own unpaid hold covers (a second tab, a double submit)."""

    code = "already_held"

    def __init__(self, booking_id: int, same_time: bool):
        super().__init__("You are already holding this time: pay for it to confirm it." if same_time else
                         "You are already holding a lesson that overlaps this time: pay for it or release it first.")
        self.booking_id = booking_id


def _own_live_hold(student_id: int, resource_id: int, start: datetime, until: datetime,
                   now: datetime) -> tuple[int, bool] | None:
    """The student's live hold on the resource overlapping [start, until), and whether it starts at `start`."""
    row = db.session.execute(select(Booking.id, Booking.start_at).where(
        Booking.student_id == student_id, Booking.resource_id == resource_id, Booking.status == BookingStatus.HELD,
        Booking.hold_expires_at > now, Booking.start_at < until, Booking.occupied_until > start)
        .order_by(Booking.start_at != start).limit(1)).first()
    return (row.id, row.start_at == start) if row is not None else None


def get_booking_for(user: User, booking_id: int, *, as_admin: bool) -> Booking:
    """A booking of the studio in scope that `user` may see: their own, or any when `as_admin`."""
    if not 0 < booking_id < 2**31:  # beyond the id column: no such booking, not a database error
        raise NotFound("No such booking.")
    booking = db.session.scalar(select(Booking).where(Booking.id == booking_id))  # through the tenant scope
    if booking is None or (not as_admin and booking.student_id != user.id):
        raise NotFound("No such booking.")
    return booking
