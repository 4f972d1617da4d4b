"""Weekly lessons: plan a series, hold all its weeks at once, or book them with credits.

Every week of a series starts at the same studio-local wall-clock time (16:00 stays 16:00 across DST changes):
week k is the first week's local date plus 7·k days at the first week's local time, turned into an instant in the
studio's timezone. A week that cannot be booked says why: `closed` (outside opening hours, a time the clock skips,
or too soon), `blackout`, or `booked` (another lesson or hold).

Holding writes the series and every chosen week in one transaction under the database's no-overlap guarantee.
Each week is inserted and flushed in turn, so when the database refuses one the transaction is rolled back whole
(nothing is held) and the refusal names that week.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError

from portal import formatting, metrics
from portal.extensions import db
from portal.models import (
    AvailabilityRule,
    Blackout,
    Booking,
    BookingSeries,
    BookingStatus,
    CreditKind,
    MakeupCredit,
    Payment,
    Refund,
    RefundStatus,
    Studio,
    User,
)
from portal.payments import PaymentProvider, PaymentProviderError
from portal.services import audit, availability, bookings, notifications, refunds, slots
from portal.services.checkout import CheckoutUnavailable
from portal.services.credits import give_back as credits_give_back
from portal.services.credits import spent_on as credits_spent_on
from portal.services.errors import Conflict, DomainError, InvalidInput, NotFound, SlotUnavailable
from portal.services.policy import CancelTerms, cancel_terms
from portal.services.states import booking as booking_states
from portal.services.states import credit as credit_states
from portal.services.timeinput import parse_instant

#: Days either side of a week's planned date where "another time that week" may fall.
WEEK_SLACK = 3


@dataclass(frozen=True)
class Occurrence:
    week: int              # 0-based
    start: datetime        # aware, studio-local
    free: bool
    reason: str | None     # None, "closed", "blackout" or "booked"

    def as_json(self) -> dict:
        return {"week": self.week + 1, "start": self.start.isoformat(), "free": self.free, "reason": self.reason}


class SeriesWeekTaken(SlotUnavailable):
    code = "series_week_taken"

    def __init__(self, message: str, week: int):
        super().__init__(message)
        self.week = week


def parse_weeks(raw: str | None, studio: Studio) -> int:
    """How many weeks: a whole number from 1 to the studio's longest series."""
    cap = studio.series_max_weeks
    try:
        weeks = int(str(raw or "").strip())
    except ValueError:
        weeks = 0
    if not 1 <= weeks <= cap:
        raise InvalidInput(f"Choose between 1 and {cap} weeks.", code="weeks_out_of_range", field="weeks")
    return weeks


def _offer(studio: Studio, package_slug: str | None, resource_slug: str | None) -> availability.Offer:
    try:
        return availability.find_offer(studio, package_slug or "", resource_slug or "")
    except NotFound as missing:
        raise InvalidInput(missing.message, code=missing.code, field=missing.field) from None


def week_starts(studio: Studio, first: datetime, weeks: int) -> list[datetime]:
    """The local start of each week: the same wall-clock time, 7 local days apart."""
    local = first.astimezone(studio.tz)
    wall = time(local.hour, local.minute)
    return [datetime.combine(local.date() + timedelta(weeks=k), wall, studio.tz) for k in range(weeks)]


def _spans(studio: Studio, offer: availability.Offer, starts: list[datetime], now: datetime):
    """Opening rules, blackouts and live bookings that matter to these starts, read with three queries: the
    bookings only around each start (through the resource/span index), not the whole months in between."""
    resource = offer.resource
    rules = [slots.WeeklyRule(r.weekday, r.start_time, r.end_time) for r in db.session.scalars(
        select(AvailabilityRule).where(AvailabilityRule.resource_id == resource.id))]
    occupied = timedelta(minutes=offer.package.duration_minutes) + studio.buffer
    lo, hi = min(starts), max(starts) + occupied
    blackouts = [slots.Interval(b.starts_at, b.ends_at) for b in db.session.scalars(select(Blackout).where(
        or_(Blackout.resource_id.is_(None), Blackout.resource_id == resource.id),
        Blackout.starts_at < hi, Blackout.ends_at > lo))]
    live = or_(Booking.status == BookingStatus.CONFIRMED,
               and_(Booking.status == BookingStatus.HELD, Booking.hold_expires_at > now))
    near = or_(*(and_(Booking.start_at < start + occupied, Booking.occupied_until > start) for start in starts))
    busy = [slots.Interval(a, b) for a, b in db.session.execute(select(Booking.start_at, Booking.occupied_until)
                                                                .where(Booking.resource_id == resource.id, live,
                                                                       near))]
    return rules, blackouts, busy


