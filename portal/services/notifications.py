"""Email about bookings: confirmation, reschedule, cancellation and the day-before reminder, each sent once.

A message is named by a key (`confirmation:booking:42`, `reschedule:booking:42:2`, ...). `send()` composes it from
the database, ends that read, then claims the key by inserting its `NotificationLog` row: the unique key makes a
second or concurrent claim fail, so the message goes out once however often the job runs. A message that failed
may be claimed again (its job's retry sends it). Nothing is locked while the mail server answers.

Callers pass the clock and ids; nothing here reads the request, so jobs and the CLI call the same functions.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from flask import current_app
from sqlalchemy import String, cast, exists, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from portal import dispatch, formatting, logs, tenancy
from portal.extensions import db
from portal.mail import get_mail_backend
from portal.models import Booking, BookingStatus, MakeupCredit, NotificationLog, Payment, Reschedule, Resource
from portal.services import configuration, receipts

log = logging.getLogger(__name__)

KINDS = ("confirmation", "reschedule", "cancellation", "reminder", "waitlist_offer")
#: Reminders go out for lessons starting within this long.
REMINDER_LEAD = timedelta(hours=24)
REMINDER_PREFIX = "reminder:booking:"
SUBJECTS = {
    "confirmation": "Your lesson at {studio} is confirmed",
    "reschedule": "Your lesson at {studio} was moved",
    "cancellation": "Your lesson at {studio} was cancelled",
    "reminder": "Reminder: your lesson at {studio} {day}",
    "waitlist_offer": "A lesson time at {studio} is free for you",
}


# --- keys: one per message, so asking twice sends once ------------------------------------------------------

def confirmation_key(booking_id: int) -> str:
    return f"confirmation:booking:{booking_id}"


def reschedule_key(booking_id: int, move: int) -> str:
    """`move` is the booking's `reschedule_count` after the move: each move gets its own message."""
    return f"reschedule:booking:{booking_id}:{move}"


def cancellation_key(booking_id: int) -> str:
    return f"cancellation:booking:{booking_id}"


def reminder_key(booking_id: int, move: int = 0) -> str:
    """One reminder per lesson time: a lesson moved after its reminder (`move` = its reschedule count) gets another."""
    return f"{REMINDER_PREFIX}{booking_id}:{move}"


def enqueue(kind: str, booking_id: int, *, key: str) -> bool:
    """Queue a message; call it after the change it announces is committed. False (logged) if the queue is down."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    try:
        dispatch.enqueue("send_notification", kind, booking_id, key)
    except dispatch.DispatchError as error:
        log.warning("%s notification %s not queued: %s", kind, key, error)
        return False
    return True


def enqueue_many(kind: str, messages: list[tuple[int, str]]) -> bool:
    """`enqueue` for many `(booking id, key)` messages of one kind, as one job (`send_notifications`): a batch of
    payments confirmed together queues its confirmations together."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    try:
        dispatch.enqueue("send_notifications", kind, [(booking_id, key) for booking_id, key in messages])
    except dispatch.DispatchError as error:
        log.warning("%d %s notifications not queued: %s", len(messages), kind, error)
        return False
    return True


# --- sending --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Draft:
    studio_id: int | None
    recipient: str
    message: EmailMessage


