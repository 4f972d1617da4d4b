"""Lessons for the bookings tests: paid through Checkout and the Stripe stand-in (as the product makes them), or
written straight to the database when only the list or the home page's figures matter."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, Package, Payment, Resource, Studio, User
from portal.payments import get_provider
from portal.services import bookings, checkout
from tests.admin.conftest import STUDIO
from tests.payments.helpers import deliver, pay

_VERSION = re.compile(r'name="version" value="([0-9a-f]+)"')
_REQUEST_KEY = re.compile(r'name="request_key" value="([^"]+)"')


def local(world, day: date, hh_mm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hh_mm), world.a.tz)


def days_ahead(world, days: int) -> date:
    return utcnow().astimezone(world.a.tz).date() + timedelta(days=days)


def paid_lesson(app, client, standin, world, start: datetime, *, email: str = "student@example.com",
                resource: str = "piano", package: str = "lesson-60") -> int:
    """A confirmed lesson of studio A, held, paid on the stand-in's Checkout and confirmed by its webhook."""
    with app.app_context(), tenancy.scoped(world.a.id):
        studio = db.session.get(Studio, world.a.id)
        student = db.session.scalar(select(User).where(User.email == email))
        now = utcnow()
        hold = bookings.hold_slot(studio=studio, student=student, package_slug=package, resource_slug=resource,
                                  start_raw=start.isoformat(), now=now)
        payment = checkout.start_checkout(booking=hold, student=student, provider=get_provider(), now=now,
                                          success_url="http://portal.test/ok", cancel_url="http://portal.test/x")
        booking_id, session_id = hold.id, payment.checkout_session_id
    pay(standin, session_id)
    deliver(app, client, standin, types=("checkout.session.completed",))
    assert row(app, booking_id)["status"] == "confirmed"
    return booking_id


def add_booking(app, world, start: datetime, *, status: str = "confirmed", email: str = "student@example.com",
                resource: str = "piano", package: str = "lesson-60", hold_minutes: int = 30,
                studio: str = "a") -> int:
    """A booking row written directly (no payment), for lists and figures."""
    studio_id = getattr(world, studio).id
    with app.app_context(), tenancy.scoped(studio_id):
        student = db.session.scalar(select(User).where(User.email == email))
        room = db.session.scalar(select(Resource).where(Resource.slug == resource))
        lesson = db.session.scalar(select(Package).where(Package.slug == package))
        end = start + timedelta(minutes=lesson.duration_minutes)
        booking = Booking(studio_id=studio_id, student_id=student.id, package_id=lesson.id, resource_id=room.id,
                          start_at=start, end_at=end, occupied_until=end, status=BookingStatus(status),
                          hold_expires_at=utcnow() + timedelta(minutes=hold_minutes) if status == "held" else None,
                          price_minor=lesson.price_minor, currency=lesson.currency, created_at=utcnow())
        db.session.add(booking)
        db.session.commit()
        return booking.id


def row(app, booking_id: int) -> dict:
    with app.app_context(), tenancy.all_tenants():
        booking = db.session.get(Booking, booking_id)
        payment = db.session.scalar(select(Payment).where(Payment.booking_id == booking_id))
        return {"status": booking.status.value, "start_at": booking.start_at, "resource_id": booking.resource_id,
                "reschedule_count": booking.reschedule_count, "cancelled_by": booking.cancelled_by,
                "payment_status": payment.status.value if payment else None,
                "refunds": [(r.amount_minor, r.status.value) for r in sorted(payment.refunds, key=lambda r: r.id)]
                if payment else []}


def page_form(client, booking_id: int) -> dict:
    """The hidden fields of the booking page's forms: the booking's version and a fresh refund request key."""
    html = client.get(f"{STUDIO}/admin/bookings/{booking_id}").get_data(as_text=True)
    version = _VERSION.search(html)
    key = _REQUEST_KEY.search(html)
    return {"version": version.group(1) if version else "", "request_key": key.group(1) if key else ""}


def mails(app, to: str | None = None, subject: str | None = None) -> list:
    """The `.eml` files the app wrote (the embedded mail backend), oldest first."""
    from email import message_from_bytes, policy
    from pathlib import Path

    folder = Path(app.instance_path) / "mail"
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if (to is None or message["To"] == to) and (subject is None or subject in message["Subject"]):
            found.append(message)
    return found
