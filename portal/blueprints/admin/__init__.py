"""Studio admin pages, `/s/<studio>/admin/…`: one module per area, all on this blueprint.

Access: the studio's admins; platform ops may look at every page (GET) but change nothing; a student or an admin
of another studio gets 403, an anonymous visitor the login page. Every change an admin makes is audited.
"""
from __future__ import annotations

import functools

from flask import Blueprint, abort, g, redirect, request, url_for
from flask_login import current_user

from portal.blueprints.context import login_required_here, set_preview, studio_scoped
from portal.models import Role
from portal.services.audit import Actor
from portal.services.errors import InvalidInput

bp = studio_scoped(Blueprint("admin", __name__, url_prefix="/s/<studio_slug>/admin"))


def is_admin() -> bool:
    return current_user.is_authenticated and current_user.has_role(g.studio.id, Role.ADMIN)


def admin_page(view):
    """A page an admin reads: the studio's admins, and platform ops (read-only)."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        redirect_to_login = login_required_here()
        if redirect_to_login is not None:
            return redirect_to_login
        if not (is_admin() or current_user.is_platform_ops):
            abort(403, "Only this studio's admins can see this page.")
        return view(*args, **kwargs)

    return wrapper


def admin_action(view):
    """A change: the studio's admins only."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        redirect_to_login = login_required_here()
        if redirect_to_login is not None:
            return redirect_to_login
        if not is_admin():
            abort(403, "Only this studio's admins can change it.")
        return view(*args, **kwargs)

    return wrapper


def actor() -> Actor:
    return Actor.of(current_user)


def required_note(field: str = "note") -> str:
    """The written note an admin action asks for (422 without one)."""
    note = (request.form.get(field) or "").strip()
    if not note:
        raise InvalidInput("Write a note saying why: it goes in the audit log.", code="note_missing", field=field)
    return note[:2000]


#: The admin's sections, in menu order (endpoint, label); a section shows once its module exists.
SECTIONS = [("admin.dashboard", "Home"), ("admin.bookings", "Bookings"), ("admin.calendar", "Calendar"),
            ("admin.catalogue", "Catalogue"), ("admin.credits_page", "Lessons & credits"),
            ("admin.configuration", "Configuration"), ("admin.team", "Team"),
            ("admin.api_keys", "API keys"), ("admin.audit", "Audit log")]


@bp.app_template_global()
def admin_sections() -> list[tuple[str, str]]:
    from flask import current_app

    return [(endpoint, label) for endpoint, label in SECTIONS if endpoint in current_app.view_functions]


@bp.post("/preview/stop")
@admin_action
def stop_preview():
    set_preview(g.studio, None)
    return redirect(request.referrer if request.referrer and request.referrer.startswith(request.host_url)
                    else url_for("admin.dashboard"), code=303)


# The modules register their routes on `bp`.
from portal.blueprints.admin import (  # noqa: E402,F401
    api_keys,
    audit,
    bookings,
    calendar,
    catalogue,
    configuration,
    credits,
    home,
    team,
)
