"""Per-request studio resolution and role checks shared by the studio-scoped blueprints."""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, current_app, g, request, session
from flask_login import current_user
from sqlalchemy import bindparam, select

from portal import database, http, tenancy
from portal.extensions import db, login_manager
from portal.models import ConfigState, Role, Studio
from portal.services import configuration

#: Session key holding, per studio id, the draft version an admin is previewing.
PREVIEW_KEY = "preview"


#: Every studio page's first query, built once (only its parameter changes from request to request).
_STUDIO_BY_SLUG = select(Studio).where(Studio.slug == bindparam("slug"))
#: An anonymous public read's first query instead: the same row as plain columns with the studio's bookings version,
#: without building the ORM object. It has the attributes `studio_version` and `bookings_stamp` read, and is what
#: a kept answer is checked against (`portal.http.public(reuse=...)`).
_STUDIO_STAMP_BY_SLUG = (select(*Studio.__table__.columns, Studio.bookings_version.expression.label("bookings_version"))
                         .where(Studio.__table__.c.slug == bindparam("slug")))


def studio_scoped(bp: Blueprint) -> Blueprint:
    """Resolve `<studio_slug>` once per request into `g.studio` and enter that tenant's scope."""

    @bp.url_value_preprocessor
    def _resolve(_endpoint, values):
        slug = (values or {}).pop("studio_slug", None)
        view = current_app.view_functions.get(_endpoint)
        if http.may_serve_kept(view):
            # An anonymous public read: the studio's row, read as plain columns, decides whether a kept answer
            # still holds. If one does, it is the whole request: no session, no ORM object, no tenant scope.
            g.studio = database.read_row(_STUDIO_STAMP_BY_SLUG, {"slug": slug})
            if g.studio is None:
                abort(404, "No studio lives at this address.")
            if http.take_kept(view):
                return
        if request.method in ("GET", "HEAD") and current_app.extensions.get("autocommit_reads") and getattr(
                view, "reads_only", False) and not db.session().in_transaction():
            # A page that only reads runs its statements outside a transaction: each SELECT sees the latest
            # committed rows either way (READ COMMITTED), and the request saves the BEGIN and the closing ROLLBACK.
            db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            g.autocommit_reads = True
        # A suspended studio (`active` false) still answers: its pages say it is not taking bookings.
        studio = db.session.scalar(_STUDIO_BY_SLUG, {"slug": slug})
        if studio is None:
            abort(404, "No studio lives at this address.")
        g.studio = studio
        g.tenant_token = tenancy.enter(studio.id)

    @bp.teardown_request
    def _end_reads(_error):
        if g.pop("autocommit_reads", False):  # hand the connection back now, its transaction mode restored
            db.session.rollback()

    @bp.url_defaults
    def _default_slug(_endpoint, values):
        if "studio_slug" not in values and "studio" in g:
            values["studio_slug"] = g.studio.slug

    return bp


#: Reads every column of a studio row (an ORM object or a plain row) as one tuple.
_STUDIO_COLUMNS = operator.attrgetter(*(column.key for column in Studio.__table__.columns))


def studio_version() -> tuple:
    """Everything of the request's studio that its catalogue pages depend on: every column of its row, including
    the configuration and calendar versions that each publish and each catalogue or calendar change raise."""
    return _STUDIO_COLUMNS(g.studio)


def studio_changed() -> datetime:
    """When the request's studio row last changed: the `Last-Modified` of the answers `studio_version` versions."""
    return g.studio.changed_at


def bookings_stamp() -> tuple:
    """`studio_version` and the studio's bookings version: what an answer with free times depends on besides its
    URL and the clock (`portal.http.public(reuse=...)`)."""
    return (*studio_version(), g.studio.bookings_version)


def login_required_here():
    """Anonymous → login redirect (with `next`), as Flask-Login does; a JSON endpoint answers 401 instead."""
    if not current_user.is_authenticated:
        from portal.http import wants_json

        if wants_json():
            abort(401, "Log in first.")
        return login_manager.unauthorized()
    return None


def studio_role_required(role: Role):
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            redirect = login_required_here()
            if redirect is not None:
                return redirect
            if not current_user.has_role(g.studio.id, role):
                abort(403, "Your account has no access to this part of the studio.")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def ops_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        redirect = login_required_here()
        if redirect is not None:
            return redirect
        if not current_user.is_platform_ops:
            abort(403, "The operations console is for platform staff.")
        return view(*args, **kwargs)

    return wrapper


def visible_booking(booking_id: int):
    """A booking of this studio the current user may see: their own, or any for the studio's admins (else 404)."""
    from portal.services import bookings

    return bookings.get_booking_for(current_user, booking_id, as_admin=current_user.has_role(g.studio.id, Role.ADMIN))


@dataclass(frozen=True)
class StudioView:
    """The configuration a page of the studio in scope is rendered with: the published version, or the draft its
    admin is previewing (only they see it; their pages are never cached, see `portal.http`)."""

    version: int
    document: dict
    preview: bool

    @property
    def branding(self) -> dict:
        return self.document["branding"]


def studio_view() -> StudioView:
    view = g.get("studio_view")
    if view is None:
        studio = g.studio
        version, preview = studio.config_version, False
        wanted = (session.get(PREVIEW_KEY) or {}).get(str(studio.id))
        if wanted and current_user.is_authenticated and current_user.has_role(studio.id, Role.ADMIN):
            try:
                if configuration.get_version(studio, int(wanted)).state == ConfigState.DRAFT:
                    version, preview = int(wanted), True
            except (ValueError, configuration.NotFound):
                pass
        view = g.studio_view = StudioView(version, configuration.document_of(studio, version), preview)
    return view


def set_preview(studio: Studio, version: int | None) -> None:
    previews = dict(session.get(PREVIEW_KEY) or {})
    if version is None:
        previews.pop(str(studio.id), None)
    else:
        previews[str(studio.id)] = version
    session[PREVIEW_KEY] = previews
