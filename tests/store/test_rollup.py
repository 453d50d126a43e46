"""The hourly rollups agree with the usage rows they sum, and the views built on them with views of the rows.

Rows go in through the real batch writer (as the relay queues them), spread over three days with missing keys
and channels, errors and a long latency tail; then the rollup tables, the aggregates and the summary are compared
with direct aggregations of ``usage_logs``: counts, tokens and cost exactly, latency percentiles within the
histogram's buckets.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import admin_repo, console_repo, usage_stats
from omnirelay.store.admin_repo import UsageFilter, percentile
from omnirelay.store.db import create_engine, migrate, sessionmaker
from omnirelay.store.models import Account, Task, UsageLog
from omnirelay.store.rollup import (
    DAY_S,
    HOUR_S,
    LATENCY_EDGES,
    RECENT_DAYS,
    SETTLE_S,
    TOTAL_COLUMNS,
    UsageLatency,
    UsageLatencyDaily,
    UsageRollup,
    UsageRollupDaily,
    backfill,
    compact,
    compact_days,
    latency_bucket,
)
from omnirelay.store.usage_row import usage_row
from omnirelay.store.usage_stats import histogram_percentile
from omnirelay.store.writer import BatchWriter
from omnirelay.tasks.store import insert_charged

T = TypeVar("T")
ROWS = 3_000
ACCOUNTS = 4
NOW = datetime.now(UTC).replace(minute=37, second=11) - timedelta(hours=1)
"""Rows end here, in the middle of an hour, so windows have partial hours at both ends."""
MODELS = ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"]


def usage_rows(seed: int, count: int, span: timedelta) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        key = rng.choice([None, 1, 2, 3, 4, 5, 6])
        rows.append(
            {
                "request_id": f"req_{seed}_{i}",
                "created_at": NOW - span * rng.random(),
                "key_id": key,
                "account_id": None if key is None else key % ACCOUNTS + 1,
                "endpoint": "openai.chat",
                "model": rng.choice(MODELS),
                "channel_id": rng.choice([None, 1, 2]),
                "stream": False,
                "status_code": rng.choices([200, 429, 500], weights=[90, 6, 4])[0],
                "prompt_tokens": rng.randint(0, 4000),
                "completion_tokens": rng.randint(0, 1000),
                "latency_ms": rng.choice([0, 3, 7]) if rng.random() < 0.1 else int(rng.lognormvariate(6.5, 1.2)),
                "overhead_ms": 1,
            }
        )
    return rows


async def write_through_writer(engine: AsyncEngine, rows: list[dict[str, Any]], seed: int) -> None:
    rng = random.Random(seed)
    writer = BatchWriter(engine, batch_size=500)
    for row in rows:
        cost = rng.choice([0, rng.randint(1, 90_000)]) if row["account_id"] else 0
        writer.record(usage_row(**row, cost_micros=cost))
    await writer.flush()


def hour_of(when: datetime) -> int:
    """The rollup hour of a time as the ORM reads it back (naive on SQLite, meaning UTC)."""
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()) // HOUR_S


@dataclass
class Written:
    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


async def prepare(database_url: str) -> AsyncEngine:
    engine = create_engine(database_url)
    await migrate(engine)
    async with engine.begin() as connection:
        for account in range(1, ACCOUNTS + 1):
            await connection.execute(insert(Account).values(id=account, name=f"rollup-{account}"))
    await write_through_writer(engine, usage_rows(1, ROWS, timedelta(days=3)), seed=1)
    return engine


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[Written]:
    loop = asyncio.new_event_loop()
    written = Written(loop, loop.run_until_complete(prepare(database_url)))
    yield written
    written.run(written.engine.dispose())
    loop.close()


GROUP = ("model", "channel_id", "key_id", "account_id", "status_code")


RollupTable = type[UsageRollup | UsageLatency | UsageRollupDaily | UsageLatencyDaily]


async def table_rows(engine: AsyncEngine, table: RollupTable) -> dict[tuple[Any, ...], Any]:
    """A rollup table as {key: values}; a latency table's value is its one count."""
    histogram = hasattr(table, "bucket")
    time = table.hour if hasattr(table, "hour") else table.day  # type: ignore[union-attr]
    key = [time, *(getattr(table, c) for c in GROUP)] + ([table.bucket] if histogram else [])  # type: ignore[union-attr]
    values = [table.requests] if histogram else [getattr(table, c) for c in TOTAL_COLUMNS]
    async with sessionmaker(engine)() as session:
        rows = await session.execute(select(*key, *values))
        return {tuple(r[: len(key)]): r[-1] if histogram else tuple(r[len(key) :]) for r in rows}


