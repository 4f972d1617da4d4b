"""Credit refunds: the unused credits of a lesson pack bought through Checkout refunded in money

- `refunds.pack_purchase_id`: a refund is of a booking's payment or of a pack purchase (exactly one of the two,
  a CHECK), so pack refunds go through the same job, webhook handling, retries and ops queries.
- `pack_purchases.lot_id`: the ledger entry holding the pack's credits (filled for packs already paid), and an
  index on `pack_purchases.payment_intent_id` so Stripe's refund events find their purchase.
- `drift_findings.pack_purchase_id`: a difference from Stripe about a pack's Checkout Session.

Revision ID: 0010_credit_refunds
Revises: 0009_observability
Create Date: 2026-12-02 13:10:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0010_credit_refunds"
down_revision = "0009_observability"
branch_labels = None
depends_on = None

EXTERNAL = sa.text("reason = 'external'")


def upgrade():
    # Dropped around the batch (SQLite rebuilds the table, and its partial index must keep its WHERE).
    op.drop_index("ix_refunds_external", table_name="refunds")
    with op.batch_alter_table("refunds") as batch_op:
        batch_op.alter_column("payment_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("pack_purchase_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_refunds_pack_purchase_id_pack_purchases"), "pack_purchases",
                                    ["pack_purchase_id"], ["id"], ondelete="RESTRICT")
        batch_op.create_index(batch_op.f("ix_refunds_pack_purchase_id"), ["pack_purchase_id"], unique=False)
        batch_op.create_check_constraint(batch_op.f("ck_refunds_one_source"),
                                         "(payment_id IS NULL) <> (pack_purchase_id IS NULL)")
    op.create_index("ix_refunds_external", "refunds", ["created_at"], unique=False, postgresql_where=EXTERNAL,
                    sqlite_where=EXTERNAL)

    with op.batch_alter_table("pack_purchases") as batch_op:
        batch_op.add_column(sa.Column("lot_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_pack_purchases_lot_id_credit_ledger"), "credit_ledger",
                                    ["lot_id"], ["id"], ondelete="SET NULL")
        batch_op.create_unique_constraint(batch_op.f("uq_pack_purchases_lot_id"), ["lot_id"])
        batch_op.create_index(batch_op.f("ix_pack_purchases_payment_intent_id"), ["payment_intent_id"],
                              unique=False)
    # A paid pack's credits were added in the transaction that marked it paid: the purchase entry of that moment.
    op.execute("UPDATE pack_purchases SET lot_id = (SELECT MIN(l.id) FROM credit_ledger l "
               "WHERE l.kind = 'purchase' AND l.pack_id = pack_purchases.pack_id "
               "AND l.student_id = pack_purchases.student_id AND l.studio_id = pack_purchases.studio_id "
               "AND l.created_at = pack_purchases.paid_at) WHERE status = 'paid'")

    with op.batch_alter_table("drift_findings") as batch_op:
        batch_op.add_column(sa.Column("pack_purchase_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_drift_findings_pack_purchase_id_pack_purchases"),
                                    "pack_purchases", ["pack_purchase_id"], ["id"], ondelete="SET NULL")
        batch_op.create_index(batch_op.f("ix_drift_findings_pack_purchase_id"), ["pack_purchase_id"],
                              unique=False)


def downgrade():
    with op.batch_alter_table("drift_findings") as batch_op:
        batch_op.drop_index(batch_op.f("ix_drift_findings_pack_purchase_id"))
        batch_op.drop_constraint(batch_op.f("fk_drift_findings_pack_purchase_id_pack_purchases"),
                                 type_="foreignkey")
        batch_op.drop_column("pack_purchase_id")
    with op.batch_alter_table("pack_purchases") as batch_op:
        batch_op.drop_index(batch_op.f("ix_pack_purchases_payment_intent_id"))
        batch_op.drop_constraint(batch_op.f("uq_pack_purchases_lot_id"), type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_pack_purchases_lot_id_credit_ledger"), type_="foreignkey")
        batch_op.drop_column("lot_id")
    op.execute("DELETE FROM refunds WHERE pack_purchase_id IS NOT NULL")
    op.drop_index("ix_refunds_external", table_name="refunds")
    with op.batch_alter_table("refunds") as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_refunds_one_source"), type_="check")
        batch_op.drop_index(batch_op.f("ix_refunds_pack_purchase_id"))
        batch_op.drop_constraint(batch_op.f("fk_refunds_pack_purchase_id_pack_purchases"), type_="foreignkey")
        batch_op.drop_column("pack_purchase_id")
        batch_op.alter_column("payment_id", existing_type=sa.Integer(), nullable=False)
    op.create_index("ix_refunds_external", "refunds", ["created_at"], unique=False, postgresql_where=EXTERNAL,
                    sqlite_where=EXTERNAL)
