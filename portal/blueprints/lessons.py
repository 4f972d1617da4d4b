"""A student's own lessons: the list, moving one, cancelling one."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from portal.blueprints.context import studio_role_required, studio_scoped
from portal.blueprints.studio import picker_context
from portal.clock import utcnow
from portal.formatting import local_date_iso
from portal.http import render
from portal.models import Booking, Role
from portal.services import bookings, credits, lesson_changes, lessons, pack_refunds, packs, series
from portal.services.errors import DomainError, SlotUnavailable
from portal.services.policy import cancel_terms, reschedule_decision

bp = studio_scoped(Blueprint("lessons", __name__, url_prefix="/s/<studio_slug>"))


def _own_booking(booking_id: int) -> Booking:
    return bookings.get_booking_for(current_user, booking_id, as_admin=False)


@bp.get("/lessons")
@studio_role_required(Role.STUDENT)
def index():
    now = utcnow()
    upcoming, past = lessons.lessons_of(current_user, now)
    from portal.services import calendars  # the feed token is created on first visit

    membership = next(m for m in current_user.memberships if m.studio_id == g.studio.id and m.role == Role.STUDENT)
    history = credits.history(current_user.id, limit=50)
    return render_template("lessons/index.html", upcoming=upcoming, past=past, now=now,
                           credits=lessons.open_makeup_credits(current_user),
                           balances=credits.balances(current_user.id),
                           credit_history=history, credit_money=pack_refunds.money_for(history),
                           credit_labels=credits.KIND_LABELS, weekly=lessons.series_of(upcoming),
                           packs=packs.on_sale(), pack_paid=request.args.get("pack") == "paid",
                           calendar_token=calendars.ensure_token(membership))


def _reschedule_picker(booking: Booking, resource_slug: str | None, date_raw: str | None):
    context = picker_context(
        booking.package, resource_slug or booking.resource.slug,
        date_raw or local_date_iso(booking.start_at, g.studio.tz),
        picker_endpoint="lessons.reschedule", picker_values={"booking_id": booking.id},
        slot_action=url_for("lessons.reschedule_submit", booking_id=booking.id), hidden={})
    context["booking"] = booking
    context["slot_verb"] = "Move your lesson to"
    # The lesson's own slot is listed as free for others; offering it as a move target makes no sense.
    context["slots"] = [s for s in context["slots"]
                        if not (s == booking.start_at and context["resource"].id == booking.resource_id)]
    return context


@bp.get("/bookings/<int:booking_id>/reschedule")
@studio_role_required(Role.STUDENT)
def reschedule(booking_id: int):
    booking = _own_booking(booking_id)
    decision = reschedule_decision(booking, utcnow())
    if not decision.allowed:
        return render_template("errors/error.html", status=409, title="This lesson cannot be moved",
                               message=decision.reason), 409
    context = _reschedule_picker(booking, request.args.get("resource"), request.args.get("date"))
    return render("lessons/reschedule.html", "studio/_slots.html", 422 if context["error"] else 200, **context)


@bp.post("/bookings/<int:booking_id>/reschedule")
@studio_role_required(Role.STUDENT)
def reschedule_submit(booking_id: int):
    booking = _own_booking(booking_id)
    try:
        moved = lesson_changes.reschedule(studio=g.studio, booking=booking, actor=current_user,
                                          resource_slug=request.form.get("resource", ""),
                                          start_raw=request.form.get("start"), now=utcnow())
    except DomainError as problem:
        booking = _own_booking(booking_id)
        start = request.form.get("start", "")
        context = _reschedule_picker(booking, request.form.get("resource"), start[:10] or None)
        context["error"] = problem.message
        context["taken"] = isinstance(problem, SlotUnavailable)
        return render_template("lessons/reschedule.html", **context), problem.status
    flash("Your lesson was moved. We are emailing you the new time.", "success")
    return redirect(url_for("studio.booking", booking_id=moved.id), code=303)


@bp.get("/bookings/<int:booking_id>/cancel")
@studio_role_required(Role.STUDENT)
def cancel(booking_id: int):
    booking = _own_booking(booking_id)
    _, paid = series.payment_share(booking)
    terms = cancel_terms(booking, utcnow(), paid_minor=paid)
    if not terms.allowed:
        return render_template("errors/error.html", status=409, title="This lesson cannot be cancelled",
                               message=terms.reason), 409
    return render_template("lessons/cancel.html", booking=booking, terms=terms, paid=paid)


@bp.post("/bookings/<int:booking_id>/cancel")
@studio_role_required(Role.STUDENT)
def cancel_submit(booking_id: int):
    booking = _own_booking(booking_id)
    try:
        lesson_changes.cancel(booking=booking, actor=current_user, now=utcnow())
    except DomainError as problem:
        return render_template("errors/error.html", status=problem.status, title="This lesson cannot be cancelled",
                               message=problem.message), problem.status
    flash("Your lesson was cancelled. Any refund is on its way to your card.", "success")
    return redirect(url_for("studio.booking", booking_id=booking_id), code=303)
