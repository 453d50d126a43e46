"""The console's data calls stay fast with 100k usage rows: every query they run uses an index.

100k rows spread over 90 days are bulk-inserted; then the repository functions behind the dashboard, logs, channel
and task pages run for real while their SQL is captured, and each captured statement is explained. Nothing is
timed here (timings depend on the machine): the plan is what makes a page's answer independent of table size.
A 30-day aggregate reads a third of this table, where a sequential scan is the right plan, so windows of an hour
and a day (what the dashboard opens with) are the ones held to an index here.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from omnirelay.store import admin_repo, console_repo, usage_stats
from omnirelay.store.admin_repo import UsageFilter
from omnirelay.store.db import create_engine, migrate, sessionmaker
from omnirelay.store.models import UsageLog
from omnirelay.store.rollup import backfill

T = TypeVar("T")
ROWS = 100_000
SPAN = timedelta(days=90)
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash", "o3", "gpt-5", "deepseek-chat", "grok-4"]


def usage_rows(now: datetime) -> list[dict[str, Any]]:
    rng = random.Random(8)
    rows = []
    for i in range(ROWS):
        status = rng.choices([200, 429, 500, 400], weights=[94, 3, 2, 1])[0]
        rows.append(
            {
                "request_id": f"req_{i:08d}",
                # Oldest first, as the batch writer appends them (ids grow with time).
                "created_at": now - SPAN + SPAN * (i / ROWS),
                "key_id": rng.randint(1, 200),
                "account_id": rng.randint(1, 40),
                "endpoint": "openai.chat",
                "model": rng.choice(MODELS),
                "channel_id": rng.randint(1, 12),
                "stream": rng.random() < 0.5,
                "status_code": status,
                "prompt_tokens": rng.randint(10, 4000),
                "completion_tokens": rng.randint(1, 1000),
                "cost_micros": rng.randint(1, 50_000),
                "latency_ms": int(rng.lognormvariate(6, 0.6)),
                "overhead_ms": 1,
            }
        )
    return rows


@dataclass
class Seeded:
    """An engine over the seeded database, and the event loop it lives on (asyncpg connections belong to one)."""

    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


async def seed(database_url: str) -> AsyncEngine:
    engine = create_engine(database_url)
    await migrate(engine)
    rows = usage_rows(datetime.now(UTC))
    async with engine.begin() as connection:
        for start in range(0, ROWS, 10_000):
            await connection.execute(insert(UsageLog), rows[start : start + 10_000])
        await connection.run_sync(backfill)  # the hourly rollups, as migration 0008 builds them on an upgrade
    async with engine.begin() as connection:
        await connection.execute(text("ANALYZE"))  # planner statistics, as autovacuum would gather them
    return engine


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[Seeded]:
    loop = asyncio.new_event_loop()
    seeded = Seeded(loop, loop.run_until_complete(seed(database_url)))
    yield seeded
    seeded.run(seeded.engine.dispose())
    loop.close()


async def captured_sql(
    engine: AsyncEngine, work: Callable[[AsyncSession], Coroutine[Any, Any, object]]
) -> list[tuple[str, Any]]:
    """Run ``work`` and return the SELECTs it sent, with their parameters."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with sessionmaker(engine)() as session:
            await work(session)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert statements, "the function ran no query"
    return statements


async def plan_of(engine: AsyncEngine, statement: str, parameters: Any) -> str:
    async with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            result = await connection.exec_driver_sql("EXPLAIN " + statement, parameters)
            return "\n".join(row[0] for row in result)
        result = await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return "\n".join(str(row[-1]) for row in result)


def reads_usage_through_an_index(statement: str, plan: str, dialect: str) -> bool:
    if dialect == "postgresql":
        return "Seq Scan on usage_logs" not in plan and "Index" in plan
    scans = [line for line in plan.splitlines() if "usage_logs" in line]
    if not scans:
        return False
    if all("USING" in line for line in scans):  # SEARCH/SCAN ... USING (COVERING) INDEX / INTEGER PRIMARY KEY
        return True
    # A plain SCAN walks the table's own b-tree, which is keyed by id: newest-first pages read it backwards and
    # stop at the LIMIT, as long as no temporary b-tree re-sorts the rows.
    walks_ids = "ORDER BY usage_logs.id" in statement and "LIMIT" in statement
    return walks_ids and "TEMP B-TREE" not in plan


def window(hours: float, **filters: Any) -> UsageFilter:
    now = datetime.now(UTC)
    return UsageFilter(start=now - timedelta(hours=hours), end=now, **filters)


CASES: dict[str, Callable[[AsyncSession], Coroutine[Any, Any, object]]] = {
    # Dashboard (last hour and last day), each breakdown.
    **{
        f"aggregate-{bucket}-by-{by}": (
            lambda session, bucket=bucket, hours=hours, by=by: admin_repo.usage_aggregate(
                session, window(hours), bucket=bucket, by=by
            )
        )
        for bucket, hours in (("minute", 1), ("hour", 24))
        for by in ("model", "key", "channel", "account")
    },
    "summary-hour": lambda session: console_repo.usage_summary(session, window(1)),
    "summary-day": lambda session: console_repo.usage_summary(session, window(24)),
    # Logs: the first page, unfiltered and with each filter, and a later page.
    "logs-first-page": lambda session: admin_repo.usage_page(session, UsageFilter(), limit=50),
    "logs-later-page": lambda session: admin_repo.usage_page(session, UsageFilter(), limit=50, cursor=50_000),
    "logs-by-key": lambda session: admin_repo.usage_page(session, UsageFilter(key_id=7), limit=50),
    "logs-by-account": lambda session: admin_repo.usage_page(session, UsageFilter(account_id=3), limit=50),
    "logs-by-model-day": lambda session: admin_repo.usage_page(session, window(24, model="gpt-4o"), limit=50),
    "logs-by-channel-day": lambda session: admin_repo.usage_page(session, window(24, channel_id=4), limit=50),
    "logs-errors-day": lambda session: admin_repo.usage_page(session, window(24, status="error"), limit=50),
    # A key's or an account's month, as the keys page and the account API total them.
    "cost-of-key-30d": lambda session: admin_repo.usage_cost(session, window(24 * 30, key_id=9)),
    "aggregate-account-30d": lambda session: admin_repo.usage_aggregate(
        session, window(24 * 30, account_id=5), bucket="day", by="model"
    ),
    # The 30-day dashboard: whole hours from the rollups, the partial hours at both ends from the rows.
    "rollup-summary-30d": lambda session: usage_stats.usage_summary(session, window(24 * 30)),
    **{
        f"rollup-aggregate-30d-by-{by}": (
            lambda session, by=by: usage_stats.usage_aggregate(session, window(24 * 30), bucket="day", by=by)
        )
        for by in ("model", "key", "account")
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_console_queries_use_indexes(db: Seeded, case: str) -> None:
    for statement, parameters in db.run(captured_sql(db.engine, CASES[case])):
        if "usage_logs" not in statement:
            continue
        plan = db.run(plan_of(db.engine, statement, parameters))
        assert reads_usage_through_an_index(statement, plan, db.engine.dialect.name), f"{case}:\n{statement}\n{plan}"


def test_the_table_really_holds_the_rows(db: Seeded) -> None:
    async def count() -> int:
        async with db.engine.connect() as connection:
            return int((await connection.execute(text("SELECT count(*) FROM usage_logs"))).scalar_one())

    assert db.run(count()) == ROWS
