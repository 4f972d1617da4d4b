"""Weekly lessons, lesson packs and the credit ledger

- `booking_series`: a student's same time and room every week; `bookings.series_id` names a lesson's series.
- `lesson_packs`: packs of lessons in the catalogue.
- `credit_balances` (one locked row per student, studio and lesson length; `balance >= 0` is a CHECK) and
  `credit_ledger` (append-only: a trigger refuses every UPDATE on both PostgreSQL and SQLite).
- `payments.series_id`: a series paid in one Checkout.
- `pack_purchases`: lesson packs bought through Checkout.
- `waitlist_entries`: students waiting for a time, with the offer a freed time becomes.
- make-up lessons already owed (`makeup_credits`) become make-up credits on the ledger, valid 90 days.
- `studios.series_max_weeks`, `waitlist_offer_minutes`, `makeup_valid_days` (published with the configuration).

Revision ID: 0007_series
Revises: 0006_ops
Create Date: 2026-12-02 09:30:00

"""
from datetime import datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0007_series"
down_revision = "0006_ops"
branch_labels = None
depends_on = None

CREDIT_KINDS = ("purchase", "grant", "makeup", "returned", "booking", "expiry", "revoke", "refund")

PG_APPEND_ONLY = [
    """CREATE FUNCTION credit_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'credit_ledger_append_only' USING ERRCODE = 'integrity_constraint_violation'; END $$""",
    "CREATE TRIGGER credit_ledger_no_update BEFORE UPDATE ON credit_ledger "
    "FOR EACH ROW EXECUTE FUNCTION credit_ledger_append_only()",
]
SQLITE_APPEND_ONLY = [
    "CREATE TRIGGER credit_ledger_no_update BEFORE UPDATE ON credit_ledger "
    "BEGIN SELECT RAISE(ABORT, 'credit_ledger_append_only'); END",
]


# The bookings no-overlap triggers of revision 0005, recreated after SQLite rebuilds the table.
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


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _restore_overlap_triggers() -> None:
    """SQLite rebuilt `bookings` (to add a column with a foreign key): its triggers went with the old table."""
    if _sqlite():
        for statement in SQLITE_NO_OVERLAP:
            op.execute("DROP TRIGGER IF EXISTS " + statement.split()[2])
            op.execute(statement)


