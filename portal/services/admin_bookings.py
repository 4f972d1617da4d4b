"""The studio's bookings as an admin sees them: a filtered list (page, JSON, CSV), one booking's page with its
whole history, and the admin's actions on it.

Filters are studio-local dates, a resource, a status and a piece of the student's name or email; the list is in a
stable order (latest start first, then newest id), so pages never overlap or skip a row. The actions call
`lesson_changes` (the single owner of studio-initiated lesson changes); each form carries the `version` of the
booking it was rendered from, so a form older than the booking's state is refused (409) instead of acting on
something the admin has not seen.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from portal.extensions import db
from portal.formatting import ZERO_DECIMAL, money
from portal.models import (
    Booking,
    BookingStatus,
    Payment,
    Refund,
    Resource,
    Studio,
    User,
)
from portal.parsing import whole_number
from portal.services import lesson_changes, receipts, series, timeline
from portal.services.audit import Actor
from portal.services.errors import Conflict, InvalidInput
from portal.services.timeinput import parse_date

PER_PAGE = 25
MAX_PER_PAGE = 100
STATUSES = [s.value for s in BookingStatus]


# --- filters --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    """What the admin asked for. `raw` keeps what was typed, so a form shows it back even when it was refused."""

    date_from: date | None = None
    date_to: date | None = None
    resource: str = ""
    status: str = ""
    q: str = ""
    page: int = 1
    per_page: int = PER_PAGE
    raw: dict = field(default_factory=dict)

    def args(self, **changes) -> dict:
        """The filters as query arguments (only those set), for links that keep them (pages, the CSV)."""
        values = {"from": self.date_from.isoformat() if self.date_from else "",
                  "to": self.date_to.isoformat() if self.date_to else "",
                  "resource": self.resource, "status": self.status, "q": self.q}
        if self.per_page != PER_PAGE:
            values["per_page"] = str(self.per_page)
        values.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.date_from or self.date_to or self.resource or self.status or self.q)


def parse_filters(args: Mapping[str, str], *, max_per_page: int = MAX_PER_PAGE) -> tuple[Filters, dict[str, str]]:
    """Filters from query arguments (`from`, `to`, `resource`, `status`, `q`, `page`, `per_page`), and the
    refusals by field. A refused field is left out of the filters."""
    raw = {key: (args.get(key) or "").strip() for key in ("from", "to", "resource", "status", "q", "page",
                                                          "per_page")}
    errors: dict[str, str] = {}
    values: dict = {}
    for key, name in (("from", "date_from"), ("to", "date_to")):
        if raw[key]:
            try:
                values[name] = parse_date(raw[key], field=key)
            except InvalidInput as problem:
                errors[key] = problem.message
    if values.get("date_from") and values.get("date_to") and values["date_to"] < values["date_from"]:
        errors["to"] = "The last day comes before the first day."
        values.pop("date_to")
    if raw["resource"]:
        known = db.session.scalar(select(Resource.id).where(Resource.slug == raw["resource"]))
        if known is None:
            errors["resource"] = "No such room, instrument or teacher at this studio."
        else:
            values["resource"] = raw["resource"]
    if raw["status"]:
        if raw["status"] in STATUSES:
            values["status"] = raw["status"]
        else:
            errors["status"] = f"Status is one of: {', '.join(STATUSES)}."
    values["q"] = raw["q"][:200]
    for key, low, high in (("page", 1, 1_000_000), ("per_page", 1, max_per_page)):
        if raw[key]:
            if (number := whole_number(raw[key], low, high)) is not None:
                values[key] = number
            else:
                errors[key] = f"Give a whole number from {low} to {high}."
    return Filters(raw=raw, **values), errors


def first_error(errors: dict[str, str]) -> InvalidInput:
    field_name, message = next(iter(errors.items()))
    return InvalidInput(message, code=f"{field_name}_invalid", field=field_name)


def _local_midnight(studio: Studio, day: date) -> datetime:
    return datetime.combine(day, time.min, studio.tz).astimezone(timezone.utc)


def _filtered(studio: Studio, filters: Filters):
    query = (select(Booking).join(User, User.id == Booking.student_id)
             .join(Resource, Resource.id == Booking.resource_id).where(Booking.studio_id == studio.id))
    if filters.date_from:
        query = query.where(Booking.start_at >= _local_midnight(studio, filters.date_from))
    if filters.date_to:
        query = query.where(Booking.start_at < _local_midnight(studio, filters.date_to + timedelta(days=1)))
    if filters.resource:
        query = query.where(Resource.slug == filters.resource)
    if filters.status:
        query = query.where(Booking.status == BookingStatus(filters.status))
    if filters.q:
        needle = filters.q.lower()
        query = query.where(or_(func.lower(User.name).contains(needle, autoescape=True),
                                func.lower(User.email).contains(needle, autoescape=True)))
    return query


_ORDER = (Booking.start_at.desc(), Booking.id.desc())
_LOAD = (joinedload(Booking.student), joinedload(Booking.resource), joinedload(Booking.package),
         selectinload(Booking.payment).selectinload(Payment.refunds))


@dataclass(frozen=True)
class Row:
    booking: Booking
    summary: receipts.PaymentSummary


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def first_number(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.rows else 0

    @property
    def last_number(self) -> int:
        return self.first_number + len(self.rows) - 1 if self.rows else 0


def search(studio: Studio, filters: Filters, *, now: datetime) -> Page:
    """One page of the studio's bookings matching `filters`."""
    query = _filtered(studio, filters)
    total = db.session.scalar(select(func.count()).select_from(query.with_only_columns(Booking.id).subquery()))
    bookings = db.session.scalars(query.options(*_LOAD).order_by(*_ORDER)
                                  .offset((filters.page - 1) * filters.per_page).limit(filters.per_page)).unique()
    return Page([Row(b, receipts.summarize(b, now)) for b in bookings], total or 0, filters.page, filters.per_page)