def send(kind: str, booking_id: int, *, key: str, now: datetime) -> bool:
    """Send the `kind` message about the booking once per `key`. True if this call sent it; False if it was sent
    (or is being sent) already, or no longer applies. A sending error is recorded on the log row and re-raised,
    so the job is retried and the retry may claim the failed message again."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    draft = compose(kind, booking_id, now)
    db.session.rollback()  # end the read: no transaction (on SQLite, the write lock) is held while SMTP answers
    if draft is None:
        return False
    return deliver(key, kind, draft, now, booking_id=booking_id)


def deliver(key: str, kind: str, draft: Draft, now: datetime, *, booking_id: int | None = None) -> bool:
    """Send a composed message once per `key` (see `send`); the caller holds no transaction."""
    if not _claim(key, kind, draft, booking_id, now):
        log.info("%s already sent or being sent", key)
        return False
    try:
        get_mail_backend().send(draft.message)
    except Exception as error:
        _record(key, now, status="failed", last_error=f"{type(error).__name__}: {error}"[:2000])
        log.warning("%s not sent: %s", key, error)
        raise
    _record(key, now, status="sent", sent_at=now, last_error="")
    return True


SENDING_LEASE = timedelta(minutes=15)


def _claim(key: str, kind: str, draft: Draft, booking_id: int | None, now: datetime) -> bool:
    db.session.add(NotificationLog(key=key, kind=kind, studio_id=draft.studio_id, booking_id=booking_id,
                                   recipient=draft.recipient, status="sending", attempts=1, created_at=now,
                                   updated_at=now))
    try:
        db.session.commit()
        return True
    except IntegrityError:
        db.session.rollback()
    # A failed send may be retried; so may one left "sending" by a worker that died (after SENDING_LEASE). The
    # lease trades a rare duplicate (death after the SMTP handover) for never losing a message.
    stale = (NotificationLog.status == "sending") & (NotificationLog.updated_at < now - SENDING_LEASE)
    retried = db.session.execute(
        update(NotificationLog).where(NotificationLog.key == key, (NotificationLog.status == "failed") | stale)
        .values(status="sending", attempts=NotificationLog.attempts + 1, recipient=draft.recipient, updated_at=now))
    db.session.commit()
    return retried.rowcount == 1


def _record(key: str, now: datetime, **values) -> None:
    db.session.execute(update(NotificationLog).where(NotificationLog.key == key).values(updated_at=now, **values))
    db.session.commit()


# --- composing ------------------------------------------------------------------------------------------------

#: What every message shows about a booking, loaded with it (two statements instead of seven lazy loads).
_MESSAGE_ROWS = (joinedload(Booking.studio), joinedload(Booking.student), joinedload(Booking.package),
                 joinedload(Booking.resource), joinedload(Booking.payment).selectinload(Payment.refunds))


def compose(kind: str, booking_id: int, now: datetime) -> Draft | None:
    """The message, rendered from `templates/email/<kind>.txt` and `.html`; None when there is nothing to send."""
    with tenancy.all_tenants():  # an id from the queue: find its studio, then read inside that studio only
        studio_id = db.session.scalar(select(Booking.studio_id).where(Booking.id == booking_id))
    if studio_id is None:
        log.warning("%s notification for booking %s: no such booking", kind, booking_id)
        return None
    with tenancy.scoped(studio_id):
        booking = db.session.get(Booking, booking_id, options=_MESSAGE_ROWS)
        logs.job_concerns(studio_id, booking.studio.slug)  # the job's log line names it without a lookup
        if kind == "reminder" and not (booking.status == BookingStatus.CONFIRMED and booking.start_at > now):
            log.info("reminder for booking %s no longer applies (%s)", booking_id, booking.status.value)
            return None
        context = _context(kind, booking, now)
    return Draft(studio_id=studio_id, recipient=context["recipient"], message=render_message(kind, context, now))


def render_message(template: str, context: dict, now: datetime) -> EmailMessage:
    """A plain-text and HTML message from `templates/email/<template>.txt` and `.html`; `context` carries
    `subject` and `recipient`."""
    settings = current_app.config["PORTAL_SETTINGS"]
    env = current_app.jinja_env  # autoescapes .html, leaves .txt alone
    message = EmailMessage()
    message["Subject"] = context["subject"]
    message["From"] = settings.mail_from
    message["To"] = context["recipient"]
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=_domain(settings.mail_from))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(env.get_template(f"email/{template}.txt").render(context))
    message.add_alternative(env.get_template(f"email/{template}.html").render(context), subtype="html")
    return message


def _context(kind: str, booking: Booking, now: datetime) -> dict:
    studio, student = booking.studio, booking.student
    tz = studio.tz
    summary = receipts.summarize(booking, now)
    day = _day(booking.start_at, now, tz)
    context = dict(
        kind=kind, booking_id=booking.id, studio_name=configuration.document_of(studio)["branding"]["display_name"],
        student_name=student.name or student.email,
        recipient=student.email,
        package_name=booking.package.name, resource_name=booking.resource.name,
        when=formatting.when(booking.start_at, tz, studio.locale), duration_minutes=booking.duration_minutes,
        payment=summary.label, booking_url=booking_url(studio.slug, booking.id), day=day,
    )
    if kind == "reschedule":
        context.update(_moved(booking, tz))
    elif kind == "cancellation":
        context.update(_cancelled(booking, summary))
    elif kind == "waitlist_offer":
        context.update(offer_until=formatting.when(booking.hold_expires_at, tz, studio.locale),
                       waitlist_url=absolute_url("series.waitlist", studio_slug=studio.slug))
    on_day = day or "on " + formatting.day(booking.start_at, studio.locale, tz)
    context["subject"] = SUBJECTS[kind].format(studio=studio.name, day=on_day)
    return context


def _moved(booking: Booking, tz: tzinfo) -> dict:
    """The latest move: where and when the lesson was before it (the booking itself says where it is now)."""
    move = db.session.scalar(select(Reschedule).where(Reschedule.booking_id == booking.id)
                             .order_by(Reschedule.id.desc()).limit(1))
    if move is None:
        return {"old_when": None, "old_resource_name": None}
    old_resource = None
    if move.from_resource_id != booking.resource_id:
        old_resource = db.session.scalar(select(Resource.name).where(Resource.id == move.from_resource_id))
    return {"old_when": formatting.when(move.from_start_at, tz, booking.studio.locale),
            "old_resource_name": old_resource}


def _cancelled(booking: Booking, summary: receipts.PaymentSummary) -> dict:
    refunded = summary.refunded_minor + summary.refund_pending_minor  # a refund that failed returned nothing
    credit = db.session.scalar(select(MakeupCredit).where(MakeupCredit.booking_id == booking.id))
    return {"late": booking.penalty_reason == "late_cancel", "by_studio": booking.cancelled_by == "studio",
            "cancel_reason": booking.cancel_reason,
            "cancel_window_hours": (booking.policy or {}).get("cancel_window_hours"),
            "refund": summary.amount(refunded) if refunded else None,
            "makeup_minutes": credit.minutes if credit is not None else None}


def _day(start: datetime, now: datetime, tz: tzinfo) -> str | None:
    """"today" or "tomorrow" as the studio's calendar counts days; None further out."""
    return {0: "today", 1: "tomorrow"}.get((start.astimezone(tz).date() - now.astimezone(tz).date()).days)


