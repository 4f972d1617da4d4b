"""Drill-downs: one booking (with its payment, refunds and Stripe events), one lesson pack bought through Checkout
(with its credits, refunds and Stripe events) or one webhook event, everything that happened to it, Stripe's own
view fetched live, and the repairs that apply to it now."""
from __future__ import annotations

import json

from flask import abort, redirect, render_template, url_for
from sqlalchemy import or_, select

from portal import tenancy
from portal.blueprints.ops import bp, ops_only
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, EventStatus, PackPurchase, Payment, Refund, WebhookEvent
from portal.payments import PaymentProviderError, get_provider
from portal.services import receipts, timeline

UNFINISHED = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.RETRY, EventStatus.PROCESSING, EventStatus.DEAD)


def _get_or_404(model, entity_id: int, noun: str):
    row = db.session.get(model, entity_id) if 0 < entity_id < 2**31 else None
    if row is None:
        abort(404, f"No such {noun}.")
    return row


def _events_about(source: Payment | PackPurchase | None) -> list[WebhookEvent]:
    if source is None:
        return []
    about = [WebhookEvent.object_id == source.checkout_session_id]
    if source.payment_intent_id:
        about.append(WebhookEvent.intent_id == source.payment_intent_id)
    return db.session.scalars(select(WebhookEvent).where(or_(*about)).order_by(WebhookEvent.id)).all()


def _stripe_view(payment: Payment | PackPurchase | None) -> dict:
    """What Stripe says now about the payment's Checkout Session and refunds (or why it could not be asked)."""
    if payment is None:
        return {}
    provider = get_provider()
    view: dict = {}
    try:
        view["session"] = provider.retrieve_checkout_session(payment.checkout_session_id)
        if payment.payment_intent_id:
            view["refunds"] = provider.list_refunds(payment_intent_id=payment.payment_intent_id)
    except PaymentProviderError as error:
        view["error"] = str(error)
    return view


@bp.get("/bookings/<int:booking_id>")
@ops_only
def booking(booking_id: int):
    now = utcnow()
    with tenancy.all_tenants():
        found = _get_or_404(Booking, booking_id, "booking")
        payment = found.payment
        events = _events_about(payment)
        db.session.commit()  # no transaction is held while Stripe answers
        stripe = _stripe_view(payment)
        return render_template(
            "ops/booking.html", booking=found, payment=payment, summary=receipts.summarize(found, now),
            entries=timeline.of(found.studio, found), events=events, stripe=stripe, now=now,
            unfinished=UNFINISHED, releasable=found.status == BookingStatus.HELD
            and found.hold_expires_at is not None and found.hold_expires_at <= now)


@bp.get("/payments/<int:payment_id>")
@ops_only
def payment(payment_id: int):
    with tenancy.all_tenants():
        found = _get_or_404(Payment, payment_id, "payment")
        return redirect(url_for("ops.booking", booking_id=found.booking_id), code=303)


@bp.get("/pack-purchases/<int:purchase_id>")
@ops_only
def pack_purchase(purchase_id: int):
    with tenancy.all_tenants():
        found = _get_or_404(PackPurchase, purchase_id, "lesson pack purchase")
        events = _events_about(found)
        db.session.commit()  # no transaction is held while Stripe answers
        stripe = _stripe_view(found)
        return render_template("ops/pack_purchase.html", purchase=found, pack_studio=found.studio,
                               entries=timeline.of_pack_purchase(found.studio, found), events=events, stripe=stripe,
                               unfinished=UNFINISHED)


@bp.get("/refunds/<int:refund_id>")
@ops_only
def refund(refund_id: int):
    with tenancy.all_tenants():
        found = _get_or_404(Refund, refund_id, "refund")
        if found.pack_purchase_id is not None:
            return redirect(url_for("ops.pack_purchase", purchase_id=found.pack_purchase_id) + f"#refund-{refund_id}",
                            code=303)
        return redirect(url_for("ops.booking", booking_id=found.payment.booking_id) + f"#refund-{refund_id}",
                        code=303)


@bp.get("/events/<int:event_id>")
@ops_only
def event(event_id: int):
    with tenancy.all_tenants():
        found = _get_or_404(WebhookEvent, event_id, "webhook event")
        about = [Payment.checkout_session_id == found.object_id]
        if found.intent_id:
            about.append(Payment.payment_intent_id == found.intent_id)
        related = db.session.scalar(select(Payment).where(or_(*about))) if found.object_id else None
        pack = None
        if related is None and found.object_id:
            pack_about = [PackPurchase.checkout_session_id == found.object_id]
            if found.intent_id:
                pack_about.append(PackPurchase.payment_intent_id == found.intent_id)
            pack = db.session.scalar(select(PackPurchase).where(or_(*pack_about)))
        return render_template("ops/event.html", event=found, payment=related, pack=pack, unfinished=UNFINISHED,
                               payload=json.dumps(found.payload, indent=2, sort_keys=True))
