"""Hourly rollups of ``usage_logs``: what the console's day and 30-day views read instead of the rows.

Two tables share one key: the hour (whole hours since the epoch, UTC) and the dimensions the views filter and
group by: model, channel, key, account and HTTP status. A missing channel, key or account is stored as 0 (ids
start at 1): a NULL in a unique key never conflicts, so an upsert could not add to it.

- ``usage_rollup_hourly``: requests, prompt and completion tokens, cost (integer micro-USD, as the ledger) and
  the latency sum of each group.
- ``usage_latency_hourly``: the fixed latency histogram of the same groups, one row per non-empty bucket.

The histogram is rows, not columns: a percentile over 30 days sums only the buckets that hold requests. Summing
77 dense bucket columns over 86k rollup rows took 0.42 s on SQLite (every column of every row is an aggregate
step), while most group-hours hold a handful of requests in a handful of buckets.

**Precision.** Bucket ``i`` holds the integer latencies ``LATENCY_EDGES[i] <= ms < LATENCY_EDGES[i + 1]``; the
edges are 0, 1, 2, ... and then ``2 ** (k / 4)`` rounded, so every latency below 10 ms has a bucket of its own
and a wider bucket spans at most ``2 ** 0.25`` (19 %) of its lower edge, up to 2 ** 20 ms (17.5 minutes); longer
calls share the last bucket. :func:`histogram_percentile` spreads a bucket's requests evenly over its range, so
its answer lies within the buckets of the two ranks ``percentile_cont`` interpolates between: within 19 % of
the exact percentile, and exact where those buckets are one millisecond wide.

The batch writer adds each batch's sums in the same transaction as the rows (:class:`RollupBatch`), with
``INSERT ... ON CONFLICT DO UPDATE`` adding to what is there: instances writing the same hour add up, never
overwrite. Rows written before the rollups existed are summed by migration 0008 (:func:`backfill`).

**The daily tier** (``usage_rollup_daily``, ``usage_latency_daily``: the same columns with a day for the hour)
is kept off the writer's path: a compactor (:func:`compact`, a gateway background task every
``rollup_compact_interval_s``, and the migration's backfill) rebuilds a day's rows from the hourly tables in one
transaction, replacing what was there, so running it again, late rows, and several instances running it at once
all leave the sums of the hourly rows. ``usage_rollup_compactions`` records when each day was rebuilt; the reads
take a day from this tier only once it was rebuilt ``SETTLE_S`` after it ended, and from the hourly tier before.
With ~140 requests an hour most group-hours hold one or two calls, so a day's rows are about a third of its
hourly ones.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Index, Integer, String, Table, case, literal_column, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from omnirelay.store.models import Base
from omnirelay.store.usage_row import (
    ACCOUNT_ID,
    CHANNEL_ID,
    COMPLETION_TOKENS,
    COST_MICROS,
    CREATED_AT,
    KEY_ID,
    LATENCY_MS,
    MODEL,
    PROMPT_TOKENS,
    STATUS_CODE,
    UsageRow,
)

HOUR_S = 3600
HOUR_US = HOUR_S * 1_000_000

LATENCY_EDGES: tuple[int, ...] = (0, *sorted({round(2 ** (k / 4)) for k in range(81)}))
"""Lower edges of the latency buckets in milliseconds; the last bucket has no upper edge."""


def latency_bucket(latency_ms: int) -> int:
    return bisect_right(LATENCY_EDGES, latency_ms) - 1 if latency_ms > 0 else 0


def latency_bucket_sql(latency: ColumnElement[Any]) -> ColumnElement[int]:
    """:func:`latency_bucket` in SQL, with the edges inlined (a GROUP BY must see the selected expression)."""
    whens = [(latency < literal_column(str(edge)), literal_column(str(i))) for i, edge in enumerate(LATENCY_EDGES[1:])]
    return case(*whens, else_=literal_column(str(len(LATENCY_EDGES) - 1)))


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR_S, UTC)


class _HourKey:
    """The hourly tables' time column (mixins: each table gets its own copies; the time column is declared
    first, so it leads each primary key)."""

    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """Whole hours since 1970-01-01T00:00Z."""


class _DayKey:
    day: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """Whole UTC days since 1970-01-01."""


class _Dimensions:
    """The key columns every rollup table shares after its time column."""

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """0 when the call reached no channel."""
    key_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    status_code: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class _Totals:
    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    latency_ms_sum: Mapped[int] = mapped_column(BigInteger)


class _Histogram:
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    """Index into :data:`LATENCY_EDGES`."""
    requests: Mapped[int] = mapped_column(BigInteger)


class UsageRollup(_HourKey, _Dimensions, _Totals, Base):
    __tablename__ = "usage_rollup_hourly"

    # Without a rowid SQLite keeps the rows in key order, so an hour range is one sequential read.
    __table_args__ = (Index("ix_usage_rollup_account_hour", "account_id", "hour"), {"sqlite_with_rowid": False})


class UsageLatency(_HourKey, _Dimensions, _Histogram, Base):
    __tablename__ = "usage_latency_hourly"

    __table_args__ = ({"sqlite_with_rowid": False},)


class UsageRollupDaily(_DayKey, _Dimensions, _Totals, Base):
    __tablename__ = "usage_rollup_daily"

    __table_args__ = (Index("ix_usage_rollup_daily_account_day", "account_id", "day"), {"sqlite_with_rowid": False})


class UsageLatencyDaily(_DayKey, _Dimensions, _Histogram, Base):
    __tablename__ = "usage_latency_daily"

    __table_args__ = ({"sqlite_with_rowid": False},)


class UsageRollupCompaction(Base):
    """When each day's daily rows were last rebuilt from the hourly tables."""

    __tablename__ = "usage_rollup_compactions"

    day: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    compacted_at: Mapped[int] = mapped_column(BigInteger)
    """Seconds since the epoch, taken before the rebuild read the hourly tables: every hourly row committed
    before it is in the day's rows."""


