"""Calendar export for students: one lesson as an .ics download, and the private subscription feed."""
from __future__ import annotations

from flask import Blueprint, Response, abort, g, redirect, request, url_for
from flask_login import current_user, login_required

from portal.blueprints.auth import safe_next
from portal.blueprints.context import studio_scoped, visible_booking
from portal.clock import utcnow
from portal.http import external_url
from portal.services import calendars

bp = studio_scoped(Blueprint("calendar", __name__, url_prefix="/s/<studio_slug>"))

ICS_MIMETYPE = "text/calendar; charset=utf-8"


@bp.app_template_global()
def calendar_feed_url(token: str) -> str:
    """The absolute feed address, for `studio/_calendar_links.html` on whichever page includes it."""
    return external_url("calendar.feed", token=token)


@bp.get("/bookings/<int:booking_id>.ics")
@login_required
def booking_ics(booking_id: int):
    found = visible_booking(booking_id)
    response = Response(calendars.booking_calendar(found, utcnow()), content_type=ICS_MIMETYPE)
    response.headers["Content-Disposition"] = f"attachment; filename=lesson-{found.id}.ics"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/calendar/<token>.ics")
def feed(token: str):
    """No login: calendar apps cannot log in, so the unguessable token is the credential."""
    membership = calendars.membership_for_token(token)
    if membership is None:
        abort(404, "This calendar address does not exist or has been replaced.")
    response = Response(calendars.student_feed(g.studio, membership.user_id, utcnow()),
                        content_type=ICS_MIMETYPE)
    response.headers["Cache-Control"] = "private, max-age=300"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.post("/calendar/token")
@login_required
def regenerate_token():
    membership = calendars.student_membership(current_user, g.studio)
    if membership is None:
        abort(403, "Only students of this studio have a lesson calendar here.")
    calendars.regenerate_token(membership)
    return redirect(safe_next(request.form.get("next")) or url_for("studio.home"), code=303)
