"""Web blueprints, one per audience."""
from flask import Flask, g

from portal import tenancy


def register(app: Flask) -> None:
    from portal.blueprints import admin, api, auth, calendar, health, lessons, ops, studio, webhooks

    for module in (health, auth, studio, lessons, calendar, api, admin, ops, webhooks):
        app.register_blueprint(module.bp)
    auth.init_login()

    @app.teardown_request
    def _leave_tenant(_exc):
        token = g.pop("tenant_token", None)
        if token is not None:
            tenancy.leave(token)
