"""The waitlist: a student asks to be told when a time frees up on a resource within a time range; when one does
(a cancellation, a hold that expired) the first student waiting for it gets it held for them for the studio's
offer time (`booking.waitlist_offer_minutes`) and one email. An offer not claimed in time lapses and the time
passes to the next student.

The work is done by a sweep (every worker round, and `flask sweep waitlist`): it lapses expired offers first, then
offers each free time to the oldest waiting entry it fits. An offer is a `held` booking of the student's, so the
database's no-overlap guarantee decides between an offer and anybody booking the same time at once.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, Studio, User, WaitlistEntry, WaitlistStatus
from portal.payments import PaymentProvider
from portal.services import audit, availability, bookings, checkout, notifications
from portal.services.errors import InvalidInput, NotFound
from portal.services.states import booking as booking_states
from portal.services.states import waitlist as waitlist_states
from portal.services.states.machine import IllegalTransition
from portal.services.timeinput import parse_instant

log = logging.getLogger(__name__)

#: The longest time range one entry may wait for.
MAX_WINDOW = timedelta(days=14)


def offer_key(entry_id: int) -> str:
    return f"waitlist_offer:entry:{entry_id}"


def join(*, studio: Studio, student: User, package_slug: str | None, resource_slug: str | None,
         from_raw: str | None, to_raw: str | None, now: datetime) -> WaitlistEntry:
    """Wait for a time of `package` on `resource` starting within [from, to]."""
    bookings.refuse_if_suspended(studio)
    try:
        offer = availability.find_offer(studio, package_slug or "", resource_slug or "")
    except NotFound as missing:
        raise InvalidInput(missing.message, code=missing.code, field=missing.field) from None
    start, end = parse_instant(from_raw, field="from"), parse_instant(to_raw, field="to")
    if end <= start or end <= now:
        raise InvalidInput("Give a time range that ends after it starts, in the future.", code="window_invalid",
                           field="to")
    if end - start > MAX_WINDOW:
        raise InvalidInput("Wait for a range of at most 14 days.", code="window_too_long", field="to")
    entry = WaitlistEntry(studio_id=studio.id, student_id=student.id, package_id=offer.package.id,
                          resource_id=offer.resource.id, window_start=max(start, now), window_end=end,
                          status=WaitlistStatus.WAITING, created_at=now, updated_at=now)
    db.session.add(entry)
    db.session.flush()
    audit.record(actor=audit.Actor.of(student), action="waitlist_entry.join", target_type="waitlist entry",
                 target_id=entry.id, studio_id=studio.id, now=now,
                 after={"from": entry.window_start.isoformat(), "to": end.isoformat(), "resource": offer.resource.slug})
    db.session.commit()
    return entry


def entries_of(student: User) -> list[WaitlistEntry]:
    return db.session.scalars(select(WaitlistEntry).where(WaitlistEntry.student_id == student.id)
                              .order_by(WaitlistEntry.created_at.desc())).all()


def sweep(*, now: datetime, limit: int = 200) -> dict[str, int]:
    """Lapse expired offers (their held time is released), then offer free times to the oldest waiting entries."""
    lapsed = offered = 0
    with tenancy.all_tenants():
        due = db.session.execute(select(WaitlistEntry.id, WaitlistEntry.offer_booking_id).where(
            WaitlistEntry.status == WaitlistStatus.OFFERED, WaitlistEntry.offer_expires_at <= now)
            .order_by(WaitlistEntry.offer_expires_at).limit(limit)).all()
        waiting = db.session.execute(select(WaitlistEntry.id, WaitlistEntry.studio_id).where(
            WaitlistEntry.status == WaitlistStatus.WAITING, WaitlistEntry.window_end > now)
            .order_by(WaitlistEntry.created_at, WaitlistEntry.id).limit(limit)).all()
        db.session.rollback()
    for entry_id, booking_id in due:
        try:
            waitlist_states.lapse(entry_id, now=now)
            if booking_id is not None:
                status = db.session.scalar(select(Booking.status).where(Booking.id == booking_id))
                if status == BookingStatus.HELD:
                    booking_states.release(booking_id, now=now, actor=audit.Actor.job("waitlist"),
                                           note="The waitlist offer expired unclaimed.")
            db.session.commit()
            lapsed += 1
        except IllegalTransition:  # claimed meanwhile, or a payment is under way for it
            db.session.rollback()
    for entry_id, studio_id in waiting:
        with tenancy.scoped(studio_id):
            if _offer_one(entry_id, now):
                offered += 1
    return {"lapsed": lapsed, "offered": offered}


def _offer_one(entry_id: int, now: datetime) -> bool:
    """Hold the first free time in the entry's window for its student; False when there is none (or it went)."""
    entry = db.session.get(WaitlistEntry, entry_id)
    studio = db.session.get(Studio, entry.studio_id)
    offer = availability.Offer(entry.package, entry.resource)
    tz = studio.tz
    first_day, last_day = entry.window_start.astimezone(tz).date(), entry.window_end.astimezone(tz).date()
    duration = timedelta(minutes=offer.package.duration_minutes)
    found = availability.free_slots(studio, offer, first_day, last_day, now)
    free = [s for day in sorted(found) for s in found[day]
            if entry.window_start <= s and s + duration <= entry.window_end]
    if not free:
        db.session.rollback()
        return False
    student = db.session.get(User, entry.student_id)
    booking = bookings.new_hold(studio=studio, student=student, offer=offer, start=free[0], now=now)
    expires = now + timedelta(minutes=studio.waitlist_offer_minutes)
    booking.hold_expires_at = expires
    db.session.commit()
    try:
        db.session.add(booking)
        db.session.flush()
        waitlist_states.offer(entry_id, booking_id=booking.id, expires_at=expires, now=now)
        db.session.commit()
    except (IntegrityError, IllegalTransition):  # the time was taken meanwhile, or the entry changed
        db.session.rollback()
        return False
    notifications.enqueue("waitlist_offer", booking.id, key=offer_key(entry_id))
    return True


