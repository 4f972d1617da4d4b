"""Bookings: the filtered list (and its CSV), one booking's page with its timeline, and the admin's actions."""
from __future__ import annotations

import secrets

from flask import Response, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from portal.blueprints.admin import actor, admin_action, admin_page, bp, is_admin, required_note
from portal.clock import utcnow
from portal.extensions import db
from portal.http import render
from portal.models import Booking, Resource
from portal.services import admin_bookings, availability
from portal.services import bookings as bookings_service
from portal.services.errors import Conflict, DomainError, InvalidInput, SlotUnavailable


def _booking(booking_id: int) -> Booking:
    return bookings_service.get_booking_for(current_user, booking_id, as_admin=True)


def _resources() -> list[Resource]:
    return db.session.scalars(select(Resource).order_by(Resource.name)).all()


@bp.get("/bookings")
@admin_page
def bookings():
    filters, errors = admin_bookings.parse_filters(request.args)
    results = admin_bookings.search(g.studio, filters, now=utcnow()) if not errors else None
    return render_template("admin/bookings/index.html", filters=filters, errors=errors, results=results,
                           resources=_resources(), statuses=admin_bookings.STATUSES), 422 if errors else 200


@bp.get("/bookings.csv")
@admin_page
def bookings_csv():
    filters, errors = admin_bookings.parse_filters(request.args)
    if errors:
        raise admin_bookings.first_error(errors)
    body = admin_bookings.csv_export(g.studio, filters, now=utcnow())
    name = f"bookings-{g.studio.slug}-{utcnow().astimezone(g.studio.tz).date().isoformat()}.csv"
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- one booking ------------------------------------------------------------------------------------------------

def _show(booking_id: int, status: int = 200, *, error: str | None = None, field: str | None = None,
          form: dict | None = None, stale: bool = False):
    booking = _booking(booking_id)
    detail = admin_bookings.detail(g.studio, booking, now=utcnow())
    form = dict(form or {})
    form.setdefault("request_key", secrets.token_urlsafe(16))
    return render_template("admin/bookings/show.html", detail=detail, booking=booking, error=error, field=field,
                           form=form, stale=stale, can_act=is_admin()), status


@bp.get("/bookings/<int:booking_id>")
@admin_page
def bookings_show(booking_id: int):
    return _show(booking_id)


def _refused(booking_id: int, problem: DomainError, form_name: str):
    """The booking page again, fresh, saying why nothing happened; what the admin typed stays in the form."""
    db.session.rollback()
    form = {key: request.form.get(key, "") for key in ("note", "amount", "reason", "request_key")}
    form["open"] = form_name
    if isinstance(problem, InvalidInput):
        return _show(booking_id, problem.status, error=problem.message, field=problem.field or "", form=form)
    return _show(booking_id, problem.status, error=problem.message, form=form, stale=True)


@bp.post("/bookings/<int:booking_id>/cancel")
@admin_action
def bookings_cancel(booking_id: int):
    booking = _booking(booking_id)
    try:
        note = required_note()
        admin_bookings.cancel(booking=booking, version=request.form.get("version", ""), actor=actor(), note=note,
                              reason=request.form.get("reason", "").strip(), now=utcnow())
    except DomainError as problem:
        return _refused(booking_id, problem, "cancel")
    flash("The lesson was cancelled. The full refund is on its way and the student is being emailed.", "success")
    return redirect(url_for("admin.bookings_show", booking_id=booking_id), code=303)


@bp.post("/bookings/<int:booking_id>/refund")
@admin_action
def bookings_refund(booking_id: int):
    booking = _booking(booking_id)
    try:
        note = required_note()
        admin_bookings.refund_part(booking=booking, version=request.form.get("version", ""),
                                   amount_raw=request.form.get("amount"),
                                   request_key=request.form.get("request_key", ""), actor=actor(), note=note,
                                   now=utcnow())
    except DomainError as problem:
        return _refused(booking_id, problem, "refund")
    flash("The refund was recorded and is being sent to Stripe.", "success")
    return redirect(url_for("admin.bookings_show", booking_id=booking_id), code=303)


