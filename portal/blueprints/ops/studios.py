"""Studios on the platform: the list, suspending and resuming one."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from portal import tenancy
from portal.blueprints.ops import actor, bp, ops_only
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, Membership, Role, Studio
from portal.services import studios
from portal.services.errors import InvalidInput


def _studios_page(form: studios.NewStudio | None = None, errors: dict | None = None, status: int = 200):
    with tenancy.all_tenants():
        rows = db.session.scalars(select(Studio).order_by(Studio.name)).all()
        bookings = dict(db.session.execute(select(Booking.studio_id, func.count(Booking.id))
                                           .group_by(Booking.studio_id)).all())
        admins = dict(db.session.execute(select(Membership.studio_id, func.count(Membership.id))
                                         .where(Membership.role == Role.ADMIN).group_by(Membership.studio_id)).all())
    blank = studios.NewStudio("", "", "America/New_York", "usd", "en_US", "")
    return render_template("ops/studios.html", studios=rows, bookings=bookings, admins=admins, form=form or blank,
                           errors=errors or {}, currencies=studios.CURRENCIES), status


@bp.get("/studios")
@ops_only
def studios_page():
    return _studios_page()


@bp.post("/studios")
@ops_only
def create_studio():
    form = studios.NewStudio(**{field: request.form.get(field, "") for field in
                                ("name", "slug", "timezone", "currency", "locale", "admin_email")})
    with tenancy.all_tenants():
        _cleaned, errors = studios.validate(form)
    if errors:
        return _studios_page(form, errors, 422)
    try:
        studio = studios.create(form, actor=actor(), now=utcnow())
    except InvalidInput as problem:  # lost a race for the address after validation
        return _studios_page(form, {problem.field or "slug": problem.message}, 422)
    flash(f"{studio.name} is open at /s/{studio.slug}/; its first admin has been invited by email.", "success")
    return redirect(url_for("ops.studios_page"), code=303)


@bp.post("/studios/<int:studio_id>/suspend")
@ops_only
def suspend_studio(studio_id: int):
    studios.suspend(studio_id, actor=actor(), note=request.form.get("note", ""), now=utcnow())
    flash("The studio is suspended: its pages say it is not taking bookings.", "success")
    return redirect(url_for("ops.studios_page"), code=303)


@bp.post("/studios/<int:studio_id>/resume")
@ops_only
def resume_studio(studio_id: int):
    studios.resume(studio_id, actor=actor(), note=request.form.get("note", ""), now=utcnow())
    flash("The studio takes bookings again.", "success")
    return redirect(url_for("ops.studios_page"), code=303)