GROUP_COLUMNS = ("hour", "model", "channel_id", "key_id", "account_id", "status_code")
TOTAL_COLUMNS = ("requests", "prompt_tokens", "completion_tokens", "cost_micros", "latency_ms_sum")

GroupKey = tuple[int, str, int, int, int, int]


class Upsert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET column = column + excluded.column``, as one driver-level
    executemany of tuples (the same on SQLite and PostgreSQL)."""

    def __init__(self, table: Table, key: Sequence[str], added: Sequence[str], dialect: str) -> None:
        columns = (*key, *added)
        marks = ", ".join("?" if dialect == "sqlite" else f"${n}" for n in range(1, len(columns) + 1))
        additions = ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in added)
        self.sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {additions}"
        )

    async def execute(self, connection: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            await connection.exec_driver_sql(self.sql, rows)  # type: ignore[arg-type]


_ROW_DIMENSIONS = itemgetter(MODEL, CHANNEL_ID, KEY_ID, ACCOUNT_ID, STATUS_CODE)
_ROW_SUMS = tuple(itemgetter(i) for i in (PROMPT_TOKENS, COMPLETION_TOKENS, COST_MICROS))
_ROW_LATENCY = itemgetter(LATENCY_MS)


def histogram(latencies: Iterable[int]) -> Iterator[tuple[int, int]]:
    """``(bucket, requests)`` of each non-empty latency bucket: one bisection per bucket, not per latency."""
    ordered = sorted(latencies)
    start, end = 0, len(ordered)
    while start < end:
        bucket = latency_bucket(ordered[start])
        upper = bucket + 1
        stop = bisect_left(ordered, LATENCY_EDGES[upper], start) if upper < len(LATENCY_EDGES) else end
        yield bucket, stop - start
        start = stop


class RollupBatch:
    """One batch of usage rows summed per group-hour and per group-hour-bucket: one upsert row each.

    The rows are first grouped as they are (hour and the dimensions' raw values, one dict lookup per row); the
    sums, the histogram and the missing ids' 0 are then worked out per group, mostly in C (``sum``, ``sorted``
    over ``itemgetter`` maps): a busy gateway's batch holds a few groups of many rows each.

    Written in key order, so concurrent writers on PostgreSQL lock shared rows in the same order (two instances'
    batches wait for each other, never deadlock)."""

    def __init__(self, rows: Iterable[UsageRow]) -> None:
        groups: defaultdict[tuple[int, tuple[Any, ...]], list[UsageRow]] = defaultdict(list)
        dimensions = _ROW_DIMENSIONS
        for row in rows:
            groups[row[CREATED_AT] // HOUR_US, dimensions(row)].append(row)
        totals: dict[GroupKey, list[int]] = {}
        latency: dict[tuple[int, str, int, int, int, int, int], int] = {}
        for (hour, (model, channel_id, key_id, account_id, status_code)), members in groups.items():
            # None and 0 are one key (ids start at 1), so two raw groups may add into one.
            key: GroupKey = (hour, model, channel_id or 0, key_id or 0, account_id or 0, status_code)
            latencies = list(map(_ROW_LATENCY, members))
            sums = totals.setdefault(key, [0, 0, 0, 0, 0])
            sums[0] += len(members)
            for i, column in enumerate(_ROW_SUMS, 1):
                sums[i] += sum(map(column, members))
            sums[4] += sum(latencies)
            for bucket, count in histogram(latencies):
                cell = (*key, bucket)
                latency[cell] = latency.get(cell, 0) + count
        self.totals = [(*key, *sums) for key, sums in sorted(totals.items())]
        self.latency = [(*cell, count) for cell, count in sorted(latency.items())]

    def costs(self, dimension: str) -> list[tuple[int, int]]:
        """``(id, cost)`` of each ``key_id`` or ``account_id`` the batch charged, by id (0, no id, left out)."""
        column = GROUP_COLUMNS.index(dimension)
        cost = len(GROUP_COLUMNS) + TOTAL_COLUMNS.index("cost_micros")
        spent: dict[int, int] = defaultdict(int)
        for row in self.totals:
            if row[column] and row[cost]:
                spent[row[column]] += row[cost]
        return sorted(spent.items())


class RollupWriter:
    """The two upserts of one dialect, built once."""

    def __init__(self, dialect: str) -> None:
        self.totals = Upsert(UsageRollup.__table__, GROUP_COLUMNS, TOTAL_COLUMNS, dialect)  # type: ignore[arg-type]
        self.latency = Upsert(
            UsageLatency.__table__,  # type: ignore[arg-type]
            (*GROUP_COLUMNS, "bucket"),
            ("requests",),
            dialect,
        )

    async def write(self, connection: AsyncConnection, batch: RollupBatch) -> None:
        await self.totals.execute(connection, batch.totals)
        await self.latency.execute(connection, batch.latency)

    async def add(self, connection: AsyncConnection, rows: Iterable[UsageRow]) -> None:
        """Sum and write in one step (a single usage row written outside the batch writer, as a task's)."""
        await self.write(connection, RollupBatch(rows))


# --- backfill -------------------------------------------------------------------------------------------------

_HOUR_SQL = {
    "sqlite": "CAST(strftime('%s', created_at) AS INTEGER) / 3600",
    "postgresql": "CAST(floor(extract(epoch FROM created_at) / 3600) AS BIGINT)",
}


def backfill(connection: Connection) -> None:
    """Sum every existing usage row into the hourly tables, then compact every settled day into the daily ones
    (run once, by the migration that creates them, before any writer of the new version runs). Plain
    ``INSERT ... SELECT``: the database does the work in one pass each."""
    hour = _HOUR_SQL[connection.dialect.name]
    bucket = latency_bucket_sql(literal_column("latency_ms")).compile(
        dialect=connection.dialect, compile_kwargs={"literal_binds": True}
    )
    groups = f"{hour}, model, COALESCE(channel_id, 0), COALESCE(key_id, 0), COALESCE(account_id, 0), status_code"
    connection.execute(
        text(
            f"INSERT INTO usage_rollup_hourly ({', '.join(GROUP_COLUMNS)}, {', '.join(TOTAL_COLUMNS)}) "
            f"SELECT {groups}, count(*), COALESCE(sum(prompt_tokens), 0), COALESCE(sum(completion_tokens), 0), "
            f"COALESCE(sum(cost_micros), 0), COALESCE(sum(latency_ms), 0) FROM usage_logs GROUP BY {groups}"
        )
    )
    connection.execute(
        text(
            f"INSERT INTO usage_latency_hourly ({', '.join(GROUP_COLUMNS)}, bucket, requests) "
            f"SELECT {groups}, {bucket}, count(*) FROM usage_logs GROUP BY {groups}, {bucket}"
        )
    )
    now_s = int(time.time())
    compact_days(connection, *_settled_days(connection, now_s), now_s)


# --- the daily tier -------------------------------------------------------------------------------------------

DAY_S = 24 * HOUR_S

SETTLE_S = 300
"""A usage row reaches the database within the writer's flush interval after its ``created_at`` (the call's end):
a day compacted at least this long after it ended holds all its rows but late ones (written after an outage),
which the next compaction takes in."""

RECENT_DAYS = 2
"""Settled days rebuilt on every run whatever they hold."""

VERIFY_DAYS = 40
"""How far back every run compares each day's request count in the two tiers, rebuilding the days that differ
(rows written late) and those never compacted after they settled."""

_DIMENSIONS = ("model", "channel_id", "key_id", "account_id", "status_code")
_DAILY_FROM_HOURLY = (
    (UsageRollupDaily.__tablename__, UsageRollup.__tablename__, _DIMENSIONS, TOTAL_COLUMNS),
    (UsageLatencyDaily.__tablename__, UsageLatency.__tablename__, (*_DIMENSIONS, "bucket"), ("requests",)),
)


def compacted_after_settling() -> ColumnElement[bool]:
    """The compactions whose day the daily tier answers for: rebuilt ``SETTLE_S`` or more after the day ended."""
    table = UsageRollupCompaction
    return table.compacted_at >= (table.day + 1) * DAY_S + SETTLE_S


def compact_days(connection: Connection, first_day: int, end_day: int, now_s: int) -> None:
    """Rebuild the daily rows of the days ``first_day <= day < end_day`` from the hourly tables, in the caller's
    transaction: delete them, then ``INSERT ... SELECT ... GROUP BY``, the same SQL on SQLite and PostgreSQL.

    The compaction rows are written first: on PostgreSQL a second instance rebuilding the same day waits there
    for the first one's commit, and its DELETE then sees (and replaces) the first one's rows; SQLite runs one
    writer at a time anyway."""
    if end_day <= first_day:
        return
    connection.execute(
        text(
            f"INSERT INTO {UsageRollupCompaction.__tablename__} (day, compacted_at) VALUES (:day, :at) "
            "ON CONFLICT (day) DO UPDATE SET compacted_at = excluded.compacted_at"
        ),
        [{"day": day, "at": now_s} for day in range(first_day, end_day)],
    )
    days = {"first_day": first_day, "end_day": end_day, "first_hour": first_day * 24, "end_hour": end_day * 24}
    for daily, hourly, keys, sums in _DAILY_FROM_HOURLY:
        connection.execute(text(f"DELETE FROM {daily} WHERE day >= :first_day AND day < :end_day"), days)
        columns = ", ".join(keys)
        connection.execute(
            text(
                f"INSERT INTO {daily} (day, {columns}, {', '.join(sums)}) "
                f"SELECT hour / 24, {columns}, {', '.join(f'sum({c})' for c in sums)} FROM {hourly} "
                f"WHERE hour >= :first_hour AND hour < :end_hour GROUP BY hour / 24, {columns}"
            ),
            days,
        )


def _settled_days(connection: Connection, now_s: int) -> tuple[int, int]:
    """From the first day with hourly rows up to the first day that has not settled at ``now_s``."""
    first_hour = connection.scalar(text(f"SELECT min(hour) FROM {UsageRollup.__tablename__}"))
    end_day = (now_s - SETTLE_S) // DAY_S
    return (end_day if first_hour is None else int(first_hour) // 24), end_day


def days_to_compact(
    connection: Connection, now_s: int, recent_days: int = RECENT_DAYS, verify_days: int = VERIFY_DAYS
) -> list[int]:
    """The settled days a compaction run rebuilds: the last ``recent_days``, and within ``verify_days`` those
    not compacted since they settled or whose request counts differ between the tiers (rows written late)."""
    end_day = (now_s - SETTLE_S) // DAY_S
    first_day = end_day - verify_days
    days = {"first_day": first_day, "end_day": end_day, "first_hour": first_day * 24, "end_hour": end_day * 24}
    hourly = _requests_per_day(
        connection,
        f"SELECT hour / 24, sum(requests) FROM {UsageRollup.__tablename__} "
        "WHERE hour >= :first_hour AND hour < :end_hour GROUP BY hour / 24",
        days,
    )
    daily = _requests_per_day(
        connection,
        f"SELECT day, sum(requests) FROM {UsageRollupDaily.__tablename__} "
        "WHERE day >= :first_day AND day < :end_day GROUP BY day",
        days,
    )
    table = UsageRollupCompaction
    settled = set(
        connection.scalars(
            select(table.day).where(table.day >= first_day, table.day < end_day, compacted_after_settling())
        )
    )
    stale = {day for day in hourly.keys() | daily.keys() if day not in settled or hourly.get(day) != daily.get(day)}
    return sorted(stale.union(range(end_day - recent_days, end_day)))


def _requests_per_day(connection: Connection, sql: str, days: Mapping[str, int]) -> dict[int, int]:
    return {int(day): int(requests) for day, requests in connection.execute(text(sql), days)}


async def compact(
    engine: AsyncEngine,
    *,
    recent_days: int = RECENT_DAYS,
    verify_days: int = VERIFY_DAYS,
    clock: Callable[[], float] = time.time,
) -> list[int]:
    """One compaction run (the gateway's background task): each day that needs it rebuilt in a transaction of
    its own, so the batch writer never waits long for SQLite's write lock. Returns the days rebuilt."""
    async with engine.connect() as connection:
        days = await connection.run_sync(days_to_compact, int(clock()), recent_days, verify_days)
    for day in days:
        async with engine.begin() as connection:
            await connection.run_sync(compact_days, day, day + 1, int(clock()))
    return days
