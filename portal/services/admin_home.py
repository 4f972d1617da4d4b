"""The admin home: today's and this week's lessons, how full each resource is this week, and what needs the admin.

Days and weeks are the studio's (local midnight to midnight; a week runs Monday to Sunday). Utilisation is
confirmed lesson minutes starting this week over the resource's capacity (`capacity_minutes` a day × 7 days).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import joinedload

from portal.extensions import db
from portal.formatting import money
from portal.models import (
    Blackout,
    Booking,
    BookingStatus,
    PackPurchase,
    Payment,
    Refund,
    RefundStatus,
    Resource,
    Studio,
)
from portal.services import utilisation_insights

#: Unpaid holds ending within this long are worth a look (the student may need a nudge, or the slot frees soon).
HOLD_HORIZON = timedelta(minutes=15)
#: A refund still pending after this long has probably stalled.
REFUND_STALL = timedelta(hours=1)
DAYS_IN_WEEK = 7
#: The admin home's utilisation findings look back this far (eight weeks: enough for a baseline and a shift).
INSIGHT_DAYS = 56


@dataclass(frozen=True)
class Utilisation:
    resource: Resource
    booked_minutes: int
    capacity_minutes: int

    @property
    def percent(self) -> str:
        """`12.5%` (one decimal, rounded half up, no floats), or `–` without capacity."""
        if not self.capacity_minutes:
            return "–"
        tenths = (self.booked_minutes * 1000 * 2 + self.capacity_minutes) // (self.capacity_minutes * 2)
        return f"{tenths // 10}.{tenths % 10}%"

    @property
    def bar(self) -> int:
        """The bar's width in steps of 5% (0–20), for a CSS class: no inline style is allowed."""
        if not self.capacity_minutes:
            return 0
        return min(20, self.booked_minutes * 20 // self.capacity_minutes)


@dataclass(frozen=True)
class Attention:
    kind: str          # hold_expiring, refund_failed, refund_stalled, blackout
    booking: Booking | None  # None for a lesson pack's refund: `purchase` says which
    at: datetime       # when it expires, failed, was recorded, or the blackout starts
    detail: str
    purchase: PackPurchase | None = None


@dataclass(frozen=True)
class Home:
    today: date
    week_start: date
    week_end: date     # the Sunday
    today_lessons: list[Booking]
    week: list[tuple[date, list[Booking]]]
    utilisation: list[Utilisation]
    attention: list[Attention]
    insights: list[dict]   # per resource with something to say: tier, action, findings (utilisation_insights)

    @property
    def week_count(self) -> int:
        return sum(len(lessons) for _, lessons in self.week)


def _midnight(studio: Studio, day: date) -> datetime:
    return datetime.combine(day, time.min, studio.tz).astimezone(timezone.utc)


def _lessons(studio: Studio, start: datetime, end: datetime, now: datetime) -> list[Booking]:
    """Lessons starting in [start, end): confirmed, no-shows, cancelled ones, and holds still live."""
    shown = or_(Booking.status.in_((BookingStatus.CONFIRMED, BookingStatus.NO_SHOW, BookingStatus.CANCELLED)),
                and_(Booking.status == BookingStatus.HELD, Booking.hold_expires_at > now))
    return db.session.scalars(
        select(Booking).options(joinedload(Booking.student), joinedload(Booking.resource),
                                joinedload(Booking.package))
        .where(Booking.studio_id == studio.id, Booking.start_at >= start, Booking.start_at < end, shown)
        .order_by(Booking.start_at, Booking.id)).all()


def utilisation(studio: Studio, week_start: date) -> list[Utilisation]:
    start, end = _midnight(studio, week_start), _midnight(studio, week_start + timedelta(days=DAYS_IN_WEEK))
    rows = db.session.execute(
        select(Booking.resource_id, Booking.start_at, Booking.end_at)
        .where(Booking.studio_id == studio.id, Booking.status == BookingStatus.CONFIRMED,
               Booking.start_at >= start, Booking.start_at < end)).all()
    minutes: dict[int, int] = {}
    for resource_id, lesson_start, lesson_end in rows:
        minutes[resource_id] = minutes.get(resource_id, 0) + int((lesson_end - lesson_start).total_seconds() // 60)
    resources = db.session.scalars(select(Resource).where(or_(Resource.active.is_(True),
                                                              Resource.id.in_(list(minutes) or [0])))
                                   .order_by(Resource.name)).all()
    return [Utilisation(r, minutes.get(r.id, 0), r.capacity_minutes * DAYS_IN_WEEK if r.active else 0)
            for r in resources]


def attention(studio: Studio, now: datetime) -> list[Attention]:
    found: list[Attention] = []
    load = (joinedload(Booking.student), joinedload(Booking.resource), joinedload(Booking.package))
    for booking in db.session.scalars(select(Booking).options(*load).where(
            Booking.studio_id == studio.id, Booking.status == BookingStatus.HELD,
            Booking.hold_expires_at > now, Booking.hold_expires_at <= now + HOLD_HORIZON)
            .order_by(Booking.hold_expires_at)):
        found.append(Attention("hold_expiring", booking, booking.hold_expires_at,
                               "Unpaid: the hold ends and the time is freed if the student does not pay."))
    troubled = or_(Refund.status == RefundStatus.FAILED,
                   and_(Refund.status == RefundStatus.PENDING, Refund.created_at <= now - REFUND_STALL))
    refunds = db.session.execute(
        select(Refund, Booking).join(Payment, Payment.id == Refund.payment_id)
        .join(Booking, Booking.id == Payment.booking_id).options(*load)
        .where(Refund.studio_id == studio.id, troubled)
        .order_by(Refund.created_at, Refund.id)).all()
    pack_refunds = db.session.execute(
        select(Refund, PackPurchase).join(PackPurchase, PackPurchase.id == Refund.pack_purchase_id)
        .options(joinedload(PackPurchase.student), joinedload(PackPurchase.pack))
        .where(Refund.studio_id == studio.id, troubled)
        .order_by(Refund.created_at, Refund.id)).all()
    for refund, booking, purchase in [(r, b, None) for r, b in refunds] + [(r, None, p) for r, p in pack_refunds]:
        amount = money(refund.amount_minor, refund.currency)
        if refund.status == RefundStatus.FAILED:
            found.append(Attention("refund_failed", booking, refund.updated_at,
                                   f"A refund of {amount} failed: {refund.last_error or 'no reason given'}.",
                                   purchase))
        else:
            found.append(Attention("refund_stalled", booking, refund.created_at,
                                   f"A refund of {amount} has been pending since it was recorded "
                                   f"({refund.attempts} attempt{'s' if refund.attempts != 1 else ''}).", purchase))
    overlaps = and_(Blackout.studio_id == studio.id,
                    or_(Blackout.resource_id.is_(None), Blackout.resource_id == Booking.resource_id),
                    Blackout.starts_at < Booking.end_at, Blackout.ends_at > Booking.start_at)
    reason = (select(Blackout.reason).where(overlaps).correlate(Booking).order_by(Blackout.starts_at)
              .limit(1).scalar_subquery())
    hits = db.session.execute(
        select(Booking, reason).options(*load)
        .where(Booking.studio_id == studio.id, Booking.status == BookingStatus.CONFIRMED, Booking.end_at > now,
               select(Blackout.id).where(overlaps).correlate(Booking).exists())
        .order_by(Booking.start_at, Booking.id)).all()
    for booking, why in hits:
        found.append(Attention("blackout", booking, booking.start_at,
                               "A confirmed lesson falls in a blackout" + (f" ({why})." if why else ".")
                               + " Move it or cancel it with a refund."))
    return found


def home(studio: Studio, now: datetime) -> Home:
    today = now.astimezone(studio.tz).date()
    week_start = today - timedelta(days=today.weekday())
    week_end = week_start + timedelta(days=DAYS_IN_WEEK - 1)
    lessons = _lessons(studio, _midnight(studio, week_start), _midnight(studio, week_end + timedelta(days=1)), now)
    by_day: dict[date, list[Booking]] = {week_start + timedelta(days=i): [] for i in range(DAYS_IN_WEEK)}
    for lesson in lessons:
        by_day[lesson.start_at.astimezone(studio.tz).date()].append(lesson)
    return Home(today, week_start, week_end, by_day[today], sorted(by_day.items()), utilisation(studio, week_start),
                attention(studio, now), insights(studio, today))


def insights(studio: Studio, today: date) -> list[dict]:
    """The utilisation findings of the last `INSIGHT_DAYS` days, for resources with something to say."""
    found = [utilisation_insights.severity(history) for history in
             utilisation_insights.histories(studio, today - timedelta(days=1), INSIGHT_DAYS)]
    return [item for item in found if item["tier"] != "none" or item["action"] != utilisation_insights.NO_ACTION]
