"""The admin home: today's and this week's lessons, utilisation, and what needs the admin."""
from __future__ import annotations

from datetime import timedelta

from flask import render_template
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from portal.blueprints.admin import admin_page, bp
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking


@bp.get("/")
@admin_page
def dashboard():
    now = utcnow()
    upcoming = db.session.scalars(
        select(Booking).options(joinedload(Booking.student), joinedload(Booking.resource),
                                joinedload(Booking.package))
        .where(Booking.end_at > now - timedelta(hours=1)).order_by(Booking.start_at).limit(200)
    ).all()
    return render_template("admin/dashboard.html", bookings=upcoming, now=now)
