"""Studio admin: versioned configuration, proposals, API keys, no-shows and team invitations

- `config_versions` holds each studio's configuration documents; a partial unique index allows one published
  version per studio. Every existing studio gets version 1, published, made from its current settings and its
  packages in their current order (which is where the order lives from now on: `packages.position` goes).
- `config_proposals` and `api_keys` for changes proposed through the API.
- `studios.config_version` (the published version) and `studios.calendar_version` (grows with every change of
  hours, blackouts or catalogue) say when something cached about a studio is stale.
- Bookings can end `no_show`; account links can invite a studio admin.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:00:00

"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BOOKING_STATUSES = ("held", "confirmed", "cancelled", "expired")
TOKEN_PURPOSES = ("confirm_email", "reset_password")
DEFAULT_COLORS = ("#4b3fa7", "#c8553d")

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


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _replace_check(table: str, name: str, condition: str) -> None:
    with op.batch_alter_table(table, recreate="auto") as batch_op:
        batch_op.drop_constraint(op.f(name), type_="check")
        batch_op.create_check_constraint(op.f(name), sa.text(condition))
    if table == "bookings" and _sqlite():  # SQLite rebuilt the table: its triggers went with it
        for statement in SQLITE_NO_OVERLAP:
            op.execute(statement)


def _first_versions() -> None:
    """Version 1 of every studio, published: its settings as they are, its packages in their order."""
    bind = op.get_bind()
    now = datetime.now(timezone.utc)
    if bind.dialect.name == "sqlite":  # stored as naive UTC text there, as the models' UTCDateTime does
        now = now.replace(tzinfo=None)
    studios = bind.execute(sa.text(
        "SELECT id, name, min_notice_minutes, slot_interval_minutes, buffer_minutes, hold_minutes, "
        "booking_horizon_days, cancel_window_hours, late_cancel_fee_percent, reschedule_lead_hours, "
        "max_reschedules, late_cancel_makeup FROM studios")).mappings().all()
    for studio in studios:
        packages = bind.execute(sa.text("SELECT slug FROM packages WHERE studio_id = :id ORDER BY position, id"),
                                {"id": studio["id"]}).scalars().all()
        document = {
            "branding": {"display_name": studio["name"][:80], "primary_color": DEFAULT_COLORS[0],
                         "accent_color": DEFAULT_COLORS[1], "logo_url": "", "font": "system", "welcome_text": ""},
            "booking": {"min_notice_minutes": studio["min_notice_minutes"],
                        "slot_interval_minutes": studio["slot_interval_minutes"],
                        "buffer_minutes": studio["buffer_minutes"], "hold_minutes": studio["hold_minutes"],
                        "horizon_days": studio["booking_horizon_days"]},
            "policy": {"cancel_window_hours": studio["cancel_window_hours"],
                       "late_cancel_fee_percent": studio["late_cancel_fee_percent"],
                       "reschedule_lead_hours": studio["reschedule_lead_hours"],
                       "max_reschedules": studio["max_reschedules"],
                       "late_cancel_makeup": bool(studio["late_cancel_makeup"])},
            "packages": {slug: {"position": i, "visible": True, "featured": False} for i, slug in enumerate(packages)},
        }
        insert = sa.text(
            "INSERT INTO config_versions (studio_id, version, state, document, base_version, author_kind, author_id, "
            "author_label, note, published_at, updated_at, created_at) VALUES (:studio, 1, 'published', :document, "
            "NULL, 'system', NULL, 'system', 'The settings the studio had before configuration versions.', :now, "
            ":now, :now)").bindparams(sa.bindparam("document", type_=sa.JSON),
                                      sa.bindparam("now", type_=sa.DateTime(timezone=True)))
        bind.execute(insert, {"studio": studio["id"], "document": document, "now": now})
        bind.execute(sa.text("UPDATE studios SET config_version = 1 WHERE id = :id"), {"id": studio["id"]})


def upgrade():
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_api_keys_created_by_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_api_keys_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_studio_id"), ["studio_id"], unique=False)

    op.create_table(
        "config_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=True),
        sa.Column("author_kind", sa.String(length=16), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("author_label", sa.String(length=254), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("state", ("draft", "published", "archived")), name=op.f("ck_config_versions_configstate")),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name=op.f("fk_config_versions_author_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_config_versions_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_versions")),
        sa.UniqueConstraint("studio_id", "version", name=op.f("uq_config_versions_studio_id_version")),
    )
    with op.batch_alter_table("config_versions") as batch_op:
        batch_op.create_index(batch_op.f("ix_config_versions_studio_id"), ["studio_id"], unique=False)
        batch_op.create_index("uq_config_versions_one_published", ["studio_id"], unique=True,
                              sqlite_where=sa.text("state = 'published'"),
                              postgresql_where=sa.text("state = 'published'"))

    op.create_table(
        "config_proposals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("proposer_label", sa.String(length=254), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("draft_version", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("state", ("pending", "approved", "rejected")),
                           name=op.f("ck_config_proposals_proposalstate")),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_config_proposals_api_key_id_api_keys"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["decided_by"], ["users.id"], name=op.f("fk_config_proposals_decided_by_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_config_proposals_studio_id_studios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_proposals")),
    )
    with op.batch_alter_table("config_proposals") as batch_op:
        batch_op.create_index(batch_op.f("ix_config_proposals_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_config_proposals_studio_id"), ["studio_id"], unique=False)

    with op.batch_alter_table("bookings") as batch_op:
        batch_op.add_column(sa.Column("cancelled_by", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("cancel_reason", sa.String(length=200), nullable=True))
    op.execute("UPDATE bookings SET cancelled_by = 'student' WHERE status = 'cancelled'")
    if _sqlite():
        for statement in SQLITE_NO_OVERLAP:
            op.execute("DROP TRIGGER IF EXISTS " + statement.split()[2])
            op.execute(statement)

    with op.batch_alter_table("studios") as batch_op:
        batch_op.add_column(sa.Column("config_version", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("calendar_version", sa.Integer(), nullable=False, server_default="0"))

    _first_versions()
    with op.batch_alter_table("packages") as batch_op:
        batch_op.drop_column("position")

    _replace_check("bookings", "ck_bookings_bookingstatus", _in("status", BOOKING_STATUSES + ("no_show",)))
    _replace_check("account_tokens", "ck_account_tokens_tokenpurpose", _in("purpose", TOKEN_PURPOSES + ("invite",)))


def downgrade():
    op.execute("UPDATE bookings SET status = 'confirmed' WHERE status = 'no_show'")
    op.execute("DELETE FROM account_tokens WHERE purpose = 'invite'")
    _replace_check("account_tokens", "ck_account_tokens_tokenpurpose", _in("purpose", TOKEN_PURPOSES))
    _replace_check("bookings", "ck_bookings_bookingstatus", _in("status", BOOKING_STATUSES))

    with op.batch_alter_table("packages") as batch_op:
        batch_op.add_column(sa.Column("position", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("bookings") as batch_op:
        batch_op.drop_column("cancel_reason")
        batch_op.drop_column("cancelled_by")
    if _sqlite():
        for statement in SQLITE_NO_OVERLAP:
            op.execute("DROP TRIGGER IF EXISTS " + statement.split()[2])
            op.execute(statement)
    with op.batch_alter_table("studios") as batch_op:
        batch_op.drop_column("calendar_version")
        batch_op.drop_column("config_version")

    with op.batch_alter_table("config_proposals") as batch_op:
        batch_op.drop_index(batch_op.f("ix_config_proposals_studio_id"))
        batch_op.drop_index(batch_op.f("ix_config_proposals_state"))
    op.drop_table("config_proposals")
    with op.batch_alter_table("config_versions") as batch_op:
        batch_op.drop_index("uq_config_versions_one_published")
        batch_op.drop_index(batch_op.f("ix_config_versions_studio_id"))
    op.drop_table("config_versions")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_studio_id"))
    op.drop_table("api_keys")
