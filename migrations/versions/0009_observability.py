"""Observability: an index covering the metrics' per-resource booking figures

`bookings (status, resource_id, package_id, penalty_reason)`: the collector behind `/metrics` counts confirmed and
late-cancelled bookings per resource with their minutes from this index alone (an index-only scan), instead of
reading every booking row at each scrape.

Revision ID: 0009_observability
Revises: 0007_series
Create Date: 2026-12-02 09:50:00

"""
from alembic import op

revision = "0009_observability"
down_revision = "0007_series"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_bookings_status_resource", "bookings",
                    ["status", "resource_id", "package_id", "penalty_reason"])


def downgrade():
    op.drop_index("ix_bookings_status_resource", table_name="bookings")
