"""Anonymous answers with free times are kept per process and served again until they stop being true: a change of
the studio's bookings (however it is written), its calendar or configuration, a hold expiring, a shown time coming
within the notice period, or the studio's day ending. A kept answer of one studio never answers for another."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, time, timedelta, timezone

import pytest
import time_machine
from sqlalchemy import event, text

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, Package, Resource, Role
from tests.conftest import BOTH
from tests.factories import make_studio, make_user, next_weekday

STUDIO = "/s/melody-and-meter"


@pytest.fixture
def studio(app_ctx):
    studio = make_studio(buffer_minutes=0, min_notice_minutes=60)
    make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("cello",),
                packages=(("cello-45", 45, 4000),))
    make_user("student@example.com", roles=[(studio, Role.STUDENT)])
    return studio


@pytest.fixture
def statements(app_ctx, monkeypatch):
    """The SQL statements sent to the database while a test runs. On PostgreSQL they are seen at the driver (psycopg
    cursors), where SQLAlchemy's statements and those sent straight to the driver (the studio lookup of a public
    read) both pass; SQLite's driver cursor cannot be watched, so there SQLAlchemy's event, which all of them pass."""
    sent: list[str] = []
    if db.engine.dialect.name == "postgresql":
        import psycopg

        execute = psycopg.Cursor.execute

        def watched(cursor, query, *args, **kwargs):
            sent.append(str(query))
            return execute(cursor, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", watched)
        yield sent
        return

    def record(_conn, _cursor, statement, *_args):
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    yield sent
    event.remove(db.engine, "before_cursor_execute", record)


def _slots(client, day, **headers) -> list[str]:
    response = client.get(f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={day}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["slots"]


def _local(studio, day, hh_mm: str) -> str:
    return datetime.combine(day, time.fromisoformat(hh_mm), studio.tz).isoformat()


def _book(studio, day, hh_mm: str, *, status=BookingStatus.CONFIRMED, hold_expires_at=None) -> None:
    """A booking written straight to the table, around every service: the database itself marks the change."""
    start = datetime.combine(day, time.fromisoformat(hh_mm), studio.tz).astimezone(timezone.utc)
    with tenancy.scoped(studio.id):
        student_id = db.session.scalar(text("SELECT id FROM users WHERE email = 'student@example.com'"))
        package = db.session.scalar(db.select(Package).where(Package.slug == "lesson-60"))
        piano = db.session.scalar(db.select(Resource).where(Resource.slug == "piano"))
        db.session.add(Booking(studio_id=studio.id, student_id=student_id, package_id=package.id,
                               resource_id=piano.id, start_at=start, end_at=start + timedelta(hours=1),
                               occupied_until=start + timedelta(hours=1), status=status,
                               hold_expires_at=hold_expires_at, price_minor=6500, currency="usd"))
        db.session.commit()


@contextmanager
def at(instant: datetime):
    """The clock at `instant` (and ticking) for everything in this process."""
    with time_machine.travel(instant, tick=True):
        yield


@BOTH
def test_a_repeat_is_answered_from_the_kept_answer_with_the_studio_lookup_alone(client, studio, statements):
    day = next_weekday(2)
    first = _slots(client, day)
    statements.clear()
    assert _slots(client, day) == first
    assert len(statements) == 1 and "FROM studios" in statements[0]  # no bookings, rules or blackouts read
    tag = client.get(f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={day}").headers["ETag"]
    repeat = client.get(f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={day}",
                        headers={"If-None-Match": tag})
    assert repeat.status_code == 304 and repeat.get_data() == b""


@BOTH
def test_a_booking_written_around_the_services_is_seen_on_the_next_request(client, studio):
    day = next_weekday(2)
    page = f"{STUDIO}/packages/lesson-60?resource=piano&date={day}"
    assert _local(studio, day, "10:00") in _slots(client, day)
    assert client.get(page).status_code == 200
    _book(studio, day, "10:00")
    assert _local(studio, day, "10:00") not in _slots(client, day)
    assert _local(studio, day, "09:00") in _slots(client, day)
    with tenancy.scoped(studio.id):
        db.session.execute(text("DELETE FROM bookings"))
        db.session.commit()
    assert _local(studio, day, "10:00") in _slots(client, day)


def test_a_hold_that_expires_frees_its_time_without_any_write(client, studio):
    day = next_weekday(2)
    expires = utcnow() + timedelta(minutes=20)
    _book(studio, day, "10:00", status=BookingStatus.HELD, hold_expires_at=expires)
    assert _local(studio, day, "10:00") not in _slots(client, day)
    assert _local(studio, day, "10:00") not in _slots(client, day)  # kept, and still true
    with at(expires + timedelta(seconds=1)):
        assert _local(studio, day, "10:00") in _slots(client, day)


def test_a_shown_time_drops_out_when_it_comes_within_the_notice_period(client, studio):
    day = next_weekday(2)
    nine = datetime.combine(day, time(9), studio.tz)
    with at(nine - timedelta(minutes=65)):
        assert _slots(client, day)[0] == nine.isoformat()
    with at(nine - timedelta(minutes=59)):  # nothing was written: the kept answer ran out on its own
        assert _slots(client, day)[0] == _local(studio, day, "09:30")


def test_the_booking_window_moves_at_the_studios_midnight(client, studio):
    today = utcnow().astimezone(studio.tz).date()
    late = datetime.combine(today, time(23, 50), studio.tz)
    path = f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={today}"
    with at(late):
        assert client.get(path).status_code == 200
        assert client.get(path).status_code == 200
    with at(late + timedelta(minutes=20)):  # the next day: yesterday is not bookable any more
        refused = client.get(path)
        assert refused.status_code == 422 and refused.get_json()["error"] == "date_out_of_range"


def test_a_kept_answer_of_one_studio_never_answers_for_another(client, studio):
    melody = client.get(f"{STUDIO}/api/packages")
    assert [p["slug"] for p in melody.get_json()["packages"]] == ["lesson-30", "lesson-60"]
    page = client.get(f"{STUDIO}/")
    assert "60-minute lesson" in page.get_data(as_text=True)
    with tenancy.all_tenants():  # the two studios swap addresses; nothing else about them changes
        db.session.execute(text("UPDATE studios SET slug = 'swapping' WHERE slug = 'melody-and-meter'"))
        db.session.execute(text("UPDATE studios SET slug = 'melody-and-meter' WHERE slug = 'north-strings'"))
        db.session.execute(text("UPDATE studios SET slug = 'north-strings' WHERE slug = 'swapping'"))
        db.session.commit()
    north = client.get(f"{STUDIO}/api/packages")
    assert [p["slug"] for p in north.get_json()["packages"]] == ["cello-45"]
    assert north.headers["ETag"] != melody.headers["ETag"]
    assert client.get(f"{STUDIO}/api/packages", headers={"If-None-Match": melody.headers["ETag"]}).status_code == 200
    page = client.get(f"{STUDIO}/").get_data(as_text=True)
    assert "45-minute lesson" in page and "60-minute lesson" not in page
    assert [p["slug"] for p in client.get("/s/north-strings/api/packages").get_json()["packages"]] == [
        "lesson-30", "lesson-60"]


def test_a_logged_in_persons_answer_is_never_kept_nor_served_a_kept_one(client, studio, auth, statements):
    from tests.factories import PASSWORD

    day = next_weekday(2)
    _slots(client, day)
    auth.login("student@example.com", PASSWORD)
    statements.clear()
    _slots(client, day)
    assert any("FROM bookings" in s for s in statements)  # computed afresh for them


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_public_answers_read_outside_a_transaction_and_other_pages_inside_one(client, studio, auth):
    """On PostgreSQL a public page's SELECTs run without BEGIN (and so need no closing ROLLBACK); the rest of the
    app keeps its transactions."""
    from psycopg.pq import TransactionStatus

    seen: list[tuple[str, TransactionStatus]] = []

    def record(conn, _cursor, statement, *_args):
        seen.append((statement, conn.connection.dbapi_connection.info.transaction_status))

    event.listen(db.engine, "after_cursor_execute", record)
    try:
        day = next_weekday(2)
        client.get(f"{STUDIO}/packages/lesson-60?resource=piano&date={day}")
        assert seen and all(status == TransactionStatus.IDLE for _s, status in seen)
        seen.clear()
        auth.login("student@example.com", "not the password")  # a form post: its work stays in a transaction
        assert seen and all(status == TransactionStatus.INTRANS for _s, status in seen)
        seen.clear()
        client.get("/login")
        assert all(status == TransactionStatus.INTRANS for _s, status in seen)
    finally:
        event.remove(db.engine, "after_cursor_execute", record)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_kept_answer_costs_one_autocommit_lookup_and_opens_no_session(client, studio, monkeypatch):
    """On PostgreSQL the studio lookup of an anonymous public read goes straight to the driver, in autocommit; when a
    kept answer holds, that lookup is the whole request: the ORM session never begins."""
    import psycopg
    from psycopg.pq import TransactionStatus
    from sqlalchemy.orm import Session

    day = next_weekday(2)
    first = _slots(client, day)
    home = client.get(f"{STUDIO}/").get_data()
    sent: list[tuple[str, TransactionStatus]] = []
    begun: list[Session] = []
    execute = psycopg.Cursor.execute

    def watched(cursor, query, *args, **kwargs):
        result = execute(cursor, query, *args, **kwargs)
        sent.append((str(query), cursor.connection.info.transaction_status))
        return result

    def on_begin(session, _transaction, _connection):
        begun.append(session)

    monkeypatch.setattr(psycopg.Cursor, "execute", watched)
    event.listen(Session, "after_begin", on_begin)
    try:
        assert _slots(client, day) == first
        assert client.get(f"{STUDIO}/").get_data() == home
    finally:
        event.remove(Session, "after_begin", on_begin)
    assert [status for _query, status in sent] == [TransactionStatus.IDLE] * 2  # no transaction left open
    assert all("FROM studios" in query for query, _status in sent)
    assert begun == []


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_public_reads_survive_the_server_closing_every_connection(client, studio, database_url):
    """A database restart or failover closes the pooled connections under a running app: the next public read
    still answers, on a fresh connection."""
    import psycopg

    day = next_weekday(2)
    page = f"{STUDIO}/packages/lesson-60?resource=piano&date={day}"
    first = _slots(client, day)
    assert client.get(page).status_code == 200
    with db.engine.connect(), db.engine.connect():
        pass  # the pool now keeps two idle connections, both about to be closed by the server
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        closed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert closed >= 2
    assert _slots(client, day) == first
    assert client.get(page).status_code == 200
    assert client.get("/s/no-such-studio/api/availability?package=lesson-60&resource=piano").status_code == 404


def test_kept_answers_stay_within_their_byte_budget_however_many_urls_are_asked(app, client, studio, monkeypatch):
    """Every query string is a URL of its own: the bytes kept, not only their number, are bounded."""
    from portal import http

    assert client.get(f"{STUDIO}/?v=0").status_code == 200
    weight = app.extensions["public_answers"].bytes  # one kept page with its headers
    assert weight > 1000
    budget = 3 * weight + weight // 2
    monkeypatch.setattr(http, "ANSWER_BYTES_KEPT", budget)
    app.extensions.pop("public_answers")  # made again, with the smaller budget, on the next request
    for n in range(1, 11):
        assert client.get(f"{STUDIO}/?v={n}").status_code == 200
    kept = app.extensions["public_answers"]
    urls = [key[0] for key in kept._items]
    assert len(kept) == 3 and kept.bytes <= budget, urls
    assert [url.rsplit("=", 1)[1] for url in urls] == ["8", "9", "10"]