@bp.post("/bookings/<int:booking_id>/no-show")
@admin_action
def bookings_no_show(booking_id: int):
    booking = _booking(booking_id)
    try:
        note = required_note()
        admin_bookings.mark_no_show(booking=booking, version=request.form.get("version", ""), actor=actor(),
                                    note=note, now=utcnow())
    except DomainError as problem:
        return _refused(booking_id, problem, "no_show")
    flash("The lesson was marked as a no-show.", "success")
    return redirect(url_for("admin.bookings_show", booking_id=booking_id), code=303)


# --- moving a lesson --------------------------------------------------------------------------------------------

def _move_context(booking: Booking, resource_slug: str | None, date_raw: str | None) -> dict:
    studio, now = g.studio, utcnow()
    resources = db.session.scalars(select(Resource).where(Resource.active.is_(True)).order_by(Resource.name)).all()
    resource = next((r for r in resources if r.slug == resource_slug), None)
    if resource is None:
        resource = next((r for r in resources if r.id == booking.resource_id), resources[0] if resources else None)
    first, last = availability.booking_window(studio, now)
    error = None
    default_day = max(first, booking.start_at.astimezone(studio.tz).date())
    try:
        day = availability.parse_day(date_raw, studio, now) if date_raw else default_day
    except InvalidInput as problem:
        day, error = default_day, problem.message
    slots = []
    if resource is not None:
        slots = availability.free_slots_on(studio, availability.Offer(booking.package, resource), day, now)
        slots = [s for s in slots if not (s == booking.start_at and resource.id == booking.resource_id)]

    def day_url(other_day):
        return url_for("admin.bookings_move", booking_id=booking.id, resource=resource.slug if resource else None,
                       date=other_day.isoformat())

    return dict(booking=booking, resources=resources, resource=resource, day=day, first_day=first, last_day=last,
                slots=slots, error=error, day_url=day_url, can_act=is_admin(),
                version=admin_bookings.version_of(booking),
                picker_url=url_for("admin.bookings_move", booking_id=booking.id))


@bp.get("/bookings/<int:booking_id>/move")
@admin_page
def bookings_move(booking_id: int):
    booking = _booking(booking_id)
    now = utcnow()
    move = admin_bookings.actions_for(booking, 0, now)["move"]
    if not move.allowed:
        return render_template("errors/error.html", status=409, title="This lesson cannot be moved",
                               message=move.reason), 409
    context = _move_context(booking, request.args.get("resource"), request.args.get("date"))
    return render("admin/bookings/move.html", "admin/bookings/_move_slots.html", 422 if context["error"] else 200,
                  form={}, **context)


@bp.post("/bookings/<int:booking_id>/move")
@admin_action
def bookings_move_submit(booking_id: int):
    booking = _booking(booking_id)
    form = {key: request.form.get(key, "") for key in ("note", "resource", "start")}
    try:
        note = required_note()
        admin_bookings.move(studio=g.studio, booking=booking, version=request.form.get("version", ""),
                            actor=actor(), resource_slug=form["resource"], start_raw=form["start"] or None,
                            note=note, now=utcnow())
    except DomainError as problem:
        db.session.rollback()
        booking = _booking(booking_id)
        if isinstance(problem, Conflict) and not isinstance(problem, SlotUnavailable) \
                and not admin_bookings.actions_for(booking, 0, utcnow())["move"].allowed:
            return _show(booking_id, problem.status, error=problem.message, stale=True)
        context = _move_context(booking, form["resource"], form["start"][:10] or None)
        context["error"] = problem.message
        context["taken"] = isinstance(problem, SlotUnavailable)
        return render_template("admin/bookings/move.html", form=form, **context), problem.status
    flash("The lesson was moved. The student is being emailed the new time.", "success")
    return redirect(url_for("admin.bookings_show", booking_id=booking_id), code=303)
