"""Engine behaviour per backend, attached when the app is created."""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass

import psycopg
from flask import Flask, current_app
from psycopg.rows import namedtuple_row
from sqlalchemy import event, exc

from portal import tracing
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
    # `portal.blueprints.context`), and so do `read_row` and `commit_row`; SQLite keeps its
    # one-transaction-at-a-time model.
    app.extensions["autocommit_reads"] = engine.dialect.name == "postgresql"


def read_row(statement, params: dict):
    """The first row of a SELECT (attributes named as its columns), read before, or instead of, the request's own work.

    On PostgreSQL it runs straight on a pooled connection's driver, in autocommit, as a prepared statement: no
    BEGIN or ROLLBACK, no ORM session, no SQLAlchemy execution around it (for a kept public answer this query is
    the whole request, and that machinery cost as much as the round trip). Elsewhere (SQLite) it runs in the
    session's transaction, as every statement of the request does.
    """
    if not current_app.extensions.get("autocommit_reads"):
        return db.session.execute(statement, params).first()
    try:
        return _on_driver(statement, params)
    except exc.DBAPIError as error:
        if not error.connection_invalidated:
            raise
        # The server had closed the connection, and `_on_driver` dropped the pool's others: read through the
        # session on a fresh one, which raises as usual if the database is really gone.
        return db.session.execute(statement, params).first()


def commit_row(statement, params: dict):
    """The one row a statement complete on its own returns (an INSERT … RETURNING), committed as it runs.

    On PostgreSQL the statement is its own transaction: it runs as `read_row`'s do, straight on a pooled
    connection's driver in autocommit, prepared. No BEGIN and no COMMIT travel, and no SQLAlchemy execution around
    it: one round trip, and about half the time SQLAlchemy's own execution took (a webhook acknowledgement is this
    one statement). It must be a single statement whose effects belong together, since PostgreSQL applies one
    statement wholly or not at all, and every value it writes must be given or in the statement: column defaults
    computed in Python are not applied on this path. The row's values are the driver's (a status comes back as its
    text). Elsewhere (SQLite) it runs in the session's transaction, which is then committed. A refused statement
    raises SQLAlchemy's error (`IntegrityError`, `OperationalError`, …) as `Session.execute` would, with nothing
    written.
    """
    if not current_app.extensions.get("autocommit_reads"):
        row = db.session.execute(statement, params).one()
        db.session.commit()
        return row
    row = _on_driver(statement, params)
    if row is None:
        raise exc.NoResultFound("the statement returned no row")
    return row


def _on_driver(statement, params: dict):
    """Run `statement` on a pooled connection's psycopg driver in autocommit, prepared, and return its first row.

    Driver errors are raised as SQLAlchemy's, as its own execution would. When the server had closed the connection,
    it and every other pooled one (closed with it) are discarded first, and the error says it was invalidated.
    """
    driver_statement = _compiled(statement, db.engine, frozenset(params))
    try:
        values = driver_statement.values(params)
    except Exception as error:  # a value its type refuses (a naive datetime for a UTC column, say)
        raise exc.StatementError(f"({type(error).__name__}) {error}", driver_statement.sql, params,
                                 error) from error
    try:
        pooled = db.engine.raw_connection()
    except psycopg.Error as error:  # the pool could not connect
        raise exc.DBAPIError.instance(None, None, error, psycopg.Error) from error
    try:
        driver = pooled.driver_connection
        driver.autocommit = True  # client-side only: no round trip
        try:
            with tracing.span(driver_statement.span_name, **driver_statement.span_attributes):
                return driver.cursor(row_factory=namedtuple_row).execute(driver_statement.sql, values,
                                                                          prepare=True).fetchone()
        finally:
            if not driver.closed:
                driver.autocommit = False
    except psycopg.Error as error:
        lost = driver.closed  # the server closed it (a restart, a failover): so it did the pool's others
        if lost:
            pooled.invalidate(error)
            db.engine.dispose()
        raise exc.DBAPIError.instance(driver_statement.sql, values, error, psycopg.Error,
                                      connection_invalidated=lost) from error
    finally:
        pooled.close()


@dataclass(frozen=True)
class _DriverStatement:
    """A statement compiled once for the driver: its SQL, the values written into it, and the conversions its
    parameters' types make (SQLAlchemy's bind processors: JSON, UTC timestamps, enums). With tracing on, it is a
    span named and described as SQLAlchemy's instrumentation describes the statements that go through it."""

    sql: str
    fixed: dict
    conversions: dict
    span_name: str
    span_attributes: dict

    def values(self, params: dict) -> dict:
        convert = self.conversions
        return {**self.fixed, **{name: convert[name](value) if name in convert else value
                                 for name, value in params.items()}}


@functools.lru_cache(maxsize=32)
def _compiled(statement, engine, given: frozenset) -> _DriverStatement:
    dialect, database = engine.dialect, engine.url.database
    compiled = statement.compile(dialect=dialect, column_keys=sorted(given))
    conversions = {}
    for bind, name in compiled.bind_names.items():
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None:
            conversions[name] = convert
    fixed = {name: conversions[name](value) if name in conversions and value is not None else value
             for name, value in compiled.params.items() if name not in given}
    missing = sorted(name for name, value in fixed.items() if value is None)
    if missing:
        raise TypeError(f"no value given for {', '.join(missing)}")
    sql = str(compiled)
    return _DriverStatement(sql, fixed, conversions, f"{sql.split(None, 1)[0]} {database}",
                            {"db.system": dialect.name, "db.name": database, "db.statement": sql})


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
