"""Public JSON API of a studio (documented in docs/openapi.yaml)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from sqlalchemy import select

from portal.blueprints.context import studio_scoped
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Package, Resource
from portal.services import availability
from portal.services.errors import InvalidInput

bp = studio_scoped(Blueprint("api", __name__, url_prefix="/s/<studio_slug>/api"))


def _studio_json():
    studio = g.studio
    return {"slug": studio.slug, "name": studio.name, "timezone": studio.timezone, "currency": studio.currency}


@bp.get("/packages")
def packages():
    rows = db.session.scalars(select(Package).where(Package.active.is_(True)).order_by(Package.position, Package.id))
    resources = db.session.scalars(select(Resource).where(Resource.active.is_(True)).order_by(Resource.name))
    return jsonify(
        studio=_studio_json(),
        packages=[{"slug": p.slug, "name": p.name, "description": p.description,
                   "duration_minutes": p.duration_minutes, "price_minor": p.price_minor, "currency": p.currency}
                  for p in rows],
        resources=[{"slug": r.slug, "name": r.name, "kind": r.kind.value} for r in resources],
    )


@bp.get("/availability")
def availability_for_day():
    args = request.args
    missing = [name for name in ("package", "resource", "date") if not args.get(name)]
    if missing:
        raise InvalidInput(f"Missing query parameter(s): {', '.join(missing)}.", code="parameter_missing")
    now = utcnow()
    offer = availability.find_offer(args["package"], args["resource"])
    day = availability.parse_day(args["date"], g.studio, now)
    slots = availability.free_slots_on(g.studio, offer, day, now)
    return jsonify(studio=g.studio.slug, package=offer.package.slug, resource=offer.resource.slug,
                   date=day.isoformat(), timezone=g.studio.timezone,
                   duration_minutes=offer.package.duration_minutes,
                   slots=[s.isoformat() for s in slots])