def check(studio: Studio, offer: availability.Offer, starts: list[datetime], now: datetime,
          *, ignore_bookings: bool = False) -> list[tuple[bool, str | None]]:
    """(free, reason) for each start, judged as the slot picker judges a start: inside opening hours, not too
    soon, the lesson clear of blackouts, the lesson plus buffer clear of live bookings."""
    if not starts:
        return []
    rules, blackouts, busy = _spans(studio, offer, starts, now)
    duration = timedelta(minutes=offer.package.duration_minutes)
    settings = dict(tz=studio.tz, rules=rules, blackouts=[], busy=[], duration=duration, buffer=studio.buffer,
                    notice=timedelta(minutes=studio.min_notice_minutes),
                    step=timedelta(minutes=studio.slot_interval_minutes), now=now)
    open_on: dict = {}
    verdicts = []
    for start in starts:
        instant = start.astimezone(timezone.utc)
        day = start.astimezone(studio.tz).date()
        if day not in open_on:
            open_on[day] = {s.astimezone(timezone.utc) for s in slots.free_slots(day=day, **settings)}
        lesson_end = instant + duration
        if not studio.active or instant not in open_on[day]:
            verdicts.append((False, "closed"))
        elif any(b.start < lesson_end and b.end > instant for b in blackouts):
            verdicts.append((False, "blackout"))
        elif not ignore_bookings and any(b.start < lesson_end + studio.buffer and b.end > instant for b in busy):
            verdicts.append((False, "booked"))
        else:
            verdicts.append((True, None))
    return verdicts


def plan(studio: Studio, offer: availability.Offer, first: datetime, weeks: int, now: datetime) -> list[Occurrence]:
    """Every week of the series with whether it is free now, and why not."""
    starts = week_starts(studio, first, weeks)
    return [Occurrence(k, start, free, reason)
            for k, (start, (free, reason)) in enumerate(zip(starts, check(studio, offer, starts, now), strict=True))]


def plan_request(studio: Studio, *, package_slug: str | None, resource_slug: str | None, start_raw: str | None,
                 weeks_raw: str | None, now: datetime) -> tuple[availability.Offer, list[Occurrence]]:
    """The series a form or the API asked about (every input checked: 422 with the field otherwise)."""
    offer = _offer(studio, package_slug, resource_slug)
    start = parse_instant(start_raw, field="start")
    weeks = parse_weeks(weeks_raw, studio)
    return offer, plan(studio, offer, start, weeks, now)


def _chosen(studio: Studio, planned: list[Occurrence], chosen_raw: list[str] | None) -> list[tuple[int, datetime]]:
    """The weeks the student kept, each at its planned time or at another time of the same week."""
    if chosen_raw is None:
        return [(o.week, o.start) for o in planned if o.free]
    picked: dict[int, datetime] = {}
    for raw in chosen_raw:
        if not raw.strip():
            continue
        start = parse_instant(raw, field="occurrence").astimezone(studio.tz)
        week = next((o.week for o in planned
                     if abs((start.date() - o.start.date()).days) <= WEEK_SLACK), None)
        if week is None:
            raise InvalidInput(f"{formatting.when(start, studio.tz, studio.locale)} is not in any week of this series.",
                               code="occurrence_outside_series", field="occurrence")
        if week in picked:
            raise InvalidInput(f"Week {week + 1} was chosen twice. Keep one time per week.",
                               code="occurrence_duplicate_week", field="occurrence")
        picked[week] = start
    if not picked:
        raise InvalidInput("Keep at least one week.", code="occurrences_empty", field="occurrence")
    return sorted(picked.items())


