"""Engine behaviour per backend, attached when the app is created."""
from __future__ import annotations

from flask import Flask
from sqlalchemy import event

from portal.extensions import db


def init_app(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)


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
