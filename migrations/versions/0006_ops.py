"""Ops console: resolutions, drift findings, webhook events findable by their Stripe object

- `ops_resolutions`: items of a reconciliation query settled by a person, with the reason.
- `drift_findings`: what the Stripe drift job found that the portal missed or disagrees with.
- `webhook_events.object_id` and `intent_id` (`data.object.id` of the payload, and the PaymentIntent it belongs
  to; filled in for existing events) and an index on
  `refunds.status`, and one on `bookings.start_at`, so the reconciliation queries, the ops search and date
  ranges read indexes, not whole tables or payloads.
- `refunds.retries`: a refund ops send again is a new refund at Stripe, under a new idempotency key.

Revision ID: 0006_ops
Revises: 0005
Create Date: 2026-12-02 08:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0006_ops"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ops_resolutions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query", sa.String(length=32), nullable=False),
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_label", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_ops_resolutions_actor_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_ops_resolutions_studio_id_studios"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_resolutions")),
        sa.UniqueConstraint("query", "entity_type", "entity_id",
                            name=op.f("uq_ops_resolutions_query_entity_type_entity_id")),
    )
    with op.batch_alter_table("ops_resolutions") as batch_op:
        batch_op.create_index(batch_op.f("ix_ops_resolutions_studio_id"), ["studio_id"], unique=False)

    op.create_table(
        "drift_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("provider_object_id", sa.String(length=255), nullable=False),
        sa.Column("studio_id", sa.Integer(), nullable=True),
        sa.Column("payment_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_drift_findings_payment_id_payments"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["studio_id"], ["studios.id"], name=op.f("fk_drift_findings_studio_id_studios"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_findings")),
        sa.UniqueConstraint("kind", "provider_object_id", name=op.f("uq_drift_findings_kind_provider_object_id")),
    )
    with op.batch_alter_table("drift_findings") as batch_op:
        batch_op.create_index(batch_op.f("ix_drift_findings_payment_id"), ["payment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_drift_findings_studio_id"), ["studio_id"], unique=False)
        batch_op.create_index("ix_drift_findings_open", ["detected_at"], unique=False,
                              postgresql_where=sa.text("resolved_at IS NULL"),
                              sqlite_where=sa.text("resolved_at IS NULL"))

    with op.batch_alter_table("bookings") as batch_op:
        batch_op.create_index("ix_bookings_start_at", ["start_at"], unique=False)
        batch_op.create_index("ix_bookings_status_updated", ["status", "updated_at"], unique=False)
    with op.batch_alter_table("refunds") as batch_op:
        batch_op.create_index(batch_op.f("ix_refunds_status"), ["status"], unique=False)
        batch_op.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_refunds_external", ["created_at"], unique=False,
                              postgresql_where=sa.text("reason = 'external'"),
                              sqlite_where=sa.text("reason = 'external'"))

    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.add_column(sa.Column("object_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("intent_id", sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_webhook_events_object_id"), ["object_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_events_intent_id"), ["intent_id"], unique=False)
    events = sa.table("webhook_events", sa.column("id", sa.Integer), sa.column("payload", sa.JSON),
                      sa.column("object_id", sa.String), sa.column("intent_id", sa.String))
    bind = op.get_bind()
    for event_id, payload in bind.execute(sa.select(events.c.id, events.c.payload)).all():
        found = ((payload or {}).get("data") or {}).get("object") or {}
        object_id = found.get("id") if isinstance(found.get("id"), str) else None
        intent = object_id if found.get("object") == "payment_intent" else found.get("payment_intent")
        bind.execute(events.update().where(events.c.id == event_id).values(
            object_id=object_id[:255] if object_id else None,
            intent_id=intent[:255] if isinstance(intent, str) else None))


def downgrade():
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_events_intent_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_events_object_id"))
        batch_op.drop_column("intent_id")
        batch_op.drop_column("object_id")
    with op.batch_alter_table("bookings") as batch_op:
        batch_op.drop_index("ix_bookings_status_updated")
        batch_op.drop_index("ix_bookings_start_at")
    with op.batch_alter_table("refunds") as batch_op:
        batch_op.drop_index("ix_refunds_external")
        batch_op.drop_column("retries")
        batch_op.drop_index(batch_op.f("ix_refunds_status"))
    with op.batch_alter_table("drift_findings") as batch_op:
        batch_op.drop_index("ix_drift_findings_open")
        batch_op.drop_index(batch_op.f("ix_drift_findings_studio_id"))
        batch_op.drop_index(batch_op.f("ix_drift_findings_payment_id"))
    op.drop_table("drift_findings")
    with op.batch_alter_table("ops_resolutions") as batch_op:
        batch_op.drop_index(batch_op.f("ix_ops_resolutions_studio_id"))
    op.drop_table("ops_resolutions")
