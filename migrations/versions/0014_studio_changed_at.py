"""Studio changed at: when anything of a studio's row last changed

The public pages that depend on the studio row alone (the studio page, the catalogue and configuration answers)
send it as `Last-Modified` (`portal.http.public(modified=...)`). Existing rows start at the time of the upgrade:
what they showed before is unknown, so the upgrade is the earliest time that is certainly not too early. A row
written by plain SQL without it gets the time of its insert.

Revision ID: 0014_studio_changed_at
Revises: 0013_held_expiry
Create Date: 2026-12-03 13:00:00

"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0014_studio_changed_at"
down_revision = "0013_held_expiry"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("studios") as batch_op:
        batch_op.add_column(sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    now = datetime.now(timezone.utc)
    if bind.dialect.name == "sqlite":  # stored as naive UTC text there, as the models' UTCDateTime does
        now = now.replace(tzinfo=None)
    bind.execute(sa.text("UPDATE studios SET changed_at = :now"), {"now": now})
    with op.batch_alter_table("studios") as batch_op:
        batch_op.alter_column("changed_at", existing_type=sa.DateTime(timezone=True), nullable=False,
                              server_default=sa.func.now())


def downgrade():
    with op.batch_alter_table("studios") as batch_op:
        batch_op.drop_column("changed_at")