def hold(*, studio: Studio, student: User, package_slug: str | None, resource_slug: str | None,
         start_raw: str | None, weeks_raw: str | None, chosen_raw: list[str] | None, now: datetime,
         pay_with: str = "checkout") -> BookingSeries:
    """Hold every chosen week of a series in one transaction, or nothing.

    `chosen_raw` lists the starts the student kept (a skipped week is left out; a week may be moved to another
    time of the same week); None keeps every week that is free. With `pay_with="credits"` one credit of the
    lesson's length per week is spent and every week is confirmed in the same transaction.

    Raises `InvalidInput` (422: bad input, a week that is not bookable at all), `SeriesWeekTaken` (409: a week
    was booked by someone else; nothing is held) or `NoCredit` (409: not enough credits; nothing is held).
    """
    bookings.refuse_if_suspended(studio)
    if pay_with not in ("checkout", "credits"):
        raise InvalidInput("Choose how to pay.", code="payment_invalid", field="payment")
    offer, planned = plan_request(studio, package_slug=package_slug, resource_slug=resource_slug,
                                  start_raw=start_raw, weeks_raw=weeks_raw, now=now)
    chosen = _chosen(studio, planned, chosen_raw)
    if not chosen:
        raise InvalidInput("No week of this series is free. Try another time or room.", code="series_not_free",
                           field="start")
    for (week, start), (free, reason) in zip(chosen, check(studio, offer, [s for _, s in chosen], now,
                                                           ignore_bookings=True), strict=True):
        if not free:
            raise InvalidInput(f"Week {week + 1} ({formatting.when(start, studio.tz, studio.locale)}) is not open for "
                               f"booking ({reason}). Skip it or pick another time that week.",
                               code="occurrence_not_bookable", field="occurrence")
    open_series = db.session.scalar(select(func.count(Booking.id)).where(
        Booking.student_id == student.id, Booking.status == BookingStatus.HELD, Booking.hold_expires_at > now,
        Booking.series_id.is_not(None)))
    if open_series:
        raise InvalidInput("You already have weekly lessons waiting for payment. Pay for or release them first.",
                           code="too_many_holds")

    local = planned[0].start
    series = BookingSeries(studio_id=studio.id, student_id=student.id, package_id=offer.package.id,
                           resource_id=offer.resource.id, local_time=time(local.hour, local.minute),
                           weeks=len(planned), paid_with=pay_with, created_at=now)
    rows = [(week, bookings.new_hold(studio=studio, student=student, offer=offer, start=start.astimezone(timezone.utc),
                                     now=now)) for week, start in chosen]
    policy, minutes, who = studio.policy_snapshot(), offer.package.duration_minutes, audit.Actor.of(student)
    db.session.commit()  # the transaction below starts with a write (see bookings.hold_slot)
    try:
        db.session.add(series)
        db.session.flush()
        for week, booking in rows:
            booking.series_id = series.id
            booking_states.release_overlapping_expired(resource_id=booking.resource_id, start=booking.start_at,
                                                       until=booking.occupied_until, now=now)
            _insert_week(series, week, booking, studio)
        audit.record(actor=who, action="series.hold", target_type="series", target_id=series.id,
                     studio_id=studio.id, now=now, after={"weeks": [w + 1 for w, _ in rows], "paid_with": pay_with})
        if pay_with == "credits":
            for _, booking in rows:
                booking.price_minor = 0
                credit_states.take(studio_id=studio.id, student_id=student.id, minutes=minutes, count=1,
                                   kind=CreditKind.BOOKING, now=now, actor=who, booking_id=booking.id,
                                   note="Weekly lesson booked with a credit.")
                booking_states.confirm(booking.id, now=now, policy=policy)
        db.session.commit()
    except OperationalError as error:
        db.session.rollback()
        if "locked" in str(error.orig):
            raise SlotUnavailable("These times are being booked right now; nothing was held. Please try again.") \
                from None
        raise
    except Exception:
        db.session.rollback()
        raise
    if pay_with == "credits":
        for _, booking in rows:
            notifications.enqueue("confirmation", booking.id, key=notifications.confirmation_key(booking.id))
    return series


