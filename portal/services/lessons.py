"""A student's lessons at one studio, with what the policy allows for each right now."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from portal.extensions import db
from portal.models import Booking, BookingSeries, BookingStatus, MakeupCredit, User
from portal.services.policy import CancelTerms, Decision, cancel_terms, reschedule_decision
from portal.services.receipts import PaymentSummary, summarize

SHOWN = (BookingStatus.CONFIRMED, BookingStatus.HELD, BookingStatus.CANCELLED)


@dataclass(frozen=True)
class Lesson:
    booking: Booking
    payment: PaymentSummary
    reschedule: Decision
    cancel: CancelTerms


def lessons_of(student: User, now: datetime) -> tuple[list[Lesson], list[Lesson]]:
    """(upcoming, past) lessons of `student` in the studio in scope; upcoming soonest first, past latest first."""
    rows = db.session.scalars(
        select(Booking).options(joinedload(Booking.package), joinedload(Booking.resource))
        .where(Booking.student_id == student.id, Booking.status.in_(SHOWN))
        .order_by(Booking.start_at)).unique().all()
    upcoming, past = [], []
    for booking in rows:
        if booking.status == BookingStatus.HELD and not booking.is_live(now):
            continue
        summary = summarize(booking, now)
        lesson = Lesson(booking, summary, reschedule_decision(booking, now),
                        cancel_terms(booking, now, paid_minor=summary.paid_minor))
        (upcoming if booking.end_at > now and booking.status != BookingStatus.CANCELLED else past).append(lesson)
    past.reverse()
    return upcoming, past


def open_makeup_credits(student: User) -> list[MakeupCredit]:
    return db.session.scalars(select(MakeupCredit).where(MakeupCredit.student_id == student.id)).all()


def series_of(upcoming: list[Lesson]) -> list[tuple[BookingSeries, list[Lesson]]]:
    """The weekly series among the upcoming lessons, each with its upcoming weeks (first week first)."""
    grouped: dict[int, list[Lesson]] = {}
    for lesson in upcoming:
        if lesson.booking.series_id is not None:
            grouped.setdefault(lesson.booking.series_id, []).append(lesson)
    return [(found[0].booking.series, found) for found in grouped.values()]
