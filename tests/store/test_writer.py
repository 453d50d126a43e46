"""The batch writer's driver-level statements store what the ORM would, and its money sums are the rows' sums.

The writer binds tuples straight to sqlite3 / asyncpg (the time converted per dialect, booleans as ints on
SQLite, account and key debits summed from the rollup groups): the values stored, read back raw, must be those of
SQLAlchemy's own ``insert(UsageLog)``, and every account's and key's debit the sum of its rows' costs.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store.db import create_engine
from omnirelay.store.models import Account, ApiKey, UsageLog
from omnirelay.store.rollup import HOUR_S, RollupBatch, latency_bucket
from omnirelay.store.usage_row import USAGE_COLUMNS, UsageRow, epoch_us, usage_row
from omnirelay.store.writer import BatchWriter

TABLES = ("usage_logs", "ledger_entries", "usage_rollup_hourly", "usage_latency_hourly", "api_keys", "accounts")

Db = tuple[asyncio.AbstractEventLoop, AsyncEngine]


@pytest.fixture
def db(database_url: str) -> Iterator[Db]:
    loop = asyncio.new_event_loop()
    engine = create_engine(database_url)

    async def empty() -> None:
        async with engine.begin() as connection:
            for table in TABLES:
                await connection.execute(text(f"DELETE FROM {table}"))

    loop.run_until_complete(empty())
    yield loop, engine
    loop.run_until_complete(engine.dispose())
    loop.close()


def named(request_id: str, **values: Any) -> dict[str, Any]:
    return {"request_id": request_id, "endpoint": "openai.chat", "model": "gpt-4o-mini", "status_code": 200, **values}


VARIANTS: list[dict[str, Any]] = [
    {"created_at": datetime(2026, 11, 29, 21, 0, 0, tzinfo=UTC)},
    {"created_at": datetime(2026, 11, 29, 21, 59, 59, 999_999, tzinfo=UTC), "stream": True, "usage_estimated": True},
    {"created_at": datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC), "key_id": 7, "account_id": 3, "channel_id": 2},
    {
        "created_at": datetime(2026, 11, 29, 21, 30, 15, 123_456, tzinfo=UTC),
        "upstream_model": "gpt-4o-mini-2024-07-18",
        "error_code": "upstream_error",
        "status_code": 502,
        "prompt_tokens": 12,
        "completion_tokens": 34,
        "cached_tokens": 5,
        "reasoning_tokens": 6,
        "latency_ms": 1234,
        "ttft_ms": 56,
        "overhead_ms": 2,
        "client_ip": "10.1.2.3",
    },
]


async def stored_rows(engine: AsyncEngine) -> dict[str, tuple[Any, ...]]:
    """Every usage row as stored (on SQLite with each value's storage class) by request id, its id left out."""
    columns = [c for c in USAGE_COLUMNS if c != "request_id"]
    selected = [f"{c}, typeof({c})" if engine.dialect.name == "sqlite" else c for c in columns]
    async with engine.connect() as connection:
        result = await connection.exec_driver_sql(f"SELECT request_id, {', '.join(selected)} FROM usage_logs")
        return {row[0]: tuple(row[1:]) for row in result}


def test_usage_rows_are_stored_as_the_orm_stores_them(db: Db) -> None:
    loop, engine = db

    async def write() -> dict[str, tuple[Any, ...]]:
        async with engine.begin() as connection:
            for i, variant in enumerate(VARIANTS):
                await connection.execute(insert(UsageLog).values(**named(f"orm-{i}", **variant)))
        writer = BatchWriter(engine)
        for i, variant in enumerate(VARIANTS):
            writer.record(usage_row(**named(f"raw-{i}", **variant)))
        await writer.flush()
        return await stored_rows(engine)

    stored = loop.run_until_complete(write())
    assert len(stored) == 2 * len(VARIANTS)
    for i in range(len(VARIANTS)):
        assert stored[f"raw-{i}"] == stored[f"orm-{i}"]


def test_settlements_and_debits_are_the_costed_rows(db: Db) -> None:
    loop, engine = db
    when = datetime.now(UTC).replace(microsecond=5)
    # (request, key, account, cost): two keys of account 1, one of account 2, a row without key, free rows.
    calls = [("a", 1, 1, 100), ("b", 2, 1, 250), ("c", 3, 2, 7), ("d", None, 2, 40), ("e", 1, 1, 0), ("f", 1, 1, 1)]

    async def write() -> tuple[list[Any], list[Any], list[Any]]:
        async with engine.begin() as connection:
            await connection.execute(
                insert(Account).values(id=1, name="w-1", month_key="2000-01", month_debits_micros=9)
            )
            await connection.execute(insert(Account).values(id=2, name="w-2", debits_micros=1_000))
            for key, account in ((1, 1), (2, 1), (3, 2)):
                await connection.execute(
                    insert(ApiKey).values(
                        id=key, account_id=account, name=f"k{key}", key_hash=f"h{key}", key_prefix="p"
                    )
                )
        writer = BatchWriter(engine, batch_size=4)  # two batches: the sums add up across them
        for i, (request, key, account, cost) in enumerate(calls):
            at = when + timedelta(seconds=i)
            writer.record(usage_row(**named(request, created_at=at, key_id=key, account_id=account, cost_micros=cost)))
        await writer.flush()
        async with engine.connect() as connection:
            ledger = (
                await connection.exec_driver_sql(
                    "SELECT ref, account_id, key_id, kind, amount_micros, reason, created_at FROM ledger_entries "
                    "ORDER BY ref"
                )
            ).all()
            accounts = (
                await connection.exec_driver_sql(
                    "SELECT id, debits_micros, month_key, month_debits_micros FROM accounts ORDER BY id"
                )
            ).all()
            keys = (await connection.exec_driver_sql("SELECT id, spent_micros FROM api_keys ORDER BY id")).all()
            times = dict(
                (await connection.exec_driver_sql("SELECT request_id, created_at FROM usage_logs")).all()  # type: ignore[arg-type]
            )
        return [(*row[:-1], row[-1] == times[row[0]]) for row in ledger], accounts, keys

    ledger, accounts, keys = loop.run_until_complete(write())
    month = datetime.now(UTC).strftime("%Y-%m")
    assert [tuple(r) for r in ledger] == [
        (request, account, key, "settlement", -cost, "openai.chat gpt-4o-mini", True)
        for request, key, account, cost in calls
        if cost
    ]
    assert [tuple(r) for r in accounts] == [(1, 351, month, 351), (2, 1_047, month, 47)]
    assert [tuple(r) for r in keys] == [(1, 101), (2, 250), (3, 7)]


# --- the rollup sums against a row-by-row reference -----------------------------------------------------------


def reference(rows: list[UsageRow]) -> tuple[dict[Any, list[int]], dict[Any, int], dict[str, dict[int, int]]]:
    """What the writer summed row by row before the rollups were grouped: the hourly totals and histogram, and
    each account's and key's charge."""
    totals: dict[Any, list[int]] = defaultdict(lambda: [0] * 5)
    latency: dict[Any, int] = defaultdict(int)
    spent: dict[str, dict[int, int]] = {"account_id": defaultdict(int), "key_id": defaultdict(int)}
    for row in rows:
        values = dict(zip(USAGE_COLUMNS, row, strict=True))
        hour = values["created_at"] // 1_000_000 // HOUR_S
        key = (hour, values["model"], values["channel_id"] or 0, values["key_id"] or 0, values["account_id"] or 0)
        key = (*key, values["status_code"])
        sums = totals[key]
        for i, value in enumerate(
            (1, values["prompt_tokens"], values["completion_tokens"], values["cost_micros"], values["latency_ms"])
        ):
            sums[i] += value
        latency[(*key, latency_bucket(values["latency_ms"]))] += 1
        if values["cost_micros"]:
            for column in spent:
                if values[column] is not None:
                    spent[column][values[column]] += values["cost_micros"]
    return totals, latency, spent


START = epoch_us(datetime(2026, 11, 29, 22, 59, tzinfo=UTC))

rows_strategy = st.lists(
    st.builds(
        lambda offset, key, channel, model, status, prompt, completion, cost, latency: usage_row(
            **named(
                "r",
                created_at=datetime.fromtimestamp(0, UTC) + timedelta(microseconds=START + offset),
                key_id=key,
                account_id=None if key is None else key % 3 + 1,
                channel_id=channel,
                model=model,
                status_code=status,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_micros=cost,
                latency_ms=latency,
            )
        ),
        offset=st.integers(0, 2 * HOUR_S * 1_000_000),
        key=st.none() | st.integers(1, 6),
        channel=st.none() | st.integers(1, 3),
        model=st.sampled_from(["gpt-4o-mini", "claude-sonnet-4-5"]),
        status=st.sampled_from([200, 429, 500]),
        prompt=st.integers(0, 10**6),
        completion=st.integers(0, 10**6),
        cost=st.just(0) | st.integers(1, 10**9),
        latency=st.integers(0, 3_000_000),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(rows_strategy)
def test_rollup_groups_sum_exactly_what_the_rows_hold(rows: list[UsageRow]) -> None:
    totals, latency, spent = reference(rows)
    batch = RollupBatch(rows)
    assert batch.totals == [(*key, *sums) for key, sums in sorted(totals.items())]
    assert batch.latency == [(*cell, count) for cell, count in sorted(latency.items())]
    for column, charged in spent.items():
        assert batch.costs(column) == sorted(charged.items())


def test_a_backlog_is_written_in_bigger_transactions_and_a_full_queue_refuses_loudly(db: Db) -> None:
    """Behind (a busy event loop slows every statement's round trip), a flush takes up to ten batches in one
    transaction, so the writer catches up instead of falling further behind; past ``max_pending`` a row is
    refused and counted, never dropped silently."""
    loop, engine = db
    when = datetime(2026, 11, 29, 21, 0, 0, tzinfo=UTC)

    async def write() -> tuple[int, int, list[int]]:
        writer = BatchWriter(engine, batch_size=10, max_pending=250)
        transactions: list[int] = []
        write_batch = writer._write

        async def counted(batch: list[UsageRow]) -> None:
            transactions.append(len(batch))
            await write_batch(batch)

        writer._write = counted  # type: ignore[method-assign]
        for i in range(260):
            writer.record(usage_row(**named(f"r-{i}", created_at=when)))
        await writer.flush()
        async with engine.connect() as connection:
            stored = (await connection.exec_driver_sql("SELECT count(*) FROM usage_logs")).scalar_one()
        return stored, writer.dropped, transactions

    stored, dropped, transactions = loop.run_until_complete(write())
    assert (stored, dropped) == (250, 10)
    assert transactions == [100, 100, 50]  # not 25 transactions of 10
