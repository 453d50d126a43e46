"""Usage totals and latency percentiles over any window, as the console's dashboard and aggregates show them.

A window is split where the rollups (``store/rollup.py``) can answer: its whole days that the compactor rebuilt
after they settled are read from the daily tier (not for hour buckets), its other whole hours from the hourly
tier, the partial hours at its edges from ``usage_logs`` (an indexed range of at most two hours), and the parts
are added per time bucket and group. Every usage row is in exactly one part; counts, tokens and cost are exact.

Latency percentiles come from the merged histograms (within one bucket of the exact value: see ``rollup``),
except for windows of at most ``EXACT_UP_TO`` requests: those are few rows, read from ``usage_logs`` as before,
with exact percentiles (``percentile_cont`` on PostgreSQL, the same interpolation on SQLite). Minute buckets, and
windows with no whole hour in them, always read the rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnirelay.store import admin_repo, console_repo
from omnirelay.store.admin_repo import AggregateRow, Bucket, GroupBy, UsageFilter, utc
from omnirelay.store.console_repo import UsageSummary
from omnirelay.store.models import UsageLog
from omnirelay.store.rollup import (
    HOUR_S,
    LATENCY_EDGES,
    UsageLatency,
    UsageLatencyDaily,
    UsageRollup,
    UsageRollupCompaction,
    UsageRollupDaily,
    compacted_after_settling,
    hour_start,
    latency_bucket_sql,
)

EXACT_UP_TO = 10_000
"""Up to this many requests in a window's whole hours, the view is read from the rows, with exact percentiles
(at most about 0.15 s on SQLite); past it, from the rollups."""

RollupBucket = Bucket | None
"""``hour`` or ``day`` buckets, or None for one total over the window (the summary)."""

NO_BUCKET = datetime.min.replace(tzinfo=UTC)
"""The start of the summary's one bucket."""


def histogram_percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """``percentile_cont(fraction)`` estimated from latency bucket counts (bucket index → requests).

    A bucket's requests are taken as spread evenly over its integer range, so a one-millisecond bucket is exact;
    the last bucket, which has no upper edge, answers with its lower edge."""
    total = sum(histogram.values())
    if not total:
        return None
    buckets = sorted((index, count) for index, count in histogram.items() if count)
    position = fraction * (total - 1)
    low = int(position)
    below, above = _value_at_rank(buckets, low), _value_at_rank(buckets, min(low + 1, total - 1))
    return below + (above - below) * (position - low)


def _value_at_rank(buckets: Sequence[tuple[int, int]], rank: int) -> float:
    seen = 0
    for index, count in buckets:
        if rank < seen + count:
            lowest = LATENCY_EDGES[index]
            if index + 1 == len(LATENCY_EDGES):
                return float(lowest)
            highest = LATENCY_EDGES[index + 1] - 1
            if count == 1:
                return (lowest + highest) / 2
            return lowest + (highest - lowest) * (rank - seen) / (count - 1)
        seen += count
    raise ValueError("rank beyond the histogram")


@dataclass(slots=True)
class _Cell:
    """One time bucket and group: its totals, and its latency histogram when percentiles are asked for."""

    row: AggregateRow
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, requests: int, prompt: int, completion: int, cost: int, errors: int) -> None:
        row = self.row
        row.requests += requests
        row.prompt_tokens += prompt
        row.completion_tokens += completion
        row.cost_micros += cost
        row.errors += errors


