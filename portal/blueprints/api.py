"""Public JSON API of a studio (documented in docs/openapi.yaml)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from flask_login import current_user

from portal.blueprints.context import bookings_stamp, login_required_here, studio_changed, studio_scoped, studio_version
from portal.clock import utcnow
from portal.http import public
from portal.services import availability, configuration, credits, series, studio_cache
from portal.services.configuration import display
from portal.services.errors import InvalidInput

bp = studio_scoped(Blueprint("api", __name__, url_prefix="/s/<studio_slug>/api"))


def _studio_json():
    studio = g.studio
    return {"slug": studio.slug, "name": studio.name, "timezone": studio.timezone, "currency": studio.currency}


@bp.get("/packages")
@public(version=studio_version, modified=studio_changed, reuse=studio_version)
def packages():
    calendar = studio_cache.calendar(g.studio)
    shown = display.listed(configuration.document_of(g.studio), list(calendar.packages))
    resources = calendar.active_resources()
    return jsonify(
        studio=_studio_json(),
        packages=[{"slug": s.package.slug, "name": s.package.name, "description": s.package.description,
                   "duration_minutes": s.package.duration_minutes, "price_minor": s.package.price_minor,
                   "currency": s.package.currency, "featured": s.featured} for s in shown],
        resources=[{"slug": r.slug, "name": r.name, "kind": r.kind.value} for r in resources],
    )


@bp.get("/config")
@public(version=studio_version, modified=studio_changed, reuse=studio_version)
def published_config():
    """The published configuration (public: it is what every student's page shows)."""
    return jsonify(version=g.studio.config_version, config=configuration.document_of(g.studio))


@bp.get("/availability")
@public(reuse=bookings_stamp)
def availability_for_day():
    """One day (`date`) or a range of days (`from` and `to`, at most 62) in one answer."""
    args = request.args
    ranged = "from" in args or "to" in args
    wanted = ("package", "resource", "from", "to") if ranged else ("package", "resource", "date")
    missing = [name for name in wanted if not args.get(name)]
    if missing:
        raise InvalidInput(f"Missing query parameter(s): {', '.join(missing)}.", code="parameter_missing")
    now = utcnow()
    if ranged:
        first, last = availability.parse_range(args["from"], args["to"])
        offer = availability.find_offer(g.studio, args["package"], args["resource"])
        days = availability.days_in_range(g.studio, offer, first, last, now)
        return jsonify(**_offer_json(offer), **{"from": first.isoformat(), "to": last.isoformat()},
                       days=[{"date": day.isoformat(), "slots": [s.isoformat() for s in found]}
                             for day, found in days])
    offer = availability.find_offer(g.studio, args["package"], args["resource"])
    day = availability.parse_day(args["date"], g.studio, now)
    slots = availability.free_slots_on(g.studio, offer, day, now)
    return jsonify(**_offer_json(offer), date=day.isoformat(), slots=[s.isoformat() for s in slots])


def _offer_json(offer: availability.Offer) -> dict:
    return {"studio": g.studio.slug, "package": offer.package.slug, "resource": offer.resource.slug,
            "timezone": g.studio.timezone, "duration_minutes": offer.package.duration_minutes}


@bp.get("/series-availability")
def series_availability():
    """Every week of a weekly series at the same local wall-clock time, free or with the reason it is not."""
    args = request.args
    missing = [name for name in ("package", "resource", "start", "weeks") if not args.get(name)]
    if missing:
        raise InvalidInput(f"Missing query parameter(s): {', '.join(missing)}.", code="parameter_missing")
    offer, planned = series.plan_request(g.studio, package_slug=args["package"], resource_slug=args["resource"],
                                         start_raw=args["start"], weeks_raw=args["weeks"], now=utcnow())
    return jsonify(studio=g.studio.slug, package=offer.package.slug, resource=offer.resource.slug,
                   timezone=g.studio.timezone, max_weeks=g.studio.series_max_weeks,
                   occurrences=[o.as_json() for o in planned])


@bp.get("/me/credits")
def my_credits():
    """The logged-in student's lesson credits here: the balance (the sum of the entries) and every entry."""
    refused = login_required_here()
    if refused is not None:
        return refused
    return jsonify(credits.as_json(current_user.id))
