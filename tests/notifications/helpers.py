"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1), and bookings built directly in the database."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import SimpleNamespace

from aiosmtpd.controller import Controller
from sqlalchemy import select

from portal import tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, Package, Payment, PaymentStatus, Resource, User


@contextmanager
def within(app):
    """A short app context across tenants: no transaction stays open in the test thread while jobs run (on SQLite
    an open transaction holds the write lock)."""
    with app.app_context(), tenancy.all_tenants():
        yield


class Inbox:
    """The aiosmtpd handler: keeps every accepted message; refuses the next `refuse` ones with a 451."""

    def __init__(self):
        self.received: list[SimpleNamespace] = []
        self.refuse = 0

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            self.refuse -= 1
            return "451 4.3.0 Mailbox busy, try again later"
        self.received.append(SimpleNamespace(
            mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
            message=message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        return [item.message for item in self.received]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SMTPServer:
    def __init__(self):
        self.inbox = Inbox()
        self.controller: Controller | None = None
        self.port = 0

    def start(self) -> "SMTPServer":
        """Listen on a new free port (a restarted server gets a new one: nothing waits for the old to be freed)."""
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, server_hostname="smtp.test")
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML bodies of a multipart/alternative message."""
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def make_booking(app, studio_id: int, start: datetime, *, status: BookingStatus = BookingStatus.CONFIRMED,
                 package: str = "lesson-60", resource: str = "piano", email: str = "student@example.com",
                 paid: bool = True, **values) -> int:
    """A booking row (and its paid Payment), as the booking flow would leave it. Returns its id."""
    with within(app):
        package_row = db.session.scalar(select(Package).where(Package.studio_id == studio_id,
                                                              Package.slug == package))
        resource_id = db.session.scalar(select(Resource.id).where(Resource.studio_id == studio_id,
                                                                  Resource.slug == resource))
        end = start + timedelta(minutes=package_row.duration_minutes)
        booking = Booking(studio_id=studio_id, student_id=db.session.scalar(select(User.id).where(User.email == email)),
                          package_id=package_row.id, resource_id=resource_id, start_at=start, end_at=end,
                          occupied_until=end, status=status, price_minor=package_row.price_minor,
                          currency=package_row.currency, **values)
        if status == BookingStatus.HELD:
            booking.hold_expires_at = start
        db.session.add(booking)
        db.session.flush()
        if paid:
            db.session.add(Payment(studio_id=studio_id, booking_id=booking.id,
                                   checkout_session_id=f"cs_test_{booking.id}", amount_minor=booking.price_minor,
                                   currency=booking.currency, amount_received_minor=booking.price_minor,
                                   received_currency=booking.currency, status=PaymentStatus.PAID))
        db.session.commit()
        return booking.id