def _insert_week(series: BookingSeries, week: int, booking: Booking, studio: Studio) -> None:
    """Insert one week; a refusal by the no-overlap guarantee names the week (the caller rolls back)."""
    when = formatting.when(booking.start_at, studio.tz, studio.locale)  # read before a refusal ends the transaction
    db.session.add(booking)
    try:
        db.session.flush()
    except IntegrityError as error:
        db.session.rollback()
        if not bookings.is_overlap_violation(error):
            raise
        raise SeriesWeekTaken(f"Sorry, week {week + 1} ({when}) has just been taken, so none of the weeks were "
                              "held. Look at the weeks again and skip or move that one.", week=week + 1) from None


def get_series_for(user: User, series_id: int) -> BookingSeries:
    if not 0 < series_id < 2**31:
        raise NotFound("No such series.")
    series = db.session.scalar(select(BookingSeries).where(BookingSeries.id == series_id))
    if series is None or series.student_id != user.id:
        raise NotFound("No such series.")
    return series



# --- paying and cancelling ------------------------------------------------------------------------------------

def weeks_of(series_id: int) -> list[Booking]:
    return db.session.scalars(select(Booking).where(Booking.series_id == series_id)
                              .order_by(Booking.start_at)).all()


def series_payment(series_id: int) -> Payment | None:
    return db.session.scalar(select(Payment).where(Payment.series_id == series_id))


def payment_share(booking: Booking) -> tuple[Payment | None, int]:
    """The payment that covers a lesson and what of it was paid for this lesson: a week of a series paid in one
    Checkout owns its price's share of the series' payment (which hangs on the first week)."""
    payment = booking.payment
    if payment is None and booking.series_id is not None:
        payment = series_payment(booking.series_id)
    if payment is None:
        return None, 0
    if payment.series_id is not None:
        return payment, booking.price_minor if payment.paid_minor >= booking.price_minor else 0
    return payment, payment.paid_minor


def refundable_share(booking: Booking) -> tuple[Payment | None, int]:
    """The payment covering a lesson and what of it can still be refunded for this lesson: for a week of a series
    paid in one Checkout, its share less the refunds already made for that week (failed ones aside), and never more
    than is left of the whole payment; for a single lesson, whatever is left of its own payment."""
    payment, share = payment_share(booking)
    if payment is None:
        return None, 0
    left = max(0, refunds.refundable(payment))
    if payment.series_id is None:
        return payment, left
    spent = db.session.scalar(select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
        Refund.payment_id == payment.id, Refund.status != RefundStatus.FAILED,
        Refund.purpose_key.startswith(f"booking:{booking.id}:", autoescape=True))) or 0
    return payment, max(0, min(share - spent, left))


def start_checkout(*, series: BookingSeries, student: User, provider: PaymentProvider, success_url: str,
                   cancel_url: str, now: datetime) -> Payment:
    """One Checkout Session for every held week: the lesson's price × the number of weeks, expiring with the
    holds. On a provider error every week is released and `CheckoutUnavailable` raised."""
    weeks = [b for b in weeks_of(series.id) if b.status == BookingStatus.HELD]
    if not weeks:
        raise InvalidInput("Nothing of this series is waiting for payment.", code="series_not_held")
    first = weeks[0]
    studio = first.studio
    series_id, first_id, count, unit = series.id, first.id, len(weeks), first.price_minor
    request = dict(
        amount_minor=unit, quantity=count, currency=first.currency,
        product_name=f"{first.package.name} · {first.resource.name} · every week · {studio.name}",
        reference=f"series-{series_id}",
        metadata={"booking_id": str(first_id), "series_id": str(series_id), "studio": studio.slug},
        customer_email=student.email, success_url=success_url, cancel_url=cancel_url,
        expires_at=first.hold_expires_at, idempotency_key=f"series-{series_id}-checkout",
    )
    db.session.commit()  # no transaction (on SQLite: no write lock) is held while Stripe answers
    try:
        session = provider.create_checkout_session(**request)
    except PaymentProviderError as error:
        metrics.checkout_failures.inc()
        release_holds(series_id, now=now, actor=audit.SYSTEM,
                      note=f"The payment service could not open Checkout: {error}"[:500])
        db.session.commit()
        raise CheckoutUnavailable("We could not reach the payment service, so your weekly times were released. "
                                  "Please try again in a moment.") from None
    payment = Payment(studio_id=first.studio_id, booking_id=first_id, series_id=series_id,
                      checkout_session_id=session.id, checkout_url=session.url or "", amount_minor=unit * count,
                      currency=request["currency"])
    db.session.add(payment)
    db.session.commit()
    metrics.checkout_sessions_created.inc()
    return payment


