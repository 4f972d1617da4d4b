"""Shared fixtures: a pinned clock, real databases (SQLite file, PostgreSQL), app and client per test, factories.

PostgreSQL, Redis and the browser are real. Locally a missing service skips its tests; with CI=true a missing
service fails them, so CI can never pass by skipping.

The clock is pinned for the whole session (`pinned_clock`, with time-machine): it starts at `PORTAL_TEST_NOW`, an
ISO 8601 instant with a UTC offset, or by default at 2026-06-10T19:00:00+00:00 (a Wednesday, 15:00 in New York and
20:00 in London, far from any DST change), and ticks on in real time, since tests wait, poll, sign webhooks and
let holds expire. `portal.clock.utcnow()`, `datetime.now()` and `time.time()` all read it; `time.monotonic()` stays
real. Tests build their dates from it (`utcnow()`), so they pass whatever the instant: `make test-dates` runs the
date-sensitive tests on a Monday, on a Saturday evening in New York (already Sunday in UTC) and on the days the US
clocks change. Python processes that tests start read the same clock through `tests/support/processes.py`.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import time_machine
from flask_migrate import upgrade
from sqlalchemy import text

from portal import create_app
from portal.config import load_settings
from portal.extensions import db

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _redis_test_url() -> str:
    """TEST_REDIS_URL (db 13 unless it says otherwise); under pytest-xdist, worker gwN takes the database N above it,
    so tests running at once never share a queue."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        base, _, number = url.rpartition("/")
        url = f"{base}/{int(number) + int(worker[2:])}"
    return url


REDIS_TEST_URL = _redis_test_url()
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
TEST_SECRET = "test-secret-key-" + "x" * 32
STRIPE_WEBHOOK_SECRET = "whsec_" + "portal-tests-" * 3
STRIPE_API_KEY = "sk_test_portal_tests"

DEFAULT_NOW = "2026-06-10T19:00:00+00:00"

pytest_plugins = ["tests.factories"]


# --- the clock -------------------------------------------------------------------------------------------

PINNED_NOW = pytest.StashKey[datetime]()
REAL_START = pytest.StashKey[float]()  # the real Unix time at which the pinned clock started


def pytest_configure(config):
    raw = os.environ.get("PORTAL_TEST_NOW", "").strip() or DEFAULT_NOW
    try:
        instant = datetime.fromisoformat(raw)
    except ValueError:
        raise pytest.UsageError(f"PORTAL_TEST_NOW={raw!r} is not an ISO 8601 date and time") from None
    if instant.utcoffset() is None:
        raise pytest.UsageError(f"PORTAL_TEST_NOW={raw!r} needs a UTC offset, e.g. {DEFAULT_NOW}")
    config.stash[PINNED_NOW] = instant


def pytest_report_header(config):
    given = os.environ.get("PORTAL_TEST_NOW", "").strip()
    source = "PORTAL_TEST_NOW" if given else "the default; PORTAL_TEST_NOW sets it"
    return f"clock: pinned to {config.stash[PINNED_NOW].isoformat()} ({source}), ticking"


@pytest.fixture(scope="session", autouse=True)
def pinned_clock(pytestconfig) -> Iterator[datetime]:
    """The instant the session's clock started at; it ticks on in real time from there (see the docstring above)."""
    instant = pytestconfig.stash[PINNED_NOW]
    with time_machine.travel(instant.timestamp(), tick=True):
        time.time()  # a ticking travel starts counting at its first reading: make that now
        pytestconfig.stash[REAL_START] = time_machine.escape_hatch.time.time()
        yield instant


def require(what: str, why: str):
    """Skip locally, fail in CI: a test that needs a real service must run there."""
    message = f"{what} unavailable: {why}"
    if IN_CI:
        pytest.fail(message + " (required in CI)", pytrace=False)
    pytest.skip(message)


# --- databases -------------------------------------------------------------------------------------------

def _pg_admin():
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        require("PostgreSQL", str(error).strip().splitlines()[0])


def create_pg_database(prefix: str = "portal_test") -> str:
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database():
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory):
    return "sqlite:///" + str(tmp_path_factory.mktemp("sqlite") / "portal.sqlite3")


_MIGRATED: set[str] = set()


def build_app(database_url: str, instance_path: Path, env: dict | None = None, **overrides):
    settings = load_settings(env={"PORTAL_ENV": "test", "SECRET_KEY": TEST_SECRET, "DATABASE_URL": database_url,
                                  "PORTAL_INSTANCE_PATH": str(instance_path), **(env or {})})
    app = create_app(settings, **{"PASSWORD_HASH_METHOD": "scrypt:1024:8:1", **overrides})
    if database_url not in _MIGRATED:
        with app.app_context():
            upgrade()
        _MIGRATED.add(database_url)
    return app


def empty_tables(app) -> None:
    dispatcher = app.extensions.get("dispatcher")
    if hasattr(dispatcher, "shutdown"):
        dispatcher.shutdown()
    with app.app_context():
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


#: Runs a test on SQLite and again on PostgreSQL (the `backend` fixture picks the database).
BOTH = pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])


@pytest.fixture(params=["sqlite"])
def backend(request):
    """The database a test runs on; `@pytest.mark.parametrize("backend", ["sqlite", "postgres"])` widens it."""
    return request.param


@pytest.fixture
def database_url(backend, request):
    return request.getfixturevalue(f"{backend}_database")


@pytest.fixture
def app_overrides():
    return {}


@pytest.fixture(scope="session")
def stripe_server():
    """The Stripe stand-in, shared by the session; `stripe_standin` resets it for each test."""
    from stripe_standin import start_server

    server, _base = start_server(port=0, webhook_secret=STRIPE_WEBHOOK_SECRET, initial_delay=0.2, max_delay=1)
    yield server
    server.shutdown()


@pytest.fixture
def stripe_standin(stripe_server):
    stripe_server.reset()
    return stripe_server


def stripe_env(server) -> dict:
    return {"STRIPE_SECRET_KEY": STRIPE_API_KEY, "STRIPE_API_BASE": server.base_url,
            "STRIPE_WEBHOOK_SECRETS": STRIPE_WEBHOOK_SECRET}


@pytest.fixture
def app_env(stripe_standin):
    """Environment for the app under test: by default, payments through the Stripe stand-in."""
    return stripe_env(stripe_standin)


@pytest.fixture
def app(database_url, tmp_path, app_env, app_overrides):
    app = build_app(database_url, tmp_path / "instance", env=app_env, **app_overrides)
    yield app
    empty_tables(app)


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


# --- browsers and HTML ----------------------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"|"X-CSRFToken": "([^"]+)"')


def csrf_token_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


class AuthActions:
    def __init__(self, client):
        self.client = client

    def csrf(self, path: str = "/") -> str:
        return csrf_token_from(self.client.get(path).get_data(as_text=True))

    def login(self, email: str, password: str = "demo-password-1"):
        return self.client.post("/login", data={"email": email, "password": password,
                                                "csrf_token": self.csrf("/login")})

    def logout(self):
        return self.client.post("/logout", data={"csrf_token": self.csrf()})


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture(scope="session")
def redis_url():
    """A Redis database of the tests' own (db 13 unless TEST_REDIS_URL says otherwise), emptied afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        require("Redis", str(error))
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def chromium_path():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        require("Chromium", f"{CHROMIUM} not found (apt-get install -y chromium)")
    return CHROMIUM
