"""A studio's API keys (`/s/<studio>/admin/api-keys`): create one with a name and scopes (its secret is shown once),
list them with when each was last used, revoke one after a confirmation."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from portal.blueprints.admin import actor, admin_action, admin_page, bp
from portal.clock import utcnow
from portal.services import api_keys as keys
from portal.services.errors import InvalidInput

SCOPE_HELP = {
    "config:read": "read configuration versions, diffs and the audit log",
    "config:propose": "propose configuration changes for an admin to review",
    "config:publish": "save drafts, publish and roll back configuration",
    "bookings:read": "read bookings",
}


def _page(*, created=None, secret: str | None = None, errors: dict | None = None, form: dict | None = None,
          status: int = 200):
    return render_template("admin/api_keys.html", keys=keys.of_studio(g.studio), scopes=keys.SCOPES,
                           scope_help=SCOPE_HELP, created=created, secret=secret, errors=errors or {},
                           form=form or {"name": "", "scopes": []}, now=utcnow()), status


@bp.get("/api-keys")
@admin_page
def api_keys():
    return _page()


@bp.post("/api-keys")
@admin_action
def api_keys_create():
    form = {"name": (request.form.get("name") or "").strip(), "scopes": request.form.getlist("scopes")}
    try:
        key, secret = keys.create(g.studio, name=form["name"], scopes=form["scopes"], actor=actor(), now=utcnow())
    except InvalidInput as problem:
        return _page(errors={problem.field or "name": problem.message}, form=form, status=422)
    # The secret is in this answer only (never in a redirect, a flash message or the session): shown once.
    return _page(created=key, secret=secret, status=201)


@bp.get("/api-keys/<int:key_id>/revoke")
@admin_page
def api_keys_revoke_confirm(key_id: int):
    return render_template("admin/api_key_revoke.html", key=keys.get(g.studio, key_id))


@bp.post("/api-keys/<int:key_id>/revoke")
@admin_action
def api_keys_revoke(key_id: int):
    key = keys.get(g.studio, key_id)
    if request.form.get("confirm") != "yes":
        return render_template("admin/api_key_revoke.html", key=key,
                               error="Tick the box to confirm: a revoked key stops working at once."), 422
    if keys.revoke(g.studio, key_id, actor=actor(), now=utcnow(), note=(request.form.get("note") or "").strip()):
        flash(f"The key “{key.name}” is revoked: it no longer works.", "success")
    else:
        flash(f"The key “{key.name}” was already revoked.", "info")
    return redirect(url_for("admin.api_keys"), code=303)
