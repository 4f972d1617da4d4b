"""The platform ops console, `/ops/…`: reconciliation queries, search, drill-downs, repairs, studio onboarding.

Ops staff only (the platform ops flag): anyone else gets 403, an anonymous visitor the login page. It reads across
studios on purpose (`tenancy.all_tenants()`); every repair is one entity at a time, with a note, audited.
"""
from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user

from portal.blueprints.context import ops_required
from portal.parsing import whole_number
from portal.services.audit import Actor

bp = Blueprint("ops", __name__, url_prefix="/ops")
ops_only = ops_required


#: The console's sections beyond the dashboard (endpoint, label); a section shows once its module exists.
SECTIONS = [("ops.studios_page", "Studios")]


@bp.app_template_global()
def ops_sections() -> list[tuple[str, str]]:
    from flask import current_app

    return [(endpoint, label) for endpoint, label in SECTIONS if endpoint in current_app.view_functions]


def actor() -> Actor:
    return Actor.of(current_user)


def page_number() -> int:
    return whole_number(request.args.get("page", "1"), 1, 9_999) or 1


from portal.blueprints.ops import console, entities, repairs, studios  # noqa: E402,F401  (modules add routes)