def release_holds(series_id: int, *, now: datetime, actor: audit.Actor, note: str) -> int:
    """Give up every week of a series still held (in the caller's transaction): releasing one releases them all."""
    first = db.session.scalar(select(Booking.id).where(Booking.series_id == series_id,
                                                       Booking.status == BookingStatus.HELD)
                              .order_by(Booking.start_at).limit(1))
    return len(booking_states.release(first, now=now, actor=actor, note=note)) if first is not None else 0


@dataclass(frozen=True)
class WeekTerms:
    booking: Booking
    terms: CancelTerms
    credit: bool            # booked with a credit (its credit comes back when cancelled in time)


def cancel_rest_terms(series: BookingSeries, now: datetime) -> list[WeekTerms]:
    """What cancelling the rest of the series would mean, week by week: every confirmed week not yet started,
    judged by its own policy snapshot (shown to the student before they confirm)."""
    found = []
    for booking in weeks_of(series.id):
        if booking.status != BookingStatus.CONFIRMED or booking.start_at <= now:
            continue
        _, paid = payment_share(booking)
        found.append(WeekTerms(booking, cancel_terms(booking, now, paid_minor=paid),
                               credits_spent_on(booking.id) is not None))
    return found


def cancel_rest(*, series: BookingSeries, actor: User, now: datetime) -> list[WeekTerms]:
    """Cancel every confirmed week not yet started, each under its own policy, in one transaction: the slots are
    freed, each week's refund is recorded (one refund row per week, so nothing is refunded twice) and credits come
    back per policy. Refunds are sent by a job; each student email is queued."""
    plan_terms = cancel_rest_terms(series, now)
    if not plan_terms:
        raise Conflict("No week of this series is left to cancel.", code="series_nothing_to_cancel")
    who = audit.Actor.of(actor)
    refund_ids = []
    try:
        for week in plan_terms:
            booking, terms = week.booking, week.terms
            booking_states.cancel(booking.id, now=now, actor=who, late=terms.late,
                                  note="Cancelled with the rest of the weekly series.")
            if terms.makeup:
                db.session.add(MakeupCredit(studio_id=booking.studio_id, student_id=booking.student_id,
                                            booking_id=booking.id, minutes=booking.duration_minutes))
            credits_give_back(booking, now=now, actor=who, late=terms.late, makeup=terms.makeup)
            payment, left = refundable_share(booking)  # less what the studio already refunded for this week
            if payment is not None and min(terms.refund_minor, left) > 0:
                refund_ids.append(refunds.record(
                    payment=payment, amount_minor=min(terms.refund_minor, left), now=now, actor=who,
                    reason="requested_by_customer", purpose_key=f"booking:{booking.id}:cancel",
                    note="Refund owed by the cancellation policy (rest of the series).").id)
        audit.record(actor=who, action="series.cancel_rest", target_type="series", target_id=series.id,
                     studio_id=series.studio_id, now=now,
                     after={"weeks": [w.booking.id for w in plan_terms],
                            "refund_minor": sum(w.terms.refund_minor for w in plan_terms)})
    except DomainError:
        db.session.rollback()
        raise
    db.session.commit()
    for refund_id in refund_ids:
        refunds.queue(refund_id)
    for week in plan_terms:
        notifications.enqueue("cancellation", week.booking.id, key=notifications.cancellation_key(week.booking.id))
    return plan_terms