class Cells:
    """An answer's cells by (bucket start, group), found from the leading values of a result row.

    The rollups store a missing key, channel or account as 0, ``usage_logs`` as NULL: both become None. Raw values
    are converted once per distinct pair (a histogram query returns a row per latency bucket of each cell)."""

    def __init__(self, bucket: RollupBucket, by: GroupBy | None) -> None:
        self.bucket, self.by = bucket, by
        self.width = (bucket is not None) + (by is not None)
        self.by_key: dict[tuple[datetime, str | None], _Cell] = {}
        self._by_raw: dict[tuple[Any, ...], _Cell] = {}

    def of(self, values: Sequence[Any]) -> _Cell:
        raw = tuple(values[: self.width])
        found = self._by_raw.get(raw)
        if found is None:
            found = self._by_raw[raw] = self._convert(raw)
        return found

    def _convert(self, raw: tuple[Any, ...]) -> _Cell:
        start = _bucket_start(self.bucket, raw[0] if self.bucket is not None else None)
        raw_group = raw[-1] if self.by is not None else None
        numeric = self.by != "model"
        group = None if raw_group is None or (numeric and raw_group == 0) else str(raw_group)
        found = self.by_key.get((start, group))
        if found is None:
            found = self.by_key[(start, group)] = _Cell(AggregateRow(start, group))
        return found


@dataclass(frozen=True, slots=True)
class _Split:
    first_hour: int | None
    """First whole hour of the window (None: the window has no start)."""
    end_hour: int | None
    """The hour after the last whole one (None: no end)."""
    edges: tuple[UsageFilter, ...]
    """The partial hours before and after them, as filters on usage_logs."""


def _split(filters: UsageFilter) -> _Split | None:
    """The window's whole hours and the partial ones around them; None when it holds no whole hour."""
    start = None if filters.start is None else utc(filters.start).timestamp()
    end = None if filters.end is None else utc(filters.end).timestamp()
    first = None if start is None else math.ceil(start / HOUR_S)
    last = None if end is None else math.floor(end / HOUR_S)
    if first is not None and last is not None and last <= first:
        return None
    edges = []
    if first is not None and first * HOUR_S > start:  # type: ignore[operator]
        edges.append(replace(filters, end=hour_start(first)))
    if last is not None and last * HOUR_S < end:  # type: ignore[operator]
        edges.append(replace(filters, start=hour_start(last)))
    return _Split(first, last, tuple(edges))


def _bucket_start(bucket: RollupBucket, raw: Any) -> datetime:
    """A bucket's start from a rollup's hour or day number, or from ``admin_repo.bucket_expression``'s value
    (a datetime on PostgreSQL, a string on SQLite)."""
    if bucket is None:
        return NO_BUCKET
    if isinstance(raw, int):
        return hour_start(raw) if bucket == "hour" else datetime.fromtimestamp(raw * 24 * HOUR_S, UTC)
    return utc(datetime.fromisoformat(raw) if isinstance(raw, str) else raw)


Range = tuple[int | None, int | None]
"""``low <= time < high`` in a tier's unit (hours or days); None: unbounded."""


@dataclass(frozen=True, slots=True)
class _Tier:
    totals: Any
    latency: Any
    unit: str
    """The time column: ``hour`` or ``day``."""

    def time(self, table: Any) -> Any:
        return getattr(table, self.unit)

    def bucket_key(self, table: Any, bucket: Bucket) -> ColumnElement[Any]:
        if self.unit == bucket:
            return self.time(table)  # type: ignore[no-any-return]
        # Days from hours, inlined: PostgreSQL must see that GROUP BY repeats the selected expression.
        return literal_column(f"{table.__tablename__}.hour / 24")


HOURLY = _Tier(UsageRollup, UsageLatency, "hour")
DAILY = _Tier(UsageRollupDaily, UsageLatencyDaily, "day")


@dataclass(frozen=True, slots=True)
class _Part:
    """The time ranges one tier answers for."""

    tier: _Tier
    ranges: tuple[Range, ...]

    def where(self, table: Any, filters: UsageFilter) -> list[ColumnElement[bool]]:
        column = self.tier.time(table)
        spans = []
        for low, high in self.ranges:
            bounds = ([] if low is None else [column >= low]) + ([] if high is None else [column < high])
            if not bounds:  # no start and no end: every row
                return filters.dimensions(table)
            spans.append(and_(*bounds))
        return [spans[0] if len(spans) == 1 else or_(*spans), *filters.dimensions(table)]

    def keys(self, table: Any, bucket: RollupBucket, by: GroupBy | None) -> list[ColumnElement[Any]]:
        keys: list[ColumnElement[Any]] = []
        if bucket is not None:
            keys.append(self.tier.bucket_key(table, bucket))
        if by is not None:
            keys.append(getattr(table, admin_repo.GROUP_COLUMNS[by].key))  # the rollups name their columns alike
        return keys


