"""`GET /s/<studio>/api/admin/bookings`: the admin's bookings list as JSON (the page's filters, paginated)."""
from __future__ import annotations

from flask import g, jsonify, request

from portal.blueprints.admin_api import ApiRefusal, bp, scope
from portal.clock import utcnow
from portal.services import admin_bookings


@bp.get("/bookings")
@scope("bookings:read")
def bookings():
    filters, errors = admin_bookings.parse_filters(request.args)
    if errors:
        problem = admin_bookings.first_error(errors)
        raise ApiRefusal(422, problem.code, problem.message)
    page = admin_bookings.search(g.studio, filters, now=utcnow())
    return jsonify(bookings=[admin_bookings.as_json(row, g.studio) for row in page.rows], page=page.page,
                   per_page=page.per_page, total=page.total, pages=page.pages, timezone=g.studio.timezone)
