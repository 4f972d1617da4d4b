"""Stripe webhook endpoint: acknowledge fast, once the event is durably stored."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from portal.clock import utcnow
from portal.extensions import csrf, db, unlimited
from portal.metrics import webhook_errors
from portal.services import webhooks

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/stripe")
@csrf.exempt  # authenticated by its signature instead
@unlimited  # Stripe's deliveries are not throttled here (a flood of bad signatures is refused at the HMAC)
def stripe_webhook():
    try:
        receipt = webhooks.receive(payload=request.get_data(cache=False),
                                   signature_header=request.headers.get("Stripe-Signature"),
                                   settings=current_app.config["PORTAL_SETTINGS"], now=utcnow())
    except webhooks.WebhookRejected as rejected:
        return jsonify(error=rejected.code, detail=rejected.detail), 400
    except SQLAlchemyError as error:
        db.session.rollback()
        log.error("webhook could not be stored: %s", error)
        webhook_errors.labels("storage_unavailable").inc()
        return jsonify(error="storage_unavailable", detail="the event could not be stored; retry later"), 503
    return jsonify(received=True, duplicate=receipt.duplicate), 200
