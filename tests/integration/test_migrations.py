"""Migrations build the schema from empty, tear it down, and agree with the models."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from portal.extensions import db
from tests.conftest import create_pg_database, drop_pg_database

EXPECTED_TABLES = {
    "studios", "users", "memberships", "resources", "packages", "availability_rules", "blackouts", "payments",
    "refunds", "webhook_events", "webhook_signatures", "reschedules", "makeup_credits", "notification_log",
    "account_tokens", "config_versions", "config_proposals", "api_keys", "ops_resolutions", "drift_findings",
    "bookings", "audit_log", "alembic_version", "booking_series", "lesson_packs", "credit_balances", "credit_ledger",
    "waitlist_entries", "pack_purchases", "resource_booking_totals", "resource_booking_days",
}
#: A studio with a user, a room and a 60-minute lesson, as rows written before a migration (`:at` their time).
STUDIO_ROWS = (
    "INSERT INTO studios (id, slug, name, timezone, currency, active, buffer_minutes, min_notice_minutes, "
    "slot_interval_minutes, booking_horizon_days, hold_minutes, created_at) VALUES (1, 's', 'S', "
    "'America/New_York', 'usd', true, 0, 0, 30, 30, 30, :at)",
    "INSERT INTO users (id, email, name, password_hash, is_platform_ops, active, created_at) VALUES "
    "(1, 'a@example.com', 'A', '!', false, true, :at)",
    "INSERT INTO resources (id, slug, name, kind, capacity_minutes, active, studio_id, created_at) VALUES "
    "(1, 'piano', 'Piano', 'room', 480, true, 1, :at)",
    "INSERT INTO packages (id, slug, name, description, duration_minutes, price_minor, currency, active, "
    "studio_id, created_at) VALUES (1, 'lesson-60', 'L', '', 60, 6500, 'usd', true, 1, :at)",
)


@pytest.fixture
def fresh_database(request, tmp_path):
    """A brand-new empty database of the requested kind."""
    if request.param == "postgres":
        url = create_pg_database("portal_migrations")
        yield url
        drop_pg_database(url)
    else:
        yield "sqlite:///" + str(tmp_path / "fresh.sqlite3")


def _app(url, tmp_path):
    from portal import create_app
    from portal.config import load_settings

    return create_app(load_settings(env={"PORTAL_ENV": "test", "DATABASE_URL": url,
                                         "PORTAL_INSTANCE_PATH": str(tmp_path)}))


def _diff(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


@pytest.mark.parametrize("fresh_database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_upgrade_from_empty_builds_every_table_and_the_overlap_guard(fresh_database, tmp_path):
    app = _app(fresh_database, tmp_path)
    with app.app_context():
        upgrade()
        assert set(inspect(db.engine).get_table_names()) == EXPECTED_TABLES
        if db.engine.dialect.name == "postgresql":
            kinds = db.session.execute(text(
                "SELECT contype FROM pg_constraint WHERE conname = 'ex_bookings_no_overlap'")).scalars().all()
            assert kinds == ["x"]  # an exclusion constraint
        else:
            triggers = db.session.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")).scalars().all()
            assert triggers == ["bookings_no_overlap_insert", "bookings_no_overlap_update",
                                "bookings_version_delete", "bookings_version_insert", "bookings_version_update",
                                "credit_ledger_no_update"]
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("fresh_database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_models_and_migrations_agree(fresh_database, tmp_path):
    app = _app(fresh_database, tmp_path)
    with app.app_context():
        upgrade()
    assert _diff(app) == []
    with app.app_context():
        db.engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("fresh_database", ["postgres"], indirect=True)
def test_downgrade_to_base_on_postgres_leaves_nothing_behind(fresh_database, tmp_path):
    app = _app(fresh_database, tmp_path)
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
        upgrade()  # and back up again, cleanly
        assert set(inspect(db.engine).get_table_names()) == EXPECTED_TABLES
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("fresh_database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_policy_checks_exist_in_the_migrated_schema(fresh_database, tmp_path):
    from sqlalchemy.exc import IntegrityError

    app = _app(fresh_database, tmp_path)
    with app.app_context():
        upgrade()
        names = {c["name"] for c in inspect(db.engine).get_check_constraints("studios")}
        assert {"ck_studios_fee_percent_range", "ck_studios_lead_non_negative"} <= names
        with pytest.raises(IntegrityError):
            db.session.execute(text("INSERT INTO studios (slug, name, timezone, currency, active, buffer_minutes, "
                                    "min_notice_minutes, slot_interval_minutes, booking_horizon_days, hold_minutes, "
                                    "late_cancel_fee_percent, created_at) VALUES ('x', 'x', 'UTC', 'usd', true, 0, "
                                    "0, 30, 30, 30, 150, CURRENT_TIMESTAMP)"))
        db.session.rollback()
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("fresh_database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_make_up_lessons_owed_before_the_ledger_become_usable_credits(fresh_database, tmp_path):
    app = _app(fresh_database, tmp_path)
    earned = "2026-06-01 12:00:00"
    with app.app_context():
        upgrade(revision="0006_ops")
        for statement in (
            *STUDIO_ROWS,
            "INSERT INTO bookings (id, student_id, package_id, resource_id, start_at, end_at, occupied_until, status, "
            "price_minor, currency, updated_at, studio_id, created_at) VALUES (1, 1, 1, 1, :at, :end, :end, "
            "'cancelled', 6500, 'usd', :at, 1, :at)",
            "INSERT INTO makeup_credits (id, student_id, booking_id, minutes, studio_id, created_at) VALUES "
            "(1, 1, 1, 60, 1, :at)",
        ):
            db.session.execute(text(statement), {"at": earned + "+00:00" if db.engine.dialect.name == "postgresql"
                                                 else earned, "end": "2026-06-01 13:00:00+00:00"
                                                 if db.engine.dialect.name == "postgresql" else "2026-06-01 13:00:00"})
        db.session.commit()
        upgrade()
        from portal import tenancy
        from portal.models import CreditEntry, CreditKind
        from portal.services import credits

        with tenancy.scoped(1):
            assert credits.usable(1, 60) == 1 == credits.ledger_sum(1)
            entry = db.session.scalar(db.select(CreditEntry))
            assert (entry.kind, entry.amount, entry.booking_id) == (CreditKind.MAKEUP, 1, 1)
            assert entry.expires_at.isoformat() == "2026-08-30T12:00:00+00:00"
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("fresh_database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_the_booking_totals_start_from_the_bookings_there_are(fresh_database, tmp_path):
    from portal.services import booking_totals
    from tests.observability.test_booking_totals import stored_totals

    app = _app(fresh_database, tmp_path)
    postgres = fresh_database.startswith("postgresql")
    with app.app_context():
        upgrade(revision="0009_observability")
        for statement in STUDIO_ROWS:
            db.session.execute(text(statement), {"at": "2026-06-01 12:00:00" + ("+00:00" if postgres else "")})
        # 01:00 UTC is still the evening before in New York: a lesson counts on the day of its start in UTC
        for n, (start, status, penalty) in enumerate((("2026-06-01 22:30:00", "confirmed", None),
                                                      ("2026-06-02 01:00:00", "confirmed", None),
                                                      ("2026-06-02 03:00:00", "cancelled", "late_cancel"),
                                                      ("2026-06-02 05:00:00", "cancelled", None),
                                                      ("2026-06-02 07:00:00", "held", None)), start=1):
            end = start[:11] + f"{int(start[11:13]) + 1:02d}" + start[13:]
            db.session.execute(text(
                "INSERT INTO bookings (id, student_id, package_id, resource_id, start_at, end_at, occupied_until, "
                "status, price_minor, currency, updated_at, studio_id, created_at, penalty_reason) VALUES "
                "(:id, 1, 1, 1, :start, :end, :end, :status, 6500, 'usd', :start, 1, :start, :penalty)"),
                {"id": n, "start": start + ("+00:00" if postgres else ""), "end": end + ("+00:00" if postgres else ""),
                 "status": status, "penalty": penalty})
        db.session.commit()
        upgrade()
        totals, days = stored_totals()
        assert totals == {(1, 1): (2, 1)}
        assert {day.isoformat(): count for (day, _r, _p), count in days.items()} == {"2026-06-01": 1,
                                                                                      "2026-06-02": 1}
        assert (totals, days) == booking_totals.recount()
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("fresh_database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_the_database_raises_a_resources_bookings_version_on_every_change_of_its_bookings(fresh_database, tmp_path):
    app = _app(fresh_database, tmp_path)
    postgres = fresh_database.startswith("postgresql")
    stamp = "+00:00" if postgres else ""
    with app.app_context():
        upgrade()
        for statement in STUDIO_ROWS:
            db.session.execute(text(statement), {"at": "2026-06-01 12:00:00" + stamp})
        db.session.execute(text(
            "INSERT INTO resources (id, slug, name, kind, capacity_minutes, active, studio_id, created_at) VALUES "
            "(2, 'drums', 'Drums', 'room', 480, true, 1, :at)"), {"at": "2026-06-01 12:00:00" + stamp})
        db.session.commit()

        def versions() -> dict[int, int]:
            return dict(db.session.execute(text("SELECT id, bookings_version FROM resources")).all())

        def changed(statement: str, **values) -> dict[int, int]:
            before = versions()
            db.session.execute(text(statement), values)
            db.session.commit()
            after = versions()
            return {rid: after[rid] - before[rid] for rid in after}

        inserted = changed(
            "INSERT INTO bookings (id, student_id, package_id, resource_id, start_at, end_at, occupied_until, "
            "status, hold_expires_at, price_minor, currency, updated_at, studio_id, created_at) VALUES "
            "(1, 1, 1, 1, :start, :end, :end, 'held', :expires, 6500, 'usd', :start, 1, :start)",
            start="2026-06-02 15:00:00" + stamp, end="2026-06-02 16:00:00" + stamp,
            expires="2026-06-01 12:30:00" + stamp)
        assert inserted == {1: 1, 2: 0}
        assert changed("UPDATE bookings SET status = 'confirmed' WHERE id = 1")[1] >= 1
        assert changed("UPDATE bookings SET updated_at = updated_at WHERE id = 1") == {1: 0, 2: 0}
        moved = changed("UPDATE bookings SET resource_id = 2 WHERE id = 1")
        assert moved[1] >= 1 and moved[2] >= 1  # the time is free on one and taken on the other
        assert changed("DELETE FROM bookings WHERE id = 1") == {1: 0, 2: 1}
        if postgres:  # raised when the transaction commits, so a waiting writer never holds the row lock
            db.session.execute(text("UPDATE resources SET bookings_version = 0"))
            db.session.commit()
            db.session.execute(text(
                "INSERT INTO bookings (id, student_id, package_id, resource_id, start_at, end_at, occupied_until, "
                "status, price_minor, currency, updated_at, studio_id, created_at) VALUES "
                "(2, 1, 1, 1, :start, :end, :end, 'confirmed', 6500, 'usd', :start, 1, :start)"),
                {"start": "2026-06-03 15:00:00" + stamp, "end": "2026-06-03 16:00:00" + stamp})
            assert versions()[1] == 0
            db.session.execute(text(
                "INSERT INTO bookings (id, student_id, package_id, resource_id, start_at, end_at, occupied_until, "
                "status, price_minor, currency, updated_at, studio_id, created_at) VALUES "
                "(3, 1, 1, 1, :start, :end, :end, 'confirmed', 6500, 'usd', :start, 1, :start)"),
                {"start": "2026-06-04 15:00:00" + stamp, "end": "2026-06-04 16:00:00" + stamp})
            db.session.commit()
            assert versions()[1] == 1  # once per transaction: a bulk load does not rewrite the row per booking
            assert changed("UPDATE bookings SET status = 'cancelled' WHERE id = 2") == {1: 1, 2: 0}
        db.session.remove()
        db.engine.dispose()
