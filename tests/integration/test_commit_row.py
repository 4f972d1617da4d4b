"""`database.commit_row`: one statement, committed as it runs (PostgreSQL: in autocommit, on a pooled connection)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from portal import database
from portal.clock import utcnow
from portal.extensions import db
from portal.models import WebhookSignature
from tests.conftest import _pg_admin

BOTH = pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])


def _sign(digest: str):
    statement = insert(WebhookSignature.__table__).returning(WebhookSignature.__table__.c.id)
    return database.commit_row(statement, {"digest": digest, "received_at": utcnow()})


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
