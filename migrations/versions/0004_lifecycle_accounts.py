"""Life cycles the database enforces, audit actors, ending sessions, confirmed sign-ups, studio locale

- Every enum column gets a CHECK constraint listing its values, so no code path can write a status that does not
  exist. Bookings lose the `rescheduled` and `refunded` statuses, which nothing ever set: a moved lesson stays
  `confirmed` (its moves are in `reschedules`) and refunds are the payment's state.
- `makeup_credits.used_at` goes: nothing wrote it.
- Audit rows name their actor's kind (user, system, job, api_key) and a label.
- Users get a session generation (raising it ends every session) and `email_verified_at` (existing accounts count
  as confirmed: they signed up before confirmation existed).
- `account_tokens` makes emailed links single-use and expiring (the links themselves are signed, not stored).

On SQLite, adding a CHECK constraint recreates the table; the bookings no-overlap triggers are recreated with it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 04:05:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ENUMS = [  # table, column, constraint, values (the models' str_enum CHECKs)
    ("memberships", "role", "ck_memberships_role", ("student", "admin")),
    ("resources", "kind", "ck_resources_resourcekind", ("room", "instrument", "teacher")),
    ("bookings", "status", "ck_bookings_bookingstatus", ("held", "confirmed", "cancelled", "expired")),
    ("payments", "status", "ck_payments_paymentstatus",
     ("pending", "processing", "paid", "failed", "expired", "mismatch", "refunded", "partially_refunded")),
    ("payments", "flag", "ck_payments_paymentflag", ("amount_mismatch", "paid_after_expiry_refunded", "refund_failed")),
    ("refunds", "status", "ck_refunds_refundstatus", ("pending", "succeeded", "failed")),
    ("webhook_events", "status", "ck_webhook_events_eventstatus",
     ("received", "queued", "processing", "retry", "processed", "ignored", "dead")),
]

# The bookings no-overlap triggers of revision 0001, recreated after SQLite rebuilds the table.
SQLITE_OVERLAP_CHECK = """
    SELECT RAISE(ABORT, 'booking_overlap') WHERE EXISTS (
        SELECT 1 FROM bookings AS b
        WHERE b.resource_id = NEW.resource_id AND b.id IS NOT NEW.id
          AND b.status IN ('held', 'confirmed')
          AND b.start_at < NEW.occupied_until AND NEW.start_at < b.occupied_until);
"""
SQLITE_NO_OVERLAP = [
    "CREATE TRIGGER bookings_no_overlap_insert BEFORE INSERT ON bookings "
    "WHEN NEW.status IN ('held', 'confirmed') BEGIN" + SQLITE_OVERLAP_CHECK + "END",
    "CREATE TRIGGER bookings_no_overlap_update BEFORE UPDATE OF resource_id, start_at, occupied_until, status "
    "ON bookings WHEN NEW.status IN ('held', 'confirmed') BEGIN" + SQLITE_OVERLAP_CHECK + "END",
]


def _condition(column: str, values) -> str:
    listed = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({listed})"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _add_enum_checks():
    for table, column, name, values in ENUMS:
        with op.batch_alter_table(table, recreate="auto") as batch_op:
            batch_op.create_check_constraint(op.f(name), sa.text(_condition(column, values)))
    if _sqlite():
        for statement in SQLITE_NO_OVERLAP:
            op.execute(statement)


def _drop_enum_checks():
    for table, _column, name, _values in ENUMS:
        with op.batch_alter_table(table, recreate="auto") as batch_op:
            batch_op.drop_constraint(op.f(name), type_="check")
    if _sqlite():
        for statement in SQLITE_NO_OVERLAP:
            op.execute(statement)


def upgrade():
    op.execute("UPDATE bookings SET status = 'confirmed' WHERE status = 'rescheduled'")
    op.execute("UPDATE bookings SET status = 'cancelled' WHERE status = 'refunded'")
    _add_enum_checks()

    op.create_table(
        "account_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_condition("purpose", ("confirm_email", "reset_password")),
                           name=op.f("ck_account_tokens_tokenpurpose")),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_account_tokens_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_account_tokens_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_tokens")),
    )
    with op.batch_alter_table("account_tokens") as batch_op:
        batch_op.create_index(batch_op.f("ix_account_tokens_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.add_column(sa.Column("actor_kind", sa.String(length=16), nullable=False, server_default="user"))
        batch_op.add_column(sa.Column("actor_label", sa.String(length=254), nullable=False, server_default=""))
        batch_op.create_index("ix_audit_log_studio_created", ["studio_id", "created_at"], unique=False)
        batch_op.create_index("ix_audit_log_target", ["target_type", "target_id"], unique=False)

    with op.batch_alter_table("makeup_credits") as batch_op:
        batch_op.drop_column("used_at")

    with op.batch_alter_table("studios") as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=16), nullable=False, server_default="en_US"))

    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE users SET email_verified_at = created_at")


def downgrade():
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("session_generation")
        batch_op.drop_column("email_verified_at")

    with op.batch_alter_table("studios") as batch_op:
        batch_op.drop_column("locale")

    with op.batch_alter_table("makeup_credits") as batch_op:
        batch_op.add_column(sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_index("ix_audit_log_target")
        batch_op.drop_index("ix_audit_log_studio_created")
        batch_op.drop_column("actor_label")
        batch_op.drop_column("actor_kind")

    with op.batch_alter_table("account_tokens") as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_tokens_user_id"))
    op.drop_table("account_tokens")

    _drop_enum_checks()
