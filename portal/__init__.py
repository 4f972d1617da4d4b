"""Studio Portal: lesson booking and payments for music studios."""
from __future__ import annotations

import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from portal.config import PROJECT_ROOT, Settings, load_settings


def create_app(settings: Settings | None = None, **config_overrides) -> Flask:
    """Build the app. Only wiring happens here; nothing connects until a request or command needs it."""
    from portal import blueprints, cli, database, dispatch, formatting, http, logs, mail, metrics, payments, tracing
    from portal.extensions import SessionInterface, csrf, db, limiter, login_manager, migrate

    settings = settings or load_settings()
    app = Flask(__name__, instance_path=settings.instance_path,
                template_folder=str(PROJECT_ROOT / "templates"), static_folder=str(PROJECT_ROOT / "static"))
    if not settings.database_url:
        os.makedirs(app.instance_path, exist_ok=True)  # the embedded SQLite file lives here
    is_sqlite = settings.sqlalchemy_url.startswith("sqlite")
    app.config.update(
        PORTAL_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.sqlalchemy_url,
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"timeout": 15}} if is_sqlite else {},  # see database.py
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=None,  # tokens live as long as the session; a form left open overnight still works
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_SWALLOW_ERRORS=True,  # a Redis outage must not lock people out: fail open
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_HEADERS_ENABLED=True,
        TESTING=settings.env == "test",
        MAX_CONTENT_LENGTH=1024 * 1024,  # forms and webhooks are small; refuse anything larger (413)
    )
    app.config.update(config_overrides)
    app.session_interface = SessionInterface()
    if settings.trusted_proxies:
        # Behind a load balancer the client address (rate limits) and scheme (secure cookies, HSTS) come from the
        # X-Forwarded-* headers that exactly this many proxies append; more would let clients forge them.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    logs.init_app(app)
    db.init_app(app)
    database.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), compare_type=True)
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    payments.init_app(app)
    dispatch.init_app(app)
    mail.init_app(app)
    metrics.init_app(app)
    tracing.init_app(app)
    http.init_app(app)
    formatting.init_app(app)
    cli.init_app(app)
    blueprints.register(app)
    return app