async def _compacted_days(session: AsyncSession, split: _Split) -> list[tuple[int, int]]:
    """The runs of whole days in the window the daily tier answers for, as ``(first, end)`` day numbers."""
    table = UsageRollupCompaction
    query = select(table.day).where(compacted_after_settling()).order_by(table.day)
    if split.first_hour is not None:
        query = query.where(table.day >= -(-split.first_hour // 24))
    if split.end_hour is not None:
        query = query.where(table.day < split.end_hour // 24)
    runs: list[tuple[int, int]] = []
    for day in await session.scalars(query):
        if runs and runs[-1][1] == day:
            runs[-1] = (runs[-1][0], day + 1)
        else:
            runs.append((day, day + 1))
    return runs


def _parts(split: _Split, day_runs: list[tuple[int, int]]) -> list[_Part]:
    """The daily tier for ``day_runs``, the hourly tier for the window's other whole hours."""
    hours: list[Range] = []
    low = split.first_hour
    for first_day, end_day in day_runs:
        if low is None or low < first_day * 24:
            hours.append((low, first_day * 24))
        low = end_day * 24
    if low is None or split.end_hour is None or low < split.end_hour:
        hours.append((low, split.end_hour))
    parts = [_Part(DAILY, tuple(day_runs))] if day_runs else []
    return parts + ([_Part(HOURLY, tuple(hours))] if hours else [])


def _sql_order(by: GroupBy | None, *, nulls_last: bool) -> Callable[[_Cell], tuple[Any, ...]]:
    """The order ``ORDER BY bucket, group`` gives rows answered from usage_logs (ids as numbers; PostgreSQL
    puts NULL last, SQLite first), so an answer keeps its order whichever tables it came from."""
    missing = 1 if nulls_last else -1

    def key(cell: _Cell) -> tuple[Any, ...]:
        group = cell.row.group
        if group is None:
            return (cell.row.bucket_start, missing, 0, "")
        return (cell.row.bucket_start, 0, 0 if by == "model" else int(group), group)

    return key


@dataclass(slots=True)
class _RollupView:
    """One window's answer: whole days and hours from the rollups, partial hours from the rows, added per cell."""

    filters: UsageFilter
    split: _Split
    parts: list[_Part]
    cells: Cells

    async def add_totals(self, session: AsyncSession) -> int:
        """The rollups' totals; returns how many requests they hold."""
        requests = 0
        for part in self.parts:
            table = part.tier.totals
            keys = part.keys(table, self.cells.bucket, self.cells.by)
            errors = case((table.status_code >= 400, table.requests), else_=0)
            query = select(
                *keys,
                func.sum(table.requests),
                func.sum(table.prompt_tokens),
                func.sum(table.completion_tokens),
                func.sum(table.cost_micros),
                func.sum(errors),
            ).where(*part.where(table, self.filters))
            if keys:
                query = query.group_by(*keys)
            for values in await session.execute(query):
                if values[len(keys)] is None:  # no rows at all: the one all-NULL row of ungrouped sums
                    continue
                sums = [int(v) for v in values[len(keys) :]]
                self.cells.of(values).add(*sums)
                requests += sums[0]
        return requests

    async def add_histograms(self, session: AsyncSession) -> None:
        for part in self.parts:
            table = part.tier.latency
            keys = part.keys(table, self.cells.bucket, self.cells.by)
            query = (
                select(*keys, table.bucket, func.sum(table.requests))
                .where(*part.where(table, self.filters))
                .group_by(*keys, table.bucket)
            )
            for values in await session.execute(query):
                histogram = self.cells.of(values).histogram
                index = int(values[-2])
                histogram[index] = histogram.get(index, 0) + int(values[-1])

    async def add_edge(self, session: AsyncSession, edge: UsageFilter, histograms: bool) -> None:
        """The rows of a partial hour, summed per cell (and latency bucket) in SQL."""
        dialect = session.get_bind().dialect.name
        keys: list[ColumnElement[Any]] = []
        if self.cells.bucket is not None:
            keys.append(admin_repo.bucket_expression(dialect, self.cells.bucket))
        if self.cells.by is not None:
            keys.append(admin_repo.GROUP_COLUMNS[self.cells.by])
        latency = [latency_bucket_sql(UsageLog.latency_ms)] if histograms else []
        query = select(
            *keys,
            *latency,
            func.count(),
            func.coalesce(func.sum(UsageLog.prompt_tokens), 0),
            func.coalesce(func.sum(UsageLog.completion_tokens), 0),
            func.coalesce(func.sum(UsageLog.cost_micros), 0),
            func.coalesce(func.sum(case((UsageLog.status_code >= 400, 1), else_=0)), 0),
        ).where(*edge.conditions())
        if keys or latency:
            query = query.group_by(*keys, *latency)
        width = len(keys) + len(latency)
        for values in await session.execute(query):
            if not values[width]:
                continue
            cell = self.cells.of(values)
            cell.add(*(int(v) for v in values[width:]))
            if histograms:
                index = int(values[width - 1])
                cell.histogram[index] = cell.histogram.get(index, 0) + int(values[width])

    def rows(self, percentiles: bool, *, nulls_last: bool) -> list[AggregateRow]:
        rows = []
        for cell in sorted(self.cells.by_key.values(), key=_sql_order(self.cells.by, nulls_last=nulls_last)):
            if percentiles:
                cell.row.p50_latency_ms = histogram_percentile(cell.histogram, 0.5)
                cell.row.p95_latency_ms = histogram_percentile(cell.histogram, 0.95)
            rows.append(cell.row)
        return rows


async def _from_rollups(
    session: AsyncSession,
    filters: UsageFilter,
    bucket: RollupBucket,
    by: GroupBy | None,
    percentiles: bool,
    exact_up_to: int,
) -> list[AggregateRow] | None:
    """The window's rows from the rollups and its edges; None when it has no whole hour, or so few requests
    that the rows answer it exactly."""
    split = _split(filters)
    if split is None:
        return None
    day_runs = [] if bucket == "hour" else await _compacted_days(session, split)
    view = _RollupView(filters, split, _parts(split, day_runs), Cells(bucket, by))
    if await view.add_totals(session) <= exact_up_to:
        return None
    if percentiles:
        await view.add_histograms(session)
    for edge in split.edges:
        await view.add_edge(session, edge, percentiles)
    return view.rows(percentiles, nulls_last=session.get_bind().dialect.name == "postgresql")


async def usage_aggregate(
    session: AsyncSession,
    filters: UsageFilter,
    *,
    bucket: Bucket,
    by: GroupBy,
    percentiles: bool = True,
    exact_up_to: int = EXACT_UP_TO,
) -> list[AggregateRow]:
    """Totals per time bucket and group (``admin_repo.usage_aggregate``'s answer), from the rollups where the
    window allows."""
    if bucket != "minute":
        rows = await _from_rollups(session, filters, bucket, by, percentiles, exact_up_to)
        if rows is not None:
            return rows
    return await admin_repo.usage_aggregate(session, filters, bucket=bucket, by=by, percentiles=percentiles)


async def usage_summary(session: AsyncSession, filters: UsageFilter, *, exact_up_to: int = EXACT_UP_TO) -> UsageSummary:
    """A window's totals and latency percentiles (``console_repo.usage_summary``'s answer), from the rollups
    where the window allows."""
    rows = await _from_rollups(session, filters, None, None, True, exact_up_to)
    if rows is None:
        return await console_repo.usage_summary(session, filters)
    total = rows[0] if rows else AggregateRow(NO_BUCKET, None)
    return UsageSummary(
        total.requests,
        total.prompt_tokens,
        total.completion_tokens,
        total.cost_micros,
        total.errors,
        total.p50_latency_ms,
        total.p95_latency_ms,
    )
