"""What a studio's admins see and do about weekly lessons and credits: the series booked, the lesson packs on sale
and sold, each student's balances, and credits granted, sold at the desk or taken back (each with a note, audited)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from portal.extensions import db
from portal.models import (
    Booking,
    BookingSeries,
    BookingStatus,
    CreditBalance,
    CreditEntry,
    CreditKind,
    LessonPack,
    Membership,
    Package,
    Role,
    Studio,
    User,
    WaitlistEntry,
    WaitlistStatus,
)
from portal.services import audit, catalogue
from portal.services.catalogue import InvalidFields
from portal.services.errors import InvalidInput, NotFound
from portal.services.states import credit as credit_states


@dataclass(frozen=True)
class StudentBalance:
    student: User
    minutes: int
    balance: int


@dataclass(frozen=True)
class SeriesRow:
    series: BookingSeries
    confirmed: int
    held: int
    cancelled: int
    first_start: datetime | None


def students(studio: Studio) -> list[User]:
    return db.session.scalars(select(User).join(Membership, Membership.user_id == User.id).where(
        Membership.studio_id == studio.id, Membership.role == Role.STUDENT).order_by(User.email)).all()


def balances() -> list[StudentBalance]:
    rows = db.session.execute(select(User, CreditBalance.minutes, CreditBalance.balance)
                              .join(CreditBalance, CreditBalance.student_id == User.id)
                              .order_by(User.email, CreditBalance.minutes)).all()
    return [StudentBalance(user, minutes, balance) for user, minutes, balance in rows]


def packs() -> list[tuple[LessonPack, int]]:
    """Every pack with how many were sold."""
    sold = (select(CreditEntry.pack_id, func.count(CreditEntry.id).label("sold"))
            .where(CreditEntry.kind == CreditKind.PURCHASE).group_by(CreditEntry.pack_id).subquery())
    rows = db.session.execute(select(LessonPack, func.coalesce(sold.c.sold, 0))
                              .outerjoin(sold, sold.c.pack_id == LessonPack.id).order_by(LessonPack.name)).all()
    return [(pack, int(count)) for pack, count in rows]


def series_list(limit: int = 100) -> list[SeriesRow]:
    counts = (select(Booking.series_id, Booking.status, func.count(Booking.id), func.min(Booking.start_at))
              .where(Booking.series_id.is_not(None)).group_by(Booking.series_id, Booking.status))
    by_series: dict[int, dict] = {}
    for series_id, status, count, first in db.session.execute(counts).all():
        found = by_series.setdefault(series_id, {"first": first})
        found[status] = count
        found["first"] = min(found["first"], first)
    rows = db.session.scalars(select(BookingSeries).order_by(BookingSeries.created_at.desc()).limit(limit)).all()
    return [SeriesRow(s, by_series.get(s.id, {}).get(BookingStatus.CONFIRMED, 0),
                      by_series.get(s.id, {}).get(BookingStatus.HELD, 0),
                      by_series.get(s.id, {}).get(BookingStatus.CANCELLED, 0), by_series.get(s.id, {}).get("first"))
            for s in rows]


def waitlist(now: datetime, limit: int = 200) -> list[WaitlistEntry]:
    """Who waits for what: entries still waiting for a time in their window and offers out (with their expiry),
    offers first (they lapse soonest), then in queue order."""
    return db.session.scalars(
        select(WaitlistEntry).options(joinedload(WaitlistEntry.student), joinedload(WaitlistEntry.package),
                                      joinedload(WaitlistEntry.resource))
        .where((WaitlistEntry.status == WaitlistStatus.OFFERED)
               | ((WaitlistEntry.status == WaitlistStatus.WAITING) & (WaitlistEntry.window_end > now)))
        .order_by((WaitlistEntry.status == WaitlistStatus.OFFERED).desc(), WaitlistEntry.created_at,
                  WaitlistEntry.id).limit(limit)).all()


def lesson_lengths() -> list[int]:
    return sorted(set(db.session.scalars(select(Package.duration_minutes).where(Package.active.is_(True))).all()))


def create_pack(studio: Studio, typed: dict[str, str], *, actor: audit.Actor, now: datetime) -> LessonPack:
    """A pack on sale: a name, a number of lessons of one length, how long they stay valid, and a price."""
    errors: dict[str, str] = {}
    name = catalogue._name(typed.get("name"), errors)
    slug = catalogue._slug(typed.get("slug"), name, errors)
    count = catalogue._whole_number(typed.get("lesson_count"), 1, 200, what="The number of lessons", errors=errors,
                                    key="lesson_count")
    minutes = catalogue._whole_number(typed.get("lesson_minutes"), 1, 480, what="The lesson length",
                                      errors=errors, key="lesson_minutes")
    days = catalogue._whole_number(typed.get("valid_days"), 1, 1830, what="The validity in days", errors=errors,
                                   key="valid_days")
    try:
        price = catalogue.parse_price(typed.get("price"), studio.currency)
    except InvalidInput as problem:
        errors["price"], price = problem.message, 0
    if errors:
        raise InvalidFields(errors)
    pack = LessonPack(studio_id=studio.id, slug=slug, name=name, lesson_count=count, lesson_minutes=minutes,
                      valid_days=days, price_minor=price, currency=studio.currency, created_at=now)
    db.session.add(pack)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise InvalidFields({"slug": "Another pack already uses this slug."}) from None
    audit.record(actor=actor, action="lesson_pack.create", target_type="lesson_pack", target_id=pack.id,
                 studio_id=studio.id, now=now, after={"slug": slug, "lesson_count": count, "lesson_minutes": minutes,
                                                      "valid_days": days, "price_minor": price})
    db.session.commit()
    return pack


def sell_pack(studio: Studio, *, pack_id: int, student_id: int, note: str, actor: audit.Actor,
              now: datetime) -> CreditEntry:
    """A pack paid at the desk: its credits, valid from now for the pack's validity."""
    pack = db.session.get(LessonPack, pack_id)
    if pack is None or pack.studio_id != studio.id or not pack.active:
        raise NotFound("No such lesson pack.")
    if db.session.get(User, student_id) is None:
        raise NotFound("No such student.")
    entry = credit_states.gain(studio_id=studio.id, student_id=student_id, minutes=pack.lesson_minutes,
                               amount=pack.lesson_count, kind=CreditKind.PURCHASE, now=now, actor=actor,
                               note=note or f"{pack.name} sold", pack_id=pack.id,
                               expires_at=now + timedelta(days=pack.valid_days))
    db.session.commit()
    return entry
