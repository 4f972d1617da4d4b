"""Platform operations console (behind the platform ops flag). Reads across tenants on purpose."""
from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import func, select

from portal import tenancy
from portal.blueprints.context import ops_required
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, Studio
from portal.services import reconciliation

bp = Blueprint("ops", __name__, url_prefix="/ops")


@bp.get("/")
@ops_required
def index():
    with tenancy.all_tenants():
        counts = db.session.execute(
            select(Booking.studio_id, Booking.status, func.count(Booking.id)).group_by(Booking.studio_id,
                                                                                      Booking.status)).all()
        studios = db.session.scalars(select(Studio).order_by(Studio.name)).all()
        by_studio: dict[int, dict[str, int]] = {}
        for studio_id, status, count in counts:
            by_studio.setdefault(studio_id, {})[status.value] = count
        attention = reconciliation.needs_attention(utcnow())
        studio_slugs = {s.id: s.slug for s in studios}
        return render_template("ops/index.html", studios=studios, counts=by_studio, attention=attention,
                               studio_slugs=studio_slugs)
