import logging

from portal import dispatch
from portal.clock import utcnow
from portal.extensions import db
from portal.jobs import job
from portal.models import Booking, Studio
from portal.services import account_mail, notifications

log = logging.getLogger(__name__)


@job(concerns=(Booking, 1))
def send_notification(kind: str, booking_id: int, key: str) -> bool:
    return notifications.send(kind, booking_id, key=key, now=utcnow())


@job
def send_notifications(kind: str, messages: list) -> str:
    """Messages of one kind queued together, each `(booking id, key)` sent once by its key as `send_notification`
    sends it. A failure is raised once the others were tried, so the job's retry sends only what is still unsent."""
    sent, failure = 0, None
    for booking_id, key in messages:
        try:
            sent += notifications.send(kind, booking_id, key=key, now=utcnow())
        except Exception as error:  # recorded on its log row by send(); the rest still go out
            db.session.rollback()
            failure = failure or error
    if failure is not None:
        raise failure
    return f"{sent} of {len(messages)} sent"


@job
def send_due_reminders() -> int:
    due = notifications.due_reminders(utcnow())
    db.session.rollback()  # end the read before handing out work (on SQLite it holds the write lock)
    queued = 0
    for booking_id, key in due:
        try:
            dispatch.enqueue("send_notification", "reminder", booking_id, key)
        except dispatch.DispatchError as error:  # the next sweep finds the rest again
            log.warning("queue unavailable, %d reminders wait: %s", len(due) - queued, error)
            break
        queued += 1
    return queued


@job(concerns=(Studio, 3))
def send_account_email(kind: str, user_id: int, token_id: int | None, studio_id: int | None, reference: str) -> bool:
    return account_mail.send(kind, user_id, token_id, studio_id, reference, now=utcnow())