def _makeup_credits_into_the_ledger() -> None:
    """Make-up lessons owed before the ledger existed become make-up credits (valid 90 days from when they were
    earned), so students can book with them like any credit."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT studio_id, student_id, booking_id, minutes, created_at FROM makeup_credits "
                                "ORDER BY id")).all()
    for studio_id, student_id, booking_id, minutes, created_at in rows:
        if not 0 < minutes <= 480:
            continue
        if isinstance(created_at, str):  # SQLite hands back the stored text
            created_at = datetime.fromisoformat(created_at)
        expires_at = created_at + timedelta(days=90)
        if _sqlite():  # naive UTC text in the models' fixed format
            created_at, expires_at = (value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
                                      for value in (created_at, expires_at))
        key = {"studio": studio_id, "student": student_id, "minutes": minutes}
        balance_id = bind.execute(sa.text("SELECT id FROM credit_balances WHERE studio_id = :studio AND "
                                          "student_id = :student AND minutes = :minutes"), key).scalar()
        if balance_id is None:
            bind.execute(sa.text("INSERT INTO credit_balances (studio_id, student_id, minutes, balance, updated_at) "
                                 "VALUES (:studio, :student, :minutes, 0, :at)"), {**key, "at": created_at})
            balance_id = bind.execute(sa.text("SELECT id FROM credit_balances WHERE studio_id = :studio AND "
                                              "student_id = :student AND minutes = :minutes"), key).scalar()
        bind.execute(sa.text("INSERT INTO credit_ledger (balance_id, student_id, minutes, kind, amount, expires_at, "
                             "booking_id, actor_label, note, studio_id, created_at) VALUES (:balance, :student, "
                             ":minutes, 'makeup', 1, :expires, :booking, 'system', 'Make-up lesson for a late "
                             "cancellation.', :studio, :at)"),
                     {**key, "balance": balance_id, "expires": expires_at, "booking": booking_id, "at": created_at})
        bind.execute(sa.text("UPDATE credit_balances SET balance = balance + 1 WHERE id = :id"), {"id": balance_id})


def upgrade():
    op.create_table(
        "booking_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("local_time", sa.Time(), nullable=False),
        sa.Column("weeks", sa.Integer(), nullable=False),
        sa.Column("paid_with", sa.String(length=16), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("weeks > 0 AND weeks <= 52", name=op.f("ck_booking_series_weeks_range")),
        sa.CheckConstraint("paid_with IN ('checkout', 'credits')", name=op.f("ck_booking_series_paid_with_known")),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"], name=op.f("fk_booking_series_package_id_packages"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["resource_id"], ["resources.id"],
                                name=op.f("fk_booking_series_resource_id_resources"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["student_id"], ["users.id"], name=op.f("fk_booking_series_student_id_users"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_booking_series_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_series")),
    )
    with op.batch_alter_table("booking_series") as batch_op:
        batch_op.create_index(batch_op.f("ix_booking_series_student_id"), ["student_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_booking_series_studio_id"), ["studio_id"], unique=False)

    op.create_table(
        "lesson_packs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("lesson_count", sa.Integer(), nullable=False),
        sa.Column("lesson_minutes", sa.Integer(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("price_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("lesson_count > 0 AND lesson_count <= 200", name=op.f("ck_lesson_packs_count_range")),
        sa.CheckConstraint("lesson_minutes > 0 AND lesson_minutes <= 480", name=op.f("ck_lesson_packs_minutes_range")),
        sa.CheckConstraint("valid_days > 0 AND valid_days <= 1830", name=op.f("ck_lesson_packs_valid_days_range")),
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_lesson_packs_price_non_negative")),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_lesson_packs_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lesson_packs")),
        sa.UniqueConstraint("studio_id", "slug", name=op.f("uq_lesson_packs_studio_id_slug")),
    )
    with op.batch_alter_table("lesson_packs") as batch_op:
        batch_op.create_index(batch_op.f("ix_lesson_packs_studio_id"), ["studio_id"], unique=False)

    op.create_table(
        "credit_balances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("balance", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_credit_balances_balance_non_negative")),
        sa.CheckConstraint("minutes > 0 AND minutes <= 480", name=op.f("ck_credit_balances_minutes_range")),
        sa.ForeignKeyConstraint(["student_id"], ["users.id"], name=op.f("fk_credit_balances_student_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_credit_balances_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_balances")),
        sa.UniqueConstraint("studio_id", "student_id", "minutes",
                            name=op.f("uq_credit_balances_studio_id_student_id_minutes")),
    )
    with op.batch_alter_table("credit_balances") as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_balances_student_id"), ["student_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_balances_studio_id"), ["studio_id"], unique=False)

    op.create_table(
        "credit_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("balance_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Enum(*CREDIT_KINDS, name="creditkind", native_enum=False, create_constraint=True,
                                  length=16), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lot_id", sa.Integer(), nullable=True),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("pack_id", sa.Integer(), nullable=True),
        sa.Column("actor_label", sa.String(length=254), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_credit_ledger_amount_non_zero")),
        sa.ForeignKeyConstraint(["balance_id"], ["credit_balances.id"],
                                name=op.f("fk_credit_ledger_balance_id_credit_balances"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["booking_id"], ["bookings.id"], name=op.f("fk_credit_ledger_booking_id_bookings"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["lot_id"], ["credit_ledger.id"], name=op.f("fk_credit_ledger_lot_id_credit_ledger"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["pack_id"], ["lesson_packs.id"], name=op.f("fk_credit_ledger_pack_id_lesson_packs"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["student_id"], ["users.id"], name=op.f("fk_credit_ledger_student_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_credit_ledger_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_ledger")),
    )
    with op.batch_alter_table("credit_ledger") as batch_op:
        batch_op.create_index("ix_credit_ledger_balance_created", ["balance_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_ledger_booking_id"), ["booking_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_ledger_lot_id"), ["lot_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_ledger_student_id"), ["student_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_ledger_studio_id"), ["studio_id"], unique=False)
    for statement in SQLITE_APPEND_ONLY if _sqlite() else PG_APPEND_ONLY:
        op.execute(statement)

    with op.batch_alter_table("bookings") as batch_op:
        batch_op.add_column(sa.Column("series_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_bookings_series_id_booking_series"), "booking_series",
                                    ["series_id"], ["id"], ondelete="RESTRICT")
        batch_op.create_index(batch_op.f("ix_bookings_series_id"), ["series_id"], unique=False)
    _restore_overlap_triggers()
    with op.batch_alter_table("payments") as batch_op:
        batch_op.add_column(sa.Column("series_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_payments_series_id_booking_series"), "booking_series",
                                    ["series_id"], ["id"], ondelete="RESTRICT")
        batch_op.create_index(batch_op.f("ix_payments_series_id"), ["series_id"], unique=False)

    op.create_table(
        "pack_purchases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("pack_id", sa.Integer(), nullable=False),
        sa.Column("checkout_session_id", sa.String(length=255), nullable=False),
        sa.Column("checkout_url", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.Enum("pending", "paid", "expired", "mismatch", name="packpurchasestatus",
                                    native_enum=False, create_constraint=True, length=16), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_pack_purchases_amount_non_negative")),
        sa.ForeignKeyConstraint(["pack_id"], ["lesson_packs.id"], name=op.f("fk_pack_purchases_pack_id_lesson_packs"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["student_id"], ["users.id"], name=op.f("fk_pack_purchases_student_id_users"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_pack_purchases_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pack_purchases")),
        sa.UniqueConstraint("checkout_session_id", name=op.f("uq_pack_purchases_checkout_session_id")),
    )
    with op.batch_alter_table("pack_purchases") as batch_op:
        batch_op.create_index(batch_op.f("ix_pack_purchases_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_pack_purchases_student_id"), ["student_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pack_purchases_studio_id"), ["studio_id"], unique=False)

    op.create_table(
        "waitlist_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Enum("waiting", "offered", "claimed", "expired", "cancelled", name="waitliststatus",
                                    native_enum=False, create_constraint=True, length=16), nullable=False),
        sa.Column("offer_booking_id", sa.Integer(), nullable=True),
        sa.Column("offer_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("window_end > window_start", name=op.f("ck_waitlist_entries_window_order")),
        sa.ForeignKeyConstraint(["offer_booking_id"], ["bookings.id"],
                                name=op.f("fk_waitlist_entries_offer_booking_id_bookings"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"], name=op.f("fk_waitlist_entries_package_id_packages"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["resource_id"], ["resources.id"],
                                name=op.f("fk_waitlist_entries_resource_id_resources"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["student_id"], ["users.id"], name=op.f("fk_waitlist_entries_student_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_waitlist_entries_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_entries")),
    )
    with op.batch_alter_table("waitlist_entries") as batch_op:
        batch_op.create_index("ix_waitlist_entries_queue", ["status", "resource_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_waitlist_entries_student_id"), ["student_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_waitlist_entries_studio_id"), ["studio_id"], unique=False)

    _makeup_credits_into_the_ledger()

    with op.batch_alter_table("studios") as batch_op:
        batch_op.add_column(sa.Column("series_max_weeks", sa.Integer(), nullable=False, server_default="16"))
        batch_op.add_column(sa.Column("waitlist_offer_minutes", sa.Integer(), nullable=False,
                                      server_default="120"))
        batch_op.add_column(sa.Column("makeup_valid_days", sa.Integer(), nullable=False, server_default="90"))
        batch_op.create_check_constraint(op.f("ck_studios_series_weeks_range"),
                                         sa.text("series_max_weeks > 0 AND series_max_weeks <= 52"))
        batch_op.create_check_constraint(op.f("ck_studios_offer_at_least_15"), sa.text("waitlist_offer_minutes >= 15"))
        batch_op.create_check_constraint(op.f("ck_studios_makeup_days_positive"), sa.text("makeup_valid_days > 0"))


def downgrade():
    with op.batch_alter_table("studios") as batch_op:
        batch_op.drop_constraint(op.f("ck_studios_makeup_days_positive"), type_="check")
        batch_op.drop_constraint(op.f("ck_studios_offer_at_least_15"), type_="check")
        batch_op.drop_constraint(op.f("ck_studios_series_weeks_range"), type_="check")
        batch_op.drop_column("makeup_valid_days")
        batch_op.drop_column("waitlist_offer_minutes")
        batch_op.drop_column("series_max_weeks")
    with op.batch_alter_table("payments") as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_series_id"))
        batch_op.drop_constraint(batch_op.f("fk_payments_series_id_booking_series"), type_="foreignkey")
        batch_op.drop_column("series_id")
    with op.batch_alter_table("bookings") as batch_op:
        batch_op.drop_index(batch_op.f("ix_bookings_series_id"))
        batch_op.drop_constraint(batch_op.f("fk_bookings_series_id_booking_series"), type_="foreignkey")
        batch_op.drop_column("series_id")
    _restore_overlap_triggers()
    if not _sqlite():
        op.execute("DROP TRIGGER IF EXISTS credit_ledger_no_update ON credit_ledger")
        op.execute("DROP FUNCTION IF EXISTS credit_ledger_append_only()")
    op.drop_table("waitlist_entries")
    op.drop_table("pack_purchases")
    op.drop_table("credit_ledger")
    op.drop_table("credit_balances")
    op.drop_table("lesson_packs")
    op.drop_table("booking_series")
