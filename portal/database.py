"""Engine behaviour per backend, attached when the app is created."""
from __future__ import annotations

import contextlib
import functools
import time

import psycopg
from flask import Flask, current_app
from psycopg.rows import namedtuple_row
from sqlalchemy import event, exc

from portal.extensions import db

#: A pooled PostgreSQL connection idle longer than this is checked (`SELECT 1`) before it is handed out.
PING_AFTER_IDLE_SECONDS = 10.0


def init_app(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    else:
        _ping_when_idle(engine)
    # Pages marked `reads_only` (`portal.http.public`) run without a transaction on PostgreSQL (see
    # `portal.blueprints.context`); SQLite keeps its one-transaction-at-a-time model.
    app.extensions["autocommit_reads"] = engine.dialect.name == "postgresql"
    if engine.dialect.name == "postgresql":
        # The same pool; a connection checked out through it runs in autocommit until it is handed back.
        app.extensions["autocommit_engine"] = engine.execution_options(isolation_level="AUTOCOMMIT")


def read_row(statement, params: dict):
    """The first row of a SELECT (attributes named as its columns), read before, or instead of, the request's own work.

    On PostgreSQL it runs straight on a pooled connection's driver, in autocommit, as a prepared statement: no
    BEGIN or ROLLBACK, no ORM session, no SQLAlchemy execution around it (for a kept public answer this query is
    the whole request, and that machinery cost as much as the round trip). Elsewhere (SQLite) it runs in the
    session's transaction, as every statement of the request does.
    """
    if not current_app.extensions.get("autocommit_reads"):
        return db.session.execute(statement, params).first()
    sql, defaults = _compiled(statement, db.engine.dialect)
    pooled = db.engine.raw_connection()
    try:
        driver = pooled.driver_connection
        driver.autocommit = True  # client-side only: no round trip
        try:
            return driver.cursor(row_factory=namedtuple_row).execute(sql, {**defaults, **params},
                                                                      prepare=True).fetchone()
        finally:
            if not driver.closed:
                driver.autocommit = False
    except psycopg.OperationalError as error:
        # The server closed the connection (a restart, a failover): so it did the pool's others. Drop them all and
        # read through the session on a fresh one, which raises as usual if the database is really gone.
        pooled.invalidate(error)
        db.engine.dispose()
        return db.session.execute(statement, params).first()
    finally:
        pooled.close()


def commit_row(statement, params: dict):
    """The one row a statement complete on its own returns (an INSERT … RETURNING), committed as it runs.

    On PostgreSQL the statement is its own transaction, on a pooled connection in autocommit: no BEGIN and no COMMIT
    travel, one round trip instead of three (a webhook acknowledgement is this one statement). It must be a single
    statement whose effects belong together: PostgreSQL applies one statement wholly or not at all. Elsewhere
    (SQLite) it runs in the session's transaction, which is then committed. A refused statement raises
    SQLAlchemy's error as `Session.execute` would, with nothing written.
    """
    engine = current_app.extensions.get("autocommit_engine")
    if engine is None:
        row = db.session.execute(statement, params).one()
        db.session.commit()
        return row
    with engine.connect() as connection:
        return connection.execute(statement, params).one()


@functools.lru_cache(maxsize=32)
def _compiled(statement, dialect) -> tuple[str, dict]:
    compiled = statement.compile(dialect=dialect)
    return str(compiled), dict(compiled.params)


def _ping_when_idle(engine) -> None:
    """Check a pooled connection before use only when it has sat idle, instead of before every request.

    SQLAlchemy's `pool_pre_ping` costs a round trip on every checkout, a sizeable part of a cheap read such as an
    availability answer. A connection back in use within seconds is almost always alive; one that sat idle may
    have been closed by a database restart, a failover or an idle timeout, and is the one worth checking. A failed
    check raises `DisconnectionError`, on which the pool discards the connection and opens a fresh one (SQLAlchemy's
    documented way to ping in a checkout hook). A database restarted while connections are busy is still caught:
    the statement that meets the closed connection fails, and SQLAlchemy then replaces every pooled connection
    opened before the failure.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_SECONDS:
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
            dbapi_connection.rollback()  # end the ping's transaction: the request's own starts afresh
        except Exception as error:  # any failure: this connection is not to be trusted
            raise exc.DisconnectionError("pooled connection failed its idle check") from error
        finally:
            with contextlib.suppress(Exception):  # a broken connection may refuse even this
                cursor.close()


def _configure_sqlite(engine) -> None:
    """WAL, foreign keys, a busy timeout, and BEGIN IMMEDIATE.

    SQLite has one writer at a time, so the no-overlap triggers always see every committed row. A deferred
    transaction that read first and writes later can be refused outright ("database is locked") when another
    writer committed in between; taking the write lock at BEGIN makes every transaction wait its turn on the busy
    timeout instead. The cost is that transactions run one at a time, which suits the embedded, single-machine
    default; PostgreSQL is the production database. Keep transactions short: an open one blocks the others.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=15000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