def rollup_table(engine: AsyncEngine) -> Coroutine[Any, Any, dict[tuple[Any, ...], Any]]:
    return table_rows(engine, UsageRollup)


def latency_table(engine: AsyncEngine) -> Coroutine[Any, Any, dict[tuple[Any, ...], Any]]:
    return table_rows(engine, UsageLatency)


async def logs(engine: AsyncEngine) -> list[UsageLog]:
    async with sessionmaker(engine)() as session:
        return list((await session.scalars(select(UsageLog))).all())


def expected_tables(rows: list[UsageLog]) -> tuple[dict[tuple[Any, ...], tuple[int, ...]], dict[tuple[Any, ...], int]]:
    totals: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 5)
    latency: dict[tuple[Any, ...], int] = defaultdict(int)
    for row in rows:
        key = (
            hour_of(row.created_at),
            row.model,
            row.channel_id or 0,
            row.key_id or 0,
            row.account_id or 0,
            row.status_code,
        )
        sums = totals[key]
        for i, value in enumerate((1, row.prompt_tokens, row.completion_tokens, row.cost_micros, row.latency_ms)):
            sums[i] += value
        latency[(*key, latency_bucket(row.latency_ms))] += 1
    return {k: tuple(v) for k, v in totals.items()}, dict(latency)


def test_rollup_tables_sum_the_rows_exactly(db: Written) -> None:
    rows = db.run(logs(db.engine))
    assert len(rows) == ROWS
    totals, latency = expected_tables(rows)
    assert db.run(rollup_table(db.engine)) == totals
    assert db.run(latency_table(db.engine)) == latency
    assert sum(v[3] for v in totals.values()) == sum(r.cost_micros for r in rows) > 0


def within_buckets(estimate: float | None, latencies: list[float], fraction: float) -> bool:
    """Whether an estimate lies in the buckets of the two ranks the exact percentile interpolates between."""
    position = fraction * (len(latencies) - 1)
    below, above = latencies[int(position)], latencies[min(int(position) + 1, len(latencies) - 1)]
    upper = latency_bucket(int(above)) + 1
    highest = LATENCY_EDGES[upper] - 1 if upper < len(LATENCY_EDGES) else above
    return estimate is not None and LATENCY_EDGES[latency_bucket(int(below))] <= estimate <= highest


WINDOW = UsageFilter(start=NOW - timedelta(days=2, minutes=13), end=NOW - timedelta(minutes=20))
"""Whole hours in the middle, partial ones at both ends."""


VIEWS = [
    ("hour", "model", WINDOW),
    ("day", "key", WINDOW),
    ("day", "channel", UsageFilter(start=WINDOW.start, end=WINDOW.end, status="error")),
    ("day", "account", UsageFilter(end=WINDOW.end, model="gpt-4o-mini")),
]


@pytest.mark.parametrize(("bucket", "by", "filters"), VIEWS)
def test_aggregates_from_rollups_match_the_rows(db: Written, bucket: str, by: str, filters: UsageFilter) -> None:
    assert_aggregate_matches_the_rows(db, bucket, by, filters)


