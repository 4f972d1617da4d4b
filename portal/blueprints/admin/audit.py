"""The studio's audit log (`/s/<studio>/admin/audit`): newest first, paginated, filtered by actor, entity and
studio-local dates; each row says who, what, on what, when, before → after and the note."""
from __future__ import annotations

import re

from flask import g, render_template, request

from portal.blueprints.admin import admin_page, bp
from portal.services import audit_log
from portal.services.errors import InvalidInput


@bp.get("/audit")
@admin_page
def audit():
    studio = g.studio
    errors: dict[str, str] = {}
    try:
        filters = audit_log.filters_from(request.args)
    except InvalidInput as problem:
        filters, errors = audit_log.Filters(), {problem.field or "from": problem.message}
    number = request.args.get("page", "1")
    page = audit_log.page(studio, filters, int(number) if re.fullmatch(r"[1-9][0-9]{0,8}", number) else 1)
    return render_template("admin/audit.html", page=page, rows=[audit_log.describe(e) for e in page.entries],
                           filters=filters, typed=request.args, errors=errors, actors=audit_log.actors(studio),
                           entities=audit_log.entities(studio)), 422 if errors else 200
