"""The console's repairs: each a form post with a written note (422 without), audited, answered with a 303 back
to where it was made. A stale page (the state moved since it was rendered) gets a 409 and changes nothing."""
from __future__ import annotations

from flask import flash, redirect, request, url_for

from portal.blueprints.auth import safe_next
from portal.blueprints.ops import actor, bp, ops_only
from portal.clock import utcnow
from portal.payments import get_provider
from portal.services import ops_actions


def _back(default: str):
    return redirect(safe_next(request.form.get("next")) or default, code=303)


def _note() -> str:
    return request.form.get("note", "")


def _expected() -> str | None:
    return request.form.get("expected") or None


@bp.post("/events/<int:event_id>/replay")
@ops_only
def replay_event(event_id: int):
    ops_actions.replay_event(event_id, actor=actor(), note=_note(), now=utcnow(), expected=_expected())
    flash(f"Webhook event {event_id} was queued again.", "success")
    return _back(url_for("ops.query", name="dead_events"))


@bp.post("/payments/<int:payment_id>/refetch")
@ops_only
def refetch_session(payment_id: int):
    status = ops_actions.refetch_session(payment_id, actor=actor(), note=_note(), provider=get_provider(),
                                         now=utcnow(), expected=_expected())
    flash(f"Stripe was asked again; payment {payment_id} is {status.replace('_', ' ')}.", "success")
    return _back(url_for("ops.query", name="paid_unconfirmed"))


@bp.post("/pack-purchases/<int:purchase_id>/refetch")
@ops_only
def refetch_pack(purchase_id: int):
    status = ops_actions.refetch_pack(purchase_id, actor=actor(), note=_note(), provider=get_provider(),
                                      now=utcnow(), expected=_expected())
    flash(f"Stripe was asked again; pack purchase {purchase_id} is {status}.", "success")
    return _back(url_for("ops.query", name="packs_paid_uncredited"))


@bp.post("/bookings/<int:booking_id>/release")
@ops_only
def release_hold(booking_id: int):
    ops_actions.release_hold(booking_id, actor=actor(), note=_note(), provider=get_provider(), now=utcnow(),
                             expected=_expected())
    flash(f"Booking #{booking_id}'s hold was released.", "success")
    return _back(url_for("ops.query", name="unreleased_holds"))


@bp.post("/refunds/<int:refund_id>/retry")
@ops_only
def retry_refund(refund_id: int):
    ops_actions.retry_refund(refund_id, actor=actor(), note=_note(), provider=get_provider(), now=utcnow(),
                             expected=_expected())
    flash(f"Refund {refund_id} was queued again.", "success")
    return _back(url_for("ops.query", name="stuck_refunds"))


@bp.post("/payments/<int:payment_id>/refund")
@ops_only
def refund_in_full(payment_id: int):
    ops_actions.refund_in_full(payment_id, actor=actor(), note=_note(), now=utcnow())
    flash(f"Payment {payment_id} is being refunded in full.", "success")
    return _back(url_for("ops.query", name="amount_mismatches"))


@bp.post("/resolve/<query>/<int:entity_id>")
@ops_only
def resolve(query: str, entity_id: int):
    ops_actions.resolve(query, entity_id, actor=actor(), reason=_note(), now=utcnow())
    flash("Marked resolved.", "success")
    return _back(url_for("ops.query", name=query))


@bp.post("/drift")
@ops_only
def run_drift():
    ops_actions.compare_with_stripe(actor=actor(), now=utcnow())
    flash("The comparison with Stripe is running; its findings appear on this list when it finishes.", "success")
    return _back(url_for("ops.query", name="stripe_drift"))