def as_json(row: Row, studio: Studio) -> dict:
    b, s = row.booking, row.summary
    return {"id": b.id, "reference": f"#{b.id}", "start": b.start_at.isoformat(), "end": b.end_at.isoformat(),
            "local_start": b.start_at.astimezone(studio.tz).isoformat(), "duration_minutes": b.duration_minutes,
            "status": b.status.value, "package": {"slug": b.package.slug, "name": b.package.name},
            "resource": {"slug": b.resource.slug, "name": b.resource.name},
            "student": {"name": b.student.name, "email": b.student.email},
            "price_minor": b.price_minor, "paid_minor": s.paid_minor, "refunded_minor": s.refunded_minor,
            "currency": b.currency, "payment": s.state}


# --- CSV ------------------------------------------------------------------------------------------------------

CSV_BATCH = 500
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def decimal_amount(minor: int, currency: str) -> str:
    """Minor units as a plain decimal string (`6500` usd → `65.00`), without floats."""
    if (currency or "").lower() in ZERO_DECIMAL:
        return str(minor)
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return f"{sign}{minor // 100}.{minor % 100:02d}"


def csv_safe(value) -> str:
    """A cell a spreadsheet will not run: text starting like a formula is prefixed with a quote (OWASP)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_export(studio: Studio, filters: Filters, *, now: datetime) -> str:
    """Every booking matching `filters` (all pages), one line each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["reference", f"date and time ({studio.timezone})", "start (UTC, ISO 8601)", "duration (min)",
                     "package", "resource", "student name", "email", "status", "price", "paid", "refunded",
                     "currency"])
    query = _filtered(studio, filters).options(*_LOAD).order_by(*_ORDER)
    offset = 0
    while True:
        batch = db.session.scalars(query.offset(offset).limit(CSV_BATCH)).unique().all()
        for b in batch:
            s = receipts.summarize(b, now)
            writer.writerow([csv_safe(v) for v in (
                f"#{b.id}", b.start_at.astimezone(studio.tz).strftime("%Y-%m-%d %H:%M"),
                b.start_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"), b.duration_minutes,
                b.package.name, b.resource.name, b.student.name, b.student.email, b.status.value,
                decimal_amount(b.price_minor, b.currency), decimal_amount(s.paid_minor, b.currency),
                decimal_amount(s.refunded_minor, b.currency), b.currency.upper())])
        if len(batch) < CSV_BATCH:
            return out.getvalue()
        offset += CSV_BATCH


# --- one booking ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class Detail:
    booking: Booking
    summary: receipts.PaymentSummary
    refundable_minor: int
    timeline: list[timeline.Entry]
    actions: dict[str, Action]
    version: str


def version_of(booking: Booking) -> str:
    """A fingerprint of what the admin's actions depend on: it changes with the booking's status, its time and
    place, and the money (payment status and what is still refundable for this lesson)."""
    payment, refundable_minor = series.refundable_share(booking)
    parts = [booking.status.value, booking.reschedule_count, booking.start_at.isoformat(), booking.resource_id,
             payment.status.value if payment else "-", refundable_minor]
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def actions_for(booking: Booking, refundable_minor: int, now: datetime, *,
                paid: bool = False) -> dict[str, Action]:
    confirmed = booking.status == BookingStatus.CONFIRMED
    not_confirmed = f"The lesson is {booking.status.value.replace('_', ' ')}."
    return {
        "cancel": Action(confirmed, "" if confirmed else not_confirmed),
        "refund": Action(refundable_minor > 0, "" if refundable_minor > 0 else
                         "Nothing is left to refund." if paid else
                         "Nothing was paid for this lesson."),
        "move": Action(confirmed and booking.start_at > now,
                       not_confirmed if not confirmed else "" if booking.start_at > now else
                       "The lesson has already started."),
        "no_show": Action(confirmed and booking.start_at <= now,
                          not_confirmed if not confirmed else "" if booking.start_at <= now else
                          "A no-show can be marked once the lesson has started."),
    }


