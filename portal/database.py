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
    """WAL, foreign keys, and BEGIN IMMEDIATE.

    pysqlite opens transactions lazily and as readers; a reader that later writes can fail with "database is
    locked" without waiting. Taking the write lock at BEGIN makes concurrent writers queue on the busy timeout
    instead, which is what the booking path needs (the no-overlap triggers then always see the latest rows).
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
