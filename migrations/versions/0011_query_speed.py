"""Query speed: booking totals for the metrics, and indexes for the ops checks and the live-booking figures

- `resource_booking_totals` (confirmed and late-cancelled bookings, all time, per resource and package) and
  `resource_booking_days` (confirmed bookings per day of their start in UTC, resource and package): kept by the
  booking state machine, filled here from the bookings there are.
- `ix_bookings_live_span`: live bookings by resource and start (partial; on PostgreSQL with the span's end and the
  id), which the overlap check probes without reading table rows.
- `ix_bookings_held`: the held bookings' ids (partial), where paid-but-unconfirmed starts.
- `ix_bookings_status_start`: bookings by status and start, covering (on PostgreSQL) the resource, end and hold
  expiry: the live bookings starting soon, counted at each scrape.
- `ix_payments_settled_booking`: the bookings of settled payments (partial), which the confirmed-without-payment
  check asks of each recently confirmed booking without reading table rows.
- `ix_bookings_status_resource` goes: the totals replace the all-time count it served.

Revision ID: 0011_query_speed
Revises: 0010_credit_refunds
Create Date: 2026-12-02 13:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0011_query_speed"
down_revision = "0010_credit_refunds"
branch_labels = None
depends_on = None

LIVE = "status IN ('held', 'confirmed')"
HELD = "status = 'held'"
SETTLED = "status IN ('paid', 'partially_refunded', 'refunded')"


def _summary_table(name: str, *columns: sa.Column, key: list[str]):
    op.create_table(
        name,
        *columns,
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("confirmed", sa.Integer(), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"], name=op.f(f"fk_{name}_package_id_packages"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["resource_id"], ["resources.id"], name=op.f(f"fk_{name}_resource_id_resources"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f(f"fk_{name}_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint(*key, name=op.f(f"pk_{name}")),
    )
    with op.batch_alter_table(name) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{name}_studio_id"), ["studio_id"], unique=False)


def upgrade():
    _summary_table("resource_booking_totals", sa.Column("late_cancels", sa.Integer(), nullable=False),
                   key=["resource_id", "package_id"])
    _summary_table("resource_booking_days", sa.Column("day", sa.Date(), nullable=False),
                   key=["day", "resource_id", "package_id"])
    start_day = ("(start_at AT TIME ZONE 'UTC')::date" if op.get_bind().dialect.name == "postgresql"
                 else "date(start_at)")
    op.execute("""
        INSERT INTO resource_booking_totals (studio_id, resource_id, package_id, confirmed, late_cancels)
        SELECT studio_id, resource_id, package_id, SUM(CASE WHEN status = 'confirmed' THEN 1 ELSE 0 END),
               SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END)
        FROM bookings WHERE status = 'confirmed' OR (status = 'cancelled' AND penalty_reason = 'late_cancel')
        GROUP BY studio_id, resource_id, package_id""")
    op.execute(f"""
        INSERT INTO resource_booking_days (studio_id, day, resource_id, package_id, confirmed)
        SELECT studio_id, {start_day}, resource_id, package_id, COUNT(*)
        FROM bookings WHERE status = 'confirmed'
        GROUP BY studio_id, {start_day}, resource_id, package_id""")
    with op.batch_alter_table("bookings") as batch_op:
        batch_op.drop_index("ix_bookings_status_resource")
        batch_op.create_index("ix_bookings_live_span", ["resource_id", "start_at"], unique=False,
                              postgresql_include=["occupied_until", "id"], postgresql_where=sa.text(LIVE),
                              sqlite_where=sa.text(LIVE))
        batch_op.create_index("ix_bookings_held", ["id"], unique=False, postgresql_where=sa.text(HELD),
                              sqlite_where=sa.text(HELD))
        batch_op.create_index("ix_bookings_status_start", ["status", "start_at"], unique=False,
                              postgresql_include=["resource_id", "end_at", "hold_expires_at"])
    with op.batch_alter_table("payments") as batch_op:
        batch_op.create_index("ix_payments_settled_booking", ["booking_id"], unique=False,
                              postgresql_where=sa.text(SETTLED), sqlite_where=sa.text(SETTLED))


def downgrade():
    with op.batch_alter_table("payments") as batch_op:
        batch_op.drop_index("ix_payments_settled_booking")
    with op.batch_alter_table("bookings") as batch_op:
        batch_op.drop_index("ix_bookings_status_start")
        batch_op.drop_index("ix_bookings_held")
        batch_op.drop_index("ix_bookings_live_span")
        batch_op.create_index("ix_bookings_status_resource", ["status", "resource_id", "package_id",
                                                              "penalty_reason"], unique=False)
    for name in ("resource_booking_days", "resource_booking_totals"):
        with op.batch_alter_table(name) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{name}_studio_id"))
        op.drop_table(name)
