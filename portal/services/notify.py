"""Queue a notification email (sent once per key by the `send_notification` job)."""
from __future__ import annotations

import logging

from portal import dispatch

log = logging.getLogger(__name__)


def notify(kind: str, booking_id: int, key: str) -> None:
    """Ask for a message to be sent; a queue outage is logged, never fatal to the change that caused it."""
    try:
        dispatch.enqueue("send_notification", kind, booking_id, key)
    except dispatch.DispatchError as error:
        log.warning("notification %s not queued: %s", key, error)