def booking_url(studio_slug: str, booking_id: int) -> str:
    return absolute_url("studio.booking", studio_slug=studio_slug, booking_id=booking_id)


def absolute_url(endpoint: str, **values) -> str:
    """A link for an email: absolute with PORTAL_BASE_URL, a bare path when it is unset (a job has no request to
    take a host from)."""
    path = current_app.url_map.bind("localhost").build(endpoint, values)
    return current_app.config["PORTAL_SETTINGS"].portal_base_url + path


def _domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"


# --- reminders ------------------------------------------------------------------------------------------------

def due_reminders(now: datetime, *, limit: int = 1000) -> list[tuple[int, str]]:
    """(booking id, reminder key) of confirmed bookings starting in (now, now + 24 h] whose current time has no
    reminder logged yet, across every studio."""
    key = (literal(REMINDER_PREFIX) + cast(Booking.id, String) + literal(":")
           + cast(Booking.reschedule_count, String))
    reminded = exists().where(NotificationLog.key == key)
    with tenancy.all_tenants():  # the sweep looks across studios; each reminder is then sent in its own scope
        rows = db.session.execute(
            select(Booking.id, Booking.reschedule_count).where(
                Booking.status == BookingStatus.CONFIRMED, Booking.start_at > now,
                Booking.start_at <= now + REMINDER_LEAD, ~reminded)
            .order_by(Booking.start_at).limit(limit)).all()
    return [(booking_id, reminder_key(booking_id, move)) for booking_id, move in rows]