def assert_aggregate_matches_the_rows(db: Written, bucket: str, by: str, filters: UsageFilter) -> None:
    async def both() -> tuple[list[admin_repo.AggregateRow], list[admin_repo.AggregateRow]]:
        async with sessionmaker(db.engine)() as session:
            exact = await admin_repo.usage_aggregate(session, filters, bucket=bucket, by=by)  # type: ignore[arg-type]
            rolled = await usage_stats.usage_aggregate(session, filters, bucket=bucket, by=by, exact_up_to=0)  # type: ignore[arg-type]
            return exact, rolled

    exact, rolled = db.run(both())
    assert len(rolled) > 1
    totals = ("requests", "prompt_tokens", "completion_tokens", "cost_micros", "errors")
    assert [(r.bucket_start, r.group, *(getattr(r, t) for t in totals)) for r in rolled] == [
        (r.bucket_start, r.group, *(getattr(r, t) for t in totals)) for r in exact
    ]
    latencies = cell_latencies(db.run(logs(db.engine)), filters, bucket, by)
    for row in rolled:
        values = latencies[(row.bucket_start, row.group)]
        assert within_buckets(row.p50_latency_ms, values, 0.5), (row, percentile(values, 0.5))
        assert within_buckets(row.p95_latency_ms, values, 0.95), (row, percentile(values, 0.95))


def cell_latencies(
    rows: list[UsageLog], filters: UsageFilter, bucket: str, by: str
) -> dict[tuple[datetime, str | None], list[float]]:
    column = {"model": "model", "key": "key_id", "channel": "channel_id", "account": "account_id"}[by]
    found: dict[tuple[datetime, str | None], list[float]] = defaultdict(list)
    for row in rows:
        when = admin_repo.utc(row.created_at)
        if (filters.start and when < filters.start) or (filters.end and when >= filters.end):
            continue
        if (filters.model and row.model != filters.model) or (filters.status == "error" and row.status_code < 400):
            continue
        start = when.replace(minute=0, second=0, microsecond=0)
        if bucket == "day":
            start = start.replace(hour=0)
        group = getattr(row, column)
        found[(start, None if group is None else str(group))].append(float(row.latency_ms))
    return {cell: sorted(values) for cell, values in found.items()}


def test_summary_from_rollups_matches_the_rows(db: Written) -> None:
    assert_summary_matches_the_rows(db, WINDOW)


def assert_summary_matches_the_rows(db: Written, window: UsageFilter) -> None:
    async def both() -> tuple[console_repo.UsageSummary, console_repo.UsageSummary]:
        async with sessionmaker(db.engine)() as session:
            exact = await console_repo.usage_summary(session, window)
            rolled = await usage_stats.usage_summary(session, window, exact_up_to=0)
            return exact, rolled

    exact, rolled = db.run(both())
    assert (rolled.requests, rolled.prompt_tokens, rolled.completion_tokens, rolled.cost_micros, rolled.errors) == (
        exact.requests,
        exact.prompt_tokens,
        exact.completion_tokens,
        exact.cost_micros,
        exact.errors,
    )
    latencies = sorted(
        float(r.latency_ms)
        for r in db.run(logs(db.engine))
        if window.start <= admin_repo.utc(r.created_at) < window.end  # type: ignore[operator]
    )
    assert len(latencies) == exact.requests
    assert within_buckets(rolled.p50_latency_ms, latencies, 0.5)
    assert within_buckets(rolled.p95_latency_ms, latencies, 0.95)
    assert rolled.p95_latency_ms == pytest.approx(exact.p95_latency_ms, rel=0.2)


def test_small_windows_keep_exact_percentiles(db: Written) -> None:
    async def both() -> tuple[console_repo.UsageSummary, console_repo.UsageSummary]:
        async with sessionmaker(db.engine)() as session:
            return await console_repo.usage_summary(session, WINDOW), await usage_stats.usage_summary(session, WINDOW)

    exact, answered = db.run(both())
    assert answered == exact


def test_concurrent_writers_add_up(db: Written, database_url: str) -> None:
    """Two instances (two engines, two writers) write into the same hours at once: every row is counted."""
    other = db.run(_engine(database_url))
    before = db.run(rollup_table(db.engine))
    first, second = usage_rows(2, 1_000, timedelta(hours=2)), usage_rows(3, 1_000, timedelta(hours=2))

    async def together() -> None:
        await asyncio.gather(write_through_writer(db.engine, first, 2), write_through_writer(other, second, 3))

    db.run(together())
    db.run(other.dispose())
    after = db.run(rollup_table(db.engine))
    added = sum(v[0] for v in after.values()) - sum(v[0] for v in before.values())
    assert added == 2_000
    totals, latency = expected_tables(db.run(logs(db.engine)))
    assert after == totals
    assert db.run(latency_table(db.engine)) == latency


