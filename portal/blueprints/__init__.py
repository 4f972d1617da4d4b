"""Web blueprints, one per audience."""
from flask import Flask, g

from portal import tenancy


def register(app: Flask) -> None:
    from portal.blueprints import admin, admin_api, api, auth, calendar, health, lessons, ops, series, studio, webhooks

    for module in (health, auth, studio, lessons, series, calendar, api, admin, admin_api, ops, webhooks):
        app.register_blueprint(module.bp)
    auth.init_login()

    from portal.blueprints.context import studio_view

    @app.template_global("studio_view")
    def _studio_view():
        """The configuration this page is rendered with, for pages of a studio (None elsewhere)."""
        return studio_view() if g.get("studio") is not None else None

    @app.template_global("brand_name")
    def _brand_name() -> str:
        view = _studio_view()
        return view.branding["display_name"] if view is not None else "Studio Portal"

    @app.teardown_request
    def _leave_tenant(_exc):
        token = g.pop("tenant_token", None)
        if token is not None:
            tenancy.leave(token)
