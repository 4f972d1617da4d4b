"""Pooled PostgreSQL connections are checked when they have sat idle, not on every request."""
from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from portal import database
from portal.extensions import db
from tests.conftest import _pg_admin

pytestmark = pytest.mark.postgres


@pytest.fixture
def backend():
    return "postgres"


def _pid() -> int:
    pid = db.session.scalar(text("SELECT pg_backend_pid()"))
    db.session.remove()  # back to the pool, as at the end of a request
    return pid


def _kill(pid: int) -> None:
    with _pg_admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_closed_while_idle_is_replaced_before_use(app_ctx, monkeypatch):
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)  # every pooled connection counts as idle
    first = _pid()
    _kill(first)  # a database restart or an idle timeout closed it in the pool

    second = _pid()  # no error: the check found it closed and the pool opened another
    assert second != first
    assert _pid() == second  # and that one is reused


def test_a_connection_back_in_use_at_once_is_not_checked(app_ctx):
    """Within the idle allowance nothing is sent before the request's own statements, so a connection closed
    meanwhile fails the statement that meets it; the pool then replaces it, and the next request works."""
    first = _pid()
    _kill(first)

    with pytest.raises(DBAPIError) as failure:
        db.session.scalar(text("SELECT 1"))
    assert failure.value.connection_invalidated
    db.session.remove()
    assert _pid() != first
