"""Unbound extension objects; `create_app()` binds them with `init_app`."""
from flask import current_app, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData

# Deterministic constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def unlimited(view):
    """Mark `view` as one no rate limit applies to, so its requests skip the limiter's search for limits (see
    `_unlimited`)."""
    view.unlimited = True
    return view


@limiter.request_filter
def _unlimited() -> bool:
    """Requests to views marked `unlimited` (public answers, whose views only answer GET; signed webhook deliveries)
    skip the limiter's search for a limit: none applies to them, and on a kept answer that search cost as much as
    the rest of the request. Such a view that comes to need a limit must lose the mark."""
    return getattr(current_app.view_functions.get(request.endpoint), "unlimited", False)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, except that a request without a session cookie (every anonymous visit) gets an
    empty session without building the cookie's signing serializer first: it has nothing to verify."""

    def open_session(self, app, request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)
