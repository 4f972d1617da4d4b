"""`database.commit_row`: one statement, committed as it runs (PostgreSQL: in autocommit, on a pooled connection)."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from portal import database
from portal.clock import utcnow
from portal.extensions import db
from portal.models import EventStatus, WebhookEvent, WebhookSignature
from tests.conftest import BOTH, _pg_admin


def _sign(digest: str):
    return _sign_at(digest, utcnow())


def _sign_at(digest: str, received_at: datetime):
    statement = insert(WebhookSignature.__table__).returning(WebhookSignature.__table__.c.id)
    return database.commit_row(statement, {"digest": digest, "received_at": received_at})


def _stored() -> int:
    db.session.rollback()  # nothing of the session's own is open: what is counted was committed
    return db.session.scalar(select(func.count(WebhookSignature.id)))


@BOTH
def test_the_row_is_returned_and_committed_and_a_refused_statement_writes_nothing(app_ctx):
    first = _sign("a" * 64)
    assert first.id > 0 and _stored() == 1
    with pytest.raises(IntegrityError):
        _sign("a" * 64)  # the digest is unique
    db.session.rollback()
    assert _stored() == 1
    assert _sign("b" * 64).id != first.id and _stored() == 2


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_a_pooled_connection_closed_while_idle_is_replaced_before_the_statement(app_ctx, monkeypatch):
    """The autocommit statements share the pool, and with it the idle check (`database._ping_when_idle`)."""
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
    _sign("c" * 64)
    db.session.remove()
    with _pg_admin() as admin:  # a database restart: every pooled connection is closed
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                               (db.engine.url.database,)).fetchone()[0]
    assert killed >= 1
    assert _sign("d" * 64).id > 0 and _stored() == 2


def _event_row(**values):
    table = WebhookEvent.__table__
    return database.commit_row(insert(table).returning(table.c.id, table.c.status, table.c.payload), values)


@BOTH
def test_values_are_written_as_their_column_types_write_them(app_ctx):
    """JSON, the status enum and UTC timestamps are converted as SQLAlchemy converts them (on PostgreSQL the
    statement goes to the driver, past SQLAlchemy's execution); a value the type refuses writes nothing."""
    received = datetime(2027, 3, 14, 3, 30, tzinfo=ZoneInfo("America/New_York"))
    row = _event_row(provider_event_id="evt_types", type="charge.refunded", payload={"id": "evt_types", "n": [1, 2]},
                     status=EventStatus.IGNORED, attempts=0, deliveries=1, last_error="", received_at=received,
                     updated_at=received)
    assert (row.status, row.payload) == ("ignored", {"id": "evt_types", "n": [1, 2]})
    db.session.rollback()
    stored = db.session.get(WebhookEvent, row.id)
    in_utc = datetime(2027, 3, 14, 7, 30, tzinfo=timezone.utc)  # 3:30 EDT, just after the clocks went forward
    assert (stored.status, stored.received_at, stored.updated_at) == (EventStatus.IGNORED, in_utc, in_utc)
    with pytest.raises(StatementError, match="naive datetime"):
        _sign_at("e" * 64, datetime(2027, 3, 14, 7, 30))
    db.session.rollback()
    assert _stored() == 0


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_on_postgres_every_value_must_be_given(app_ctx):
    """Column defaults computed in Python (`received_at`'s clock) are SQLAlchemy's execution's to apply, which the
    driver path skips: a statement that relies on one is refused before it is sent."""
    table = WebhookSignature.__table__
    with pytest.raises(TypeError, match="received_at"):
        database.commit_row(insert(table).returning(table.c.id), {"digest": "f" * 64})
    assert _stored() == 0


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_on_postgres_only_a_lost_connection_drops_the_pool(app_ctx, monkeypatch):
    """A refused row keeps the pooled connections; a connection the server closed under a statement (no idle check
    before it) drops them all, the error says so, and the next statement runs on a fresh one."""
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)
    _sign("h" * 64)
    pool = db.engine.pool
    with pytest.raises(IntegrityError) as refused:
        _sign("h" * 64)
    assert not refused.value.connection_invalidated and db.engine.pool is pool
    db.session.remove()
    with _pg_admin() as admin:  # a database restart while the pool's connections sit idle
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                      (db.engine.url.database,))
    with pytest.raises(OperationalError) as lost:
        _sign("i" * 64)
    assert lost.value.connection_invalidated and db.engine.pool is not pool
    assert _sign("i" * 64).id > 0 and _stored() == 2
