"""Reads and steps shared by the catalogue and calendar tests (on the `world` of tests/admin/conftest.py)."""
from __future__ import annotations

import email
import email.policy
import re
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import (
    AuditEntry,
    AvailabilityRule,
    Blackout,
    Booking,
    NotificationLog,
    Package,
    Payment,
    Resource,
    Studio,
    User,
)
from portal.payments import get_provider
from portal.services import bookings, checkout
from tests.payments.helpers import deliver, pay


@contextmanager
def within(app, studio_id: int | None = None):
    """An app context seeing every tenant (or one studio); nothing stays pushed afterwards."""
    with app.app_context():
        with tenancy.all_tenants() if studio_id is None else tenancy.scoped(studio_id):
            yield
        db.session.remove()


def local(world_studio, day: date, hh_mm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hh_mm), world_studio.tz)


def days_ahead(world_studio, days: int) -> date:
    return utcnow().astimezone(world_studio.tz).date() + timedelta(days=days)


def make_paid_lesson(app, client, standin, studio_id: int, start: datetime, *, email: str = "student@example.com",
                     resource: str = "piano", package: str = "lesson-60") -> int:
    """A confirmed lesson, paid through Checkout on the Stripe stand-in and confirmed by its webhook."""
    with within(app, studio_id):
        studio = db.session.get(Studio, studio_id)
        student = db.session.scalar(select(User).where(User.email == email))
        now = utcnow()
        hold = bookings.hold_slot(studio=studio, student=student, package_slug=package, resource_slug=resource,
                                  start_raw=start.isoformat(), now=now)
        payment = checkout.start_checkout(booking=hold, student=student, provider=get_provider(), now=now,
                                          success_url="http://portal.test/ok", cancel_url="http://portal.test/x")
        booking_id, session_id = hold.id, payment.checkout_session_id
    pay(standin, session_id)
    deliver(app, client, standin, types=("checkout.session.completed",))
    assert booking(app, booking_id).status == "confirmed"
    return booking_id


def make_hold(app, studio_id: int, start: datetime, *, email: str = "rival@example.com", resource: str = "piano",
              package: str = "lesson-60") -> int:
    """A held, unpaid lesson (no Checkout opened)."""
    with within(app, studio_id):
        studio = db.session.get(Studio, studio_id)
        student = db.session.scalar(select(User).where(User.email == email))
        return bookings.hold_slot(studio=studio, student=student, package_slug=package, resource_slug=resource,
                                  start_raw=start.isoformat(), now=utcnow()).id


def booking(app, booking_id: int) -> SimpleNamespace:
    with within(app):
        row = db.session.get(Booking, booking_id)
        payment = db.session.scalar(select(Payment).where(Payment.booking_id == booking_id))
        return SimpleNamespace(
            status=row.status.value, start_at=row.start_at, cancelled_by=row.cancelled_by,
            cancel_reason=row.cancel_reason, penalty=row.penalty_reason,
            payment_status=payment.status.value if payment else None,
            refunded=payment.amount_refunded_minor if payment else 0,
            refunds=sorted((r.amount_minor, r.status.value) for r in payment.refunds) if payment else [])


def calendar_version(app, studio_id: int) -> int:
    with within(app):
        return db.session.get(Studio, studio_id).calendar_version


def audit_rows(app, action: str) -> list[SimpleNamespace]:
    with within(app):
        rows = db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
        return [SimpleNamespace(actor=r.actor_label, target_id=r.target_id, studio_id=r.studio_id, before=r.before,
                                after=r.after, note=r.note) for r in rows]


def package_row(app, studio_id: int, slug: str) -> SimpleNamespace | None:
    with within(app, studio_id):
        row = db.session.scalar(select(Package).where(Package.slug == slug))
        return None if row is None else SimpleNamespace(
            id=row.id, name=row.name, slug=row.slug, price_minor=row.price_minor, currency=row.currency,
            duration_minutes=row.duration_minutes, active=row.active, description=row.description)


def resource_row(app, studio_id: int, slug: str) -> SimpleNamespace | None:
    with within(app, studio_id):
        row = db.session.scalar(select(Resource).where(Resource.slug == slug))
        return None if row is None else SimpleNamespace(
            id=row.id, name=row.name, slug=row.slug, kind=row.kind.value, capacity_minutes=row.capacity_minutes,
            active=row.active)


def spans(app, studio_id: int, resource: str, weekday: int) -> list[tuple[str, str]]:
    with within(app, studio_id):
        rows = db.session.scalars(select(AvailabilityRule).join(Resource, Resource.id == AvailabilityRule.resource_id)
                                  .where(Resource.slug == resource, AvailabilityRule.weekday == weekday)
                                  .order_by(AvailabilityRule.start_time))
        return [(r.start_time.strftime("%H:%M"), r.end_time.strftime("%H:%M")) for r in rows]


def rule_ids(app, studio_id: int, resource: str, weekday: int) -> list[int]:
    with within(app, studio_id):
        return list(db.session.scalars(
            select(AvailabilityRule.id).join(Resource, Resource.id == AvailabilityRule.resource_id)
            .where(Resource.slug == resource, AvailabilityRule.weekday == weekday)
            .order_by(AvailabilityRule.start_time)))


def blackout_rows(app, studio_id: int) -> list[SimpleNamespace]:
    with within(app, studio_id):
        return [SimpleNamespace(id=b.id, resource_id=b.resource_id, starts_at=b.starts_at, ends_at=b.ends_at,
                                reason=b.reason)
                for b in db.session.scalars(select(Blackout).order_by(Blackout.id))]


def cancellation_emails(app, booking_id: int) -> tuple[list[str], list[str]]:
    """The cancellation's notification-log keys, and the plain text of the cancellation emails written for the
    booking (the embedded mail backend writes each message as an .eml file)."""
    with within(app):
        keys = list(db.session.scalars(select(NotificationLog.key).where(
            NotificationLog.booking_id == booking_id, NotificationLog.kind == "cancellation")))
    folder = Path(app.config["PORTAL_SETTINGS"].instance_path) / "mail"
    texts = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",)).get_content()
        if "was cancelled" in message["Subject"] and re.search(rf"/bookings/{booking_id}\b", text):
            texts.append(text)
    return keys, texts
