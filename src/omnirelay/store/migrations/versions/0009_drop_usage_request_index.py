"""drop ix_usage_request: no query reads usage_logs by request id, and every relayed call paid for it

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each usage row inserted maintained this index (~5.6k instructions of SQLite's per row, about 0.6 % of a relayed
    # call's CPU) for no reader: the admin and user views filter by time, key, account, model, channel and status.
    op.drop_index("ix_usage_request", table_name="usage_logs")


def downgrade() -> None:
    op.create_index("ix_usage_request", "usage_logs", ["request_id"], unique=False)
