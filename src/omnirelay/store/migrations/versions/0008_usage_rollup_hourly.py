"""hourly and daily usage rollups (totals and latency histograms), backfilled from the existing usage rows

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from omnirelay.store.rollup import GROUP_COLUMNS, backfill

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _group_columns(time: str = "hour") -> list[sa.Column[object]]:
    return [
        sa.Column(time, sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("key_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("status_code", sa.Integer(), autoincrement=False, nullable=False),
    ]


def _create_tier(totals: str, latency: str, time: str) -> None:
    key = (time, *GROUP_COLUMNS[1:])
    op.create_table(
        totals,
        *_group_columns(time),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms_sum", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*key),
        sqlite_with_rowid=False,
    )
    op.create_table(
        latency,
        *_group_columns(time),
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*key, "bucket"),
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    _create_tier("usage_rollup_hourly", "usage_latency_hourly", "hour")
    op.create_index("ix_usage_rollup_account_hour", "usage_rollup_hourly", ["account_id", "hour"])
    _create_tier("usage_rollup_daily", "usage_latency_daily", "day")
    op.create_index("ix_usage_rollup_daily_account_day", "usage_rollup_daily", ["account_id", "day"])
    op.create_table(
        "usage_rollup_compactions",
        sa.Column("day", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("compacted_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    # The rows written before this version, summed with the writer's bucket edges; then every settled day.
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("usage_rollup_compactions")
    op.drop_index("ix_usage_rollup_daily_account_day", table_name="usage_rollup_daily")
    op.drop_table("usage_latency_daily")
    op.drop_table("usage_rollup_daily")
    op.drop_table("usage_latency_hourly")
    op.drop_index("ix_usage_rollup_account_hour", table_name="usage_rollup_hourly")
    op.drop_table("usage_rollup_hourly")
