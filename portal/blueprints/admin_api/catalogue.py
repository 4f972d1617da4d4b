"""The resource allowlist (seed 000): which resources bookings may use, with each one's capacity."""
from __future__ import annotations

from flask import jsonify

from portal.blueprints.admin_api import bp, scope
from portal.services import catalogue


@bp.get("/resources")
@scope("config:read")
def resources():
    """`{"enforced": true, "allowed_resource_ids": [active slugs], "resources": [{"id", "name", "kind",
    "capacity_minutes", "active"}]}`: the active resources are the studio's allowlist."""
    return jsonify(catalogue.allowlist())
