"""The studio's audit log through the admin API (`config:read`): newest first, filtered like the page (`actor`,
`entity`, studio-local `from`/`to` dates), paginated with a cursor (`?cursor=<next>`; `limit` up to 200)."""
from __future__ import annotations

import re

from flask import g, jsonify, request

from portal.blueprints.admin_api import ApiRefusal, bp, scope
from portal.services import audit_log


@bp.get("/audit")
@scope("config:read")
def audit():
    filters = audit_log.filters_from(request.args)
    cursor, limit = request.args.get("cursor", ""), request.args.get("limit", "")
    if cursor and not re.fullmatch(r"[1-9][0-9]{0,17}", cursor):
        raise ApiRefusal(422, "parameter_invalid", "`cursor` must be the `next` value of a previous page.")
    if limit and not (re.fullmatch(r"[0-9]{1,3}", limit) and 1 <= int(limit) <= audit_log.MAX_LIMIT):
        raise ApiRefusal(422, "parameter_invalid", f"`limit` must be between 1 and {audit_log.MAX_LIMIT}.")
    entries, after = audit_log.after_cursor(g.studio, filters, int(cursor) if cursor else None,
                                            int(limit) if limit else audit_log.PER_PAGE)
    return jsonify(entries=[audit_log.as_json(e) for e in entries], next=str(after) if after is not None else None)
