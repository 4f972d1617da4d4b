"""Bookings version: a counter per resource raised by every change of its bookings

An availability answer can then be reused until the bookings it read change (`portal.http.public(reuse=...)`).
`resources.bookings_version` is raised by the database itself, for every insert, delete and every update of a
booking's resource, span, status or hold expiry, however the change is written (the state machine, an ops action,
a bulk load). On PostgreSQL the trigger is a deferred constraint trigger: it runs when the transaction commits, so
the row lock it takes is held only for the commit itself and never while the transaction still waits on another
one (a booking racing for the same time keeps failing on the no-overlap constraint, not on a deadlock). SQLite
serialises writers, so plain triggers do.

Revision ID: 0012_bookings_version
Revises: 0011_query_speed
Create Date: 2026-12-02 17:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0012_bookings_version"
down_revision = "0011_query_speed"
branch_labels = None
depends_on = None

SPAN_COLUMNS = "resource_id, start_at, occupied_until, status, hold_expires_at"

# Once per resource and transaction is enough (readers only ever see committed values), so a transaction writing
# many bookings of one resource (a bulk load, a weekly series) updates its row once, not once per booking: a
# transaction-local setting remembers which resources it has raised.
PG_FUNCTION = """
CREATE FUNCTION bump_bookings_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    resource integer;
BEGIN
    FOREACH resource IN ARRAY (CASE
        WHEN TG_OP = 'INSERT' THEN ARRAY[NEW.resource_id]
        WHEN TG_OP = 'DELETE' THEN ARRAY[OLD.resource_id]
        ELSE ARRAY[OLD.resource_id, NEW.resource_id] END)
    LOOP
        IF coalesce(current_setting('portal.bookings_version_' || resource, true), '') = '' THEN
            UPDATE resources SET bookings_version = bookings_version + 1 WHERE id = resource;
            PERFORM set_config('portal.bookings_version_' || resource, 'raised', true);
        END IF;
    END LOOP;
    RETURN NULL;
END $$
"""
PG_TRIGGERS = [
    "CREATE CONSTRAINT TRIGGER bookings_version_insert AFTER INSERT OR DELETE ON bookings "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_bookings_version()",
    f"CREATE CONSTRAINT TRIGGER bookings_version_update AFTER UPDATE OF {SPAN_COLUMNS} ON bookings "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_bookings_version()",
]
SQLITE_BUMP = "UPDATE resources SET bookings_version = bookings_version + 1 WHERE id = {row}.resource_id;"
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER bookings_version_insert AFTER INSERT ON bookings BEGIN {SQLITE_BUMP.format(row='NEW')} END",
    f"CREATE TRIGGER bookings_version_delete AFTER DELETE ON bookings BEGIN {SQLITE_BUMP.format(row='OLD')} END",
    f"CREATE TRIGGER bookings_version_update AFTER UPDATE OF {SPAN_COLUMNS} ON bookings BEGIN "
    f"{SQLITE_BUMP.format(row='OLD')} {SQLITE_BUMP.format(row='NEW')} END",
]


def upgrade():
    with op.batch_alter_table("resources") as batch_op:
        batch_op.add_column(sa.Column("bookings_version", sa.Integer(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS bookings_version_update ON bookings")
        op.execute("DROP TRIGGER IF EXISTS bookings_version_insert ON bookings")
        op.execute("DROP FUNCTION IF EXISTS bump_bookings_version()")
    else:
        for name in ("update", "delete", "insert"):
            op.execute(f"DROP TRIGGER IF EXISTS bookings_version_{name}")
    with op.batch_alter_table("resources") as batch_op:
        batch_op.drop_column("bookings_version")
