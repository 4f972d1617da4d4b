"""Studio admin pages (behind the studio's admin role)."""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, render_template
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from portal.blueprints.context import studio_role_required, studio_scoped
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, Role

bp = studio_scoped(Blueprint("admin", __name__, url_prefix="/s/<studio_slug>/admin"))


@bp.get("/")
@studio_role_required(Role.ADMIN)
def dashboard():
    now = utcnow()
    upcoming = db.session.scalars(
        select(Booking).options(joinedload(Booking.student), joinedload(Booking.resource),
                                joinedload(Booking.package))
        .where(Booking.end_at > now - timedelta(hours=1)).order_by(Booking.start_at).limit(200)
    ).all()
    return render_template("admin/dashboard.html", bookings=upcoming, now=now)
