"""Receiving Stripe webhooks: verify, refuse replays, store durably, then hand to the queue.

The `200` means "stored": storing happens in the request, processing on a worker. A legitimate redelivery of an
event (fresh timestamp and signature) is a counted duplicate and answered `200`; the exact same signed request
sent again is a replay and refused.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from portal import database, dispatch, metrics
from portal.config import Settings
from portal.extensions import db
from portal.models import EventStatus, WebhookEvent, WebhookSignature
from portal.payments.signatures import SignatureError, verify

log = logging.getLogger(__name__)


class WebhookRejected(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Receipt:
    event_id: int
    provider_event_id: str
    duplicate: bool


_SIGNATURE_COUNTERS = {
    "signature_invalid": metrics.signature_invalid,
    "signature_stale": metrics.signature_stale,
}


def _reject(code: str, detail: str):
    metrics.webhook_errors.labels(code).inc()
    counter = _SIGNATURE_COUNTERS.get(code)
    if counter is not None:
        counter.inc()
    raise WebhookRejected(code, detail)


def _parse_event(payload: bytes) -> tuple[str, str, dict]:
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        _reject("payload_invalid", "body is not JSON")
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str) \
            or not event["id"].startswith("evt_"):
        _reject("payload_invalid", "body is not a Stripe event (id and type)")
    return event["id"], event["type"], event


def _object_ids(event: dict) -> tuple[str | None, str | None]:
    """The id of the Stripe object the event is about, and of the PaymentIntent it belongs to (if it names one)."""
    found = (event.get("data") or {}).get("object") or {}
    if not isinstance(found, dict):
        return None, None
    object_id = found["id"][:255] if isinstance(found.get("id"), str) else None
    intent = found.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    if found.get("object") == "payment_intent":
        intent = object_id
    return object_id, intent[:255] if isinstance(intent, str) else None


def receive(*, payload: bytes, signature_header: str | None, settings: Settings, now: datetime) -> Receipt:
    """Verify and store one delivery, then queue it: the least work that is still durable. Raises
    `WebhookRejected` (400) or a database error (the caller answers 5xx).

    The event is stored `received` and stays so until a worker claims it: marking it `queued` after the hand-off
    would cost a second transaction on every delivery. The hand-off wakes a drain job unless one is waiting to start
    already (which will find this event: it is committed): a burst of deliveries becomes a few jobs processing
    batches of events, not a job each. If the hand-off fails, the stuck-event sweep queues the event.
    """
    try:
        signature = verify(payload, signature_header, settings.stripe_webhook_secrets,
                           settings.stripe_sig_tolerance_sec, now.timestamp())
    except SignatureError as error:
        _reject(error.code, error.detail)
    metrics.signature_valid.inc()
    if signature.secret_index > 0:
        metrics.signature_multisecret_match.inc()
    provider_event_id, event_type, event = _parse_event(payload)

    receipt = _store(signature.digest, provider_event_id, event_type, event, now)
    if receipt.duplicate:
        metrics.webhook_events.labels("duplicate").inc()
        return receipt
    metrics.webhook_events.labels("received").inc()
    try:
        dispatch.wake("drain_webhook_events")
    except dispatch.DispatchError as error:
        log.warning("event %s stored but not queued (%s); the stuck-event sweep will queue it", provider_event_id,
                    error)
    return receipt


def _store(digest: str, provider_event_id: str, event_type: str, event: dict, now: datetime) -> Receipt:
    """Record the signed request and the event, and commit: on PostgreSQL one statement (the signature's insert in a
    CTE) in autocommit, its own transaction, so the acknowledgement costs one round trip; on SQLite two statements
    in one transaction.

    The signature's unique digest refuses a replay (the whole statement fails, nothing is stored); the event's
    unique Stripe id turns a redelivery, even a concurrent one, into `deliveries + 1` on the stored row, and the
    row's delivery count then says which of the two happened.
    """
    object_id, intent_id = _object_ids(event)
    values = {"provider_event_id": provider_event_id, "type": event_type, "payload": event, "object_id": object_id,
              "intent_id": intent_id, "received_at": now, "digest": digest}
    try:
        if db.session.get_bind().dialect.name == "postgresql":
            event_id, deliveries = database.commit_row(_STORE_SIGNED_EVENT, values)
        else:
            db.session.execute(_SIGNATURE_SQLITE, values)
            event_id, deliveries = db.session.execute(_EVENT_SQLITE, values).one()
            db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        if "webhook_signatures" not in str(error.orig):
            raise
        metrics.signature_replay_blocked.inc()
        _reject("replay_blocked", "this exact signed request was already received")
    return Receipt(event_id, provider_event_id, duplicate=deliveries > 1)


def _store_statements():
    """The statements `_store` runs, built once (Core, on the tables: no ORM bulk-insert machinery and no statement
    building per delivery); only their parameters change from one delivery to the next."""
    events, signatures = WebhookEvent.__table__, WebhookSignature.__table__
    columns = events.c
    given = {name: bindparam(name, type_=columns[name].type)
             for name in ("provider_event_id", "type", "payload", "object_id", "intent_id")}
    received_at = bindparam("received_at", type_=columns.received_at.type)
    fixed = {"status": literal(EventStatus.RECEIVED, type_=columns.status.type), "attempts": literal(0),
             "deliveries": literal(1), "last_error": literal(""), "received_at": received_at,
             "updated_at": received_at}
    row = {**given, **fixed}
    signature = {"digest": bindparam("digest"), "received_at": received_at}
    signed = postgresql.insert(signatures).values(signature).returning(signatures.c.id).cte("signed")
    on_postgres = postgresql.insert(events).from_select(list(row), select(*row.values()).select_from(signed))
    on_postgres = on_postgres.on_conflict_do_update(index_elements=[columns.provider_event_id],
                                                    set_={"deliveries": columns.deliveries + 1})
    on_sqlite = sqlite.insert(events).values(row).on_conflict_do_update(
        index_elements=[columns.provider_event_id], set_={"deliveries": columns.deliveries + 1})
    returned = (columns.id, columns.deliveries)
    return (on_postgres.returning(*returned), sqlite.insert(signatures).values(signature),
            on_sqlite.returning(*returned))


_STORE_SIGNED_EVENT, _SIGNATURE_SQLITE, _EVENT_SQLITE = _store_statements()