def detail(studio: Studio, booking: Booking, *, now: datetime) -> Detail:
    # A week of a series paid in one Checkout refunds from its own share of that payment.
    payment, refundable_minor = series.refundable_share(booking)
    paid = payment is not None and payment.paid_minor > 0
    return Detail(booking, receipts.summarize(booking, now), refundable_minor, timeline.of(studio, booking),
                  actions_for(booking, refundable_minor, now, paid=paid), version_of(booking))


# --- actions --------------------------------------------------------------------------------------------------

class StaleForm(Conflict):
    code = "stale_form"


def check_version(booking: Booking, version: str) -> None:
    if (version or "") != version_of(booking):
        raise StaleForm("This booking changed after the page was opened, so nothing was done. Here it is as it is "
                        "now: check it and try again if it still makes sense.")


_AMOUNT = re.compile(r"^\d{1,7}(?:\.\d{1,2})?$")


def parse_amount(raw: str | None, currency: str) -> int:
    """An amount an admin typed (`12.50`, `12.5`, `12`) as minor units, without floats."""
    text = (raw or "").strip().lstrip("$£€").strip()
    zero_decimal = currency.lower() in ZERO_DECIMAL
    if not text:
        raise InvalidInput("Type the amount to refund, like 12.50.", code="amount_missing", field="amount")
    if not _AMOUNT.match(text) or (zero_decimal and "." in text):
        raise InvalidInput("Type the amount as a number, like 12.50.", code="amount_invalid", field="amount")
    if zero_decimal:
        return int(text)
    units, _, cents = text.partition(".")
    return int(units) * 100 + int((cents + "00")[:2])


def cancel(*, booking: Booking, version: str, actor: Actor, note: str, reason: str, now: datetime) -> Booking:
    """Cancel the lesson with a full refund; the student is emailed."""
    check_version(booking, version)
    return lesson_changes.cancel_by_studio(booking=booking, actor=actor, note=note, now=now, reason=reason[:200])


def _purpose(booking: Booking, request_key: str) -> str:
    # The refund's purpose key as `lesson_changes.refund_part` records it for this form submission.
    return f"booking:{booking.id}:studio_refund:{request_key[:60]}"


def refund_part(*, booking: Booking, version: str, amount_raw: str | None, request_key: str, actor: Actor, note: str,
                now: datetime) -> int:
    """Refund part of what was paid. The same form submitted again (same `request_key`) refunds once: the second
    submission finds the first one's refund and returns it. Returns the refund's id."""
    request_key = (request_key or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{8,60}", request_key):
        raise InvalidInput("This form is incomplete. Reload the page and try again.", code="request_key_missing")
    payment, refundable_minor = series.refundable_share(booking)
    if payment is not None:
        done = db.session.scalar(select(Refund.id).where(Refund.purpose_key == _purpose(booking, request_key)))
        if done is not None:
            return done
    check_version(booking, version)
    amount = parse_amount(amount_raw, booking.currency)
    if payment is not None and amount > refundable_minor:
        raise InvalidInput(f"At most {money(refundable_minor, booking.currency)} can still be refunded.",
                           code="refund_too_large", field="amount")
    booking_id = booking.id
    try:
        return lesson_changes.refund_part(booking=booking, amount_minor=amount, actor=actor, note=note,
                                          request_key=request_key, now=now)
    except IntegrityError:  # the same submission, a moment earlier, recorded it first
        db.session.rollback()
        done = db.session.scalar(select(Refund.id).where(
            Refund.purpose_key == _purpose(db.session.get(Booking, booking_id), request_key)))
        if done is None:
            raise
        return done


def move(*, studio: Studio, booking: Booking, version: str, actor: Actor, resource_slug: str, start_raw: str | None,
         note: str, now: datetime) -> Booking:
    """Move the lesson to a free time of any open resource (no policy); the student is emailed."""
    check_version(booking, version)
    return lesson_changes.move_by_studio(studio=studio, booking=booking, actor=actor, resource_slug=resource_slug,
                                         start_raw=start_raw, note=note, now=now)


def mark_no_show(*, booking: Booking, version: str, actor: Actor, note: str, now: datetime) -> None:
    """Only once the lesson has started (refused with a 409 before)."""
    check_version(booking, version)
    try:
        lesson_changes.mark_no_show(booking=booking, actor=actor, note=note, now=now)
    except Conflict:
        db.session.rollback()
        raise
