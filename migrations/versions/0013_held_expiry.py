"""Held bookings by expiry

`ix_bookings_hold_expiry` (partial: held bookings only) lets the unreleased-holds check, run at every metrics scrape,
find the holds long past their expiry without reading every held booking's row.

Revision ID: 0013_held_expiry
Revises: 0012_bookings_version
Create Date: 2026-12-02 18:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0013_held_expiry"
down_revision = "0012_bookings_version"
branch_labels = None
depends_on = None

HELD = "status = 'held'"


def upgrade():
    with op.batch_alter_table("bookings") as batch_op:
        batch_op.create_index("ix_bookings_hold_expiry", ["hold_expires_at"], unique=False,
                              postgresql_where=sa.text(HELD), sqlite_where=sa.text(HELD))


def downgrade():
    with op.batch_alter_table("bookings") as batch_op:
        batch_op.drop_index("ix_bookings_hold_expiry")