def claim(*, entry_id: int, student: User, provider: PaymentProvider, success_url: str, cancel_url: str,
          now: datetime):
    """The student takes the offer: it is theirs, and Checkout opens for it (its hold stretched to Checkout's
    minimum when less is left). Refused with 409 once the offer expired."""
    entry = db.session.get(WaitlistEntry, entry_id) if 0 < entry_id < 2**31 else None
    if entry is None or entry.student_id != student.id:
        raise NotFound("No such waitlist entry.")
    booking_id = entry.offer_booking_id
    waitlist_states.claim(entry_id, now=now, actor=audit.Actor.of(student))
    booking = db.session.get(Booking, booking_id)
    longest = checkout.hold_expiry(now, booking.studio.hold_minutes)
    if booking.hold_expires_at < longest:
        booking.hold_expires_at = longest  # Stripe keeps a Checkout Session open at least 30 minutes
    db.session.commit()
    return checkout.start_checkout(booking=booking, student=student, provider=provider, success_url=success_url,
                                   cancel_url=cancel_url, now=now)


def leave(*, entry_id: int, student: User, now: datetime) -> None:
    entry = db.session.get(WaitlistEntry, entry_id) if 0 < entry_id < 2**31 else None
    if entry is None or entry.student_id != student.id:
        raise NotFound("No such waitlist entry.")
    booking_id, status = entry.offer_booking_id, entry.status
    waitlist_states.cancel(entry_id, now=now, actor=audit.Actor.of(student))
    if status == WaitlistStatus.OFFERED and booking_id is not None:
        booking_states.release(booking_id, now=now, actor=audit.Actor.of(student), note="Waitlist offer declined.")
    db.session.commit()