async def _engine(database_url: str) -> AsyncEngine:
    return create_engine(database_url)


def test_backfill_rebuilds_the_rollups_from_the_rows(db: Written) -> None:
    """What migration 0008 runs on an upgraded database: the rollups the writer kept, rebuilt from the rows, and
    every settled day compacted into the daily tier."""
    kept_totals, kept_latency = db.run(rollup_table(db.engine)), db.run(latency_table(db.engine))

    async def rebuild() -> None:
        async with db.engine.begin() as connection:
            for table in ("usage_rollup_hourly", "usage_latency_hourly", "usage_rollup_daily", "usage_latency_daily"):
                await connection.execute(text(f"DELETE FROM {table}"))
            assert await connection.scalar(select(func.count()).select_from(UsageRollup)) == 0
            await connection.run_sync(backfill)

    db.run(rebuild())
    assert db.run(rollup_table(db.engine)) == kept_totals
    assert db.run(latency_table(db.engine)) == kept_latency
    settled = range(hour_of(NOW - timedelta(days=3)) // 24, settled_end())
    assert db.run(daily_tables(db.engine)) == expected_daily(db.run(logs(db.engine)), settled)


def test_histogram_percentiles() -> None:
    # Below 10 ms every bucket is one millisecond wide: the estimate is exact.
    small = [1, 2, 2, 3, 5, 8, 9]
    histogram: dict[int, int] = defaultdict(int)
    for value in small:
        histogram[latency_bucket(value)] += 1
    for fraction in (0.0, 0.5, 0.95, 1.0):
        assert histogram_percentile(histogram, fraction) == pytest.approx(
            percentile([float(v) for v in small], fraction)
        )
    assert histogram_percentile({}, 0.5) is None
    # Past the last edge the answer is that edge.
    assert histogram_percentile({len(LATENCY_EDGES) - 1: 3}, 0.5) == LATENCY_EDGES[-1]
    # Wider buckets: within 19 % of the value.
    rng = random.Random(4)
    values = sorted(float(int(rng.lognormvariate(7, 1))) for _ in range(5_000))
    histogram = defaultdict(int)
    for value in values:
        histogram[latency_bucket(int(value))] += 1
    for fraction in (0.5, 0.95, 0.99):
        exact = percentile(values, fraction)
        assert histogram_percentile(histogram, fraction) == pytest.approx(exact, rel=0.19)
        assert within_buckets(histogram_percentile(histogram, fraction), values, fraction)


def test_a_task_charge_is_rolled_up(db: Written) -> None:
    """Task submits write their usage row outside the batch writer: the rollups take it in the same transaction."""

    async def submit() -> None:
        now = datetime.now(UTC).timestamp()
        task = Task(
            public_id="task_rollup_1",
            vendor="suno",
            surface="suno",
            action="music",
            model="suno-v4",
            account_id=1,
            key_id=1,
            channel_id=2,
            upstream_id="up-1",
            status="SUBMITTED",
            cost_micros=120_000,
            next_poll_at=now,
            submitted_at=now,
            updated_at=now,
        )
        async with sessionmaker(db.engine).begin() as session:
            await insert_charged(session, task, endpoint="suno.submit", client_ip=None)

    db.run(submit())
    totals, latency = expected_tables(db.run(logs(db.engine)))
    assert [v for k, v in totals.items() if k[1] == "suno-v4"] == [(1, 0, 0, 120_000, 0)]
    assert db.run(rollup_table(db.engine)) == totals
    assert db.run(latency_table(db.engine)) == latency


# --- the daily tier -------------------------------------------------------------------------------------------


def settled_end() -> int:
    """The first day that has not settled yet (the days before it are the compactor's)."""
    return (int(time.time()) - SETTLE_S) // DAY_S


def expected_daily(
    rows: list[UsageLog], days: range
) -> tuple[dict[tuple[Any, ...], tuple[int, ...]], dict[tuple[Any, ...], int]]:
    """The daily tables as a direct aggregation of the usage rows of ``days`` would fill them."""
    hourly_totals, hourly_latency = expected_tables(rows)
    totals: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 5)
    latency: dict[tuple[Any, ...], int] = defaultdict(int)
    for key, values in hourly_totals.items():
        if key[0] // 24 in days:
            sums = totals[(key[0] // 24, *key[1:])]
            for i, value in enumerate(values):
                sums[i] += value
    for key, count in hourly_latency.items():
        if key[0] // 24 in days:
            latency[(key[0] // 24, *key[1:])] += count
    return {k: tuple(v) for k, v in totals.items()}, dict(latency)


async def daily_tables(engine: AsyncEngine) -> tuple[dict[tuple[Any, ...], Any], dict[tuple[Any, ...], Any]]:
    return await table_rows(engine, UsageRollupDaily), await table_rows(engine, UsageLatencyDaily)


async def compact_again(engine: AsyncEngine, first_day: int, end_day: int) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(compact_days, first_day, end_day, int(time.time()))


def test_daily_tier_sums_the_settled_days_and_compacting_again_changes_nothing(db: Written) -> None:
    end = settled_end()
    db.run(compact(db.engine))
    # Every settled day is compacted now: the next run finds none left behind, and rebuilds only the recent ones.
    assert db.run(compact(db.engine)) == list(range(end - RECENT_DAYS, end))
    settled = range(hour_of(NOW - timedelta(days=3)) // 24, end)
    expected = expected_daily(db.run(logs(db.engine)), settled)
    assert sum(v[0] for v in expected[0].values()) > 1_000  # two settled days at least
    assert db.run(daily_tables(db.engine)) == expected
    db.run(compact_again(db.engine, settled.start, end))
    assert db.run(daily_tables(db.engine)) == expected


def test_a_late_row_is_taken_in_by_the_next_compaction_and_counted_once(db: Written) -> None:
    """A row of a compacted day written late (the writer retried it after an outage): the daily tier lags until
    the next compaction, which finds the day's count differing from the hourly tier's; no view counts it twice."""
    end = settled_end()
    late_day = end - RECENT_DAYS - 1  # older than the days every run rebuilds anyway
    db.run(compact(db.engine))
    window_start = datetime.fromtimestamp((late_day - 1) * DAY_S, UTC) + timedelta(hours=10, minutes=13)
    window = UsageFilter(start=window_start, end=WINDOW.end)  # the late day and the next ones whole, both edges not
    late = usage_rows(5, 1, timedelta(0))[0] | {"created_at": datetime.fromtimestamp(late_day * DAY_S + 43_210, UTC)}
    db.run(write_through_writer(db.engine, [late], 5))

    async def summaries() -> tuple[console_repo.UsageSummary, console_repo.UsageSummary]:
        async with sessionmaker(db.engine)() as session:
            exact = await console_repo.usage_summary(session, window)
            return exact, await usage_stats.usage_summary(session, window, exact_up_to=0)

    exact, lagging = db.run(summaries())
    assert lagging.requests == exact.requests - 1
    assert lagging.prompt_tokens == exact.prompt_tokens - late["prompt_tokens"]

    assert late_day in db.run(compact(db.engine))
    assert db.run(daily_tables(db.engine)) == expected_daily(db.run(logs(db.engine)), range(late_day - 3, end))
    assert_summary_matches_the_rows(db, window)
    for bucket, by, filters in VIEWS:
        assert_aggregate_matches_the_rows(db, bucket, by, filters)
    assert_aggregate_matches_the_rows(db, "day", "model", window)


def test_instances_compacting_the_same_days_at_once_agree(db: Written, database_url: str) -> None:
    other = db.run(_engine(database_url))
    end = settled_end()
    first = end - 3

    async def together() -> None:
        await asyncio.gather(*(compact_again(engine, first, end) for engine in (db.engine, other, db.engine, other)))

    db.run(together())
    db.run(other.dispose())
    assert db.run(daily_tables(db.engine)) == expected_daily(db.run(logs(db.engine)), range(first - 1, end))
