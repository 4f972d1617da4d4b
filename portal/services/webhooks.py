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

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from portal import dispatch, metrics
from portal.config import Settings
from portal.extensions import db
from portal.models import EventStatus, WebhookEvent, WebhookSignature
from portal.payments.signatures import SignatureError, verify
from portal.services.states import webhook_event as events
from portal.services.states.machine import IllegalTransition

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
    """Verify and store one delivery. Raises `WebhookRejected` (400) or a database error (the caller answers 5xx)."""
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
        dispatch.enqueue("process_webhook_event", receipt.event_id)
    except dispatch.DispatchError as error:
        log.warning("event %s stored but not queued (%s); the stuck-event sweep will queue it", provider_event_id,
                    error)
        return receipt
    try:
        events.queue(receipt.event_id, now=now, current=EventStatus.RECEIVED)
        db.session.commit()
    except IllegalTransition:  # a worker has claimed it already
        db.session.rollback()
    except SQLAlchemyError as error:  # stored and queued already: the answer stays 200
        db.session.rollback()
        log.warning("event %s queued but not marked so: %s", provider_event_id, error)
    return receipt


def _store(digest: str, provider_event_id: str, event_type: str, event: dict, now: datetime) -> Receipt:
    """Record the signed request and the event in one transaction (twice at most: a concurrent first delivery
    of the same event makes our insert lose, and we then count ours as the duplicate it is)."""
    for _ in range(2):
        db.session.add(WebhookSignature(digest=digest, received_at=now))
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            metrics.signature_replay_blocked.inc()
            _reject("replay_blocked", "this exact signed request was already received")
        existing = db.session.scalar(select(WebhookEvent).where(WebhookEvent.provider_event_id == provider_event_id))
        if existing is not None:
            existing.deliveries += 1
            existing_id = existing.id
            db.session.commit()
            return Receipt(existing_id, provider_event_id, duplicate=True)
        object_id, intent_id = _object_ids(event)
        stored = WebhookEvent(provider_event_id=provider_event_id, type=event_type, payload=event,
                              object_id=object_id, intent_id=intent_id, status=EventStatus.RECEIVED,
                              received_at=now, updated_at=now)
        db.session.add(stored)
        try:
            db.session.flush()
            stored_id = stored.id
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            continue
        return Receipt(stored_id, provider_event_id, duplicate=False)
    raise RuntimeError(f"could not store event {provider_event_id}")
