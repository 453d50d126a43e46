"""drop ix_usage_model_created and ix_usage_channel_created: the console's model and channel views read the rollups

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each relayed call's usage row maintained both (~6k instructions of SQLite's per index per row, together about
    # 1.2 % of a relayed call's CPU). What reads usage by model or channel now reads the hourly and daily rollups;
    # a raw log page filtered by model or channel walks ix_usage_created within its time window instead (PostgreSQL
    # already chose that plan over these two).
    op.drop_index("ix_usage_model_created", table_name="usage_logs")
    op.drop_index("ix_usage_channel_created", table_name="usage_logs")


def downgrade() -> None:
    op.create_index("ix_usage_model_created", "usage_logs", ["model", "created_at"], unique=False)
    op.create_index("ix_usage_channel_created", "usage_logs", ["channel_id", "created_at"], unique=False)
