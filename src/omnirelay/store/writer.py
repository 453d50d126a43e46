"""Usage rows leave the hot path through a queue and reach the database in batches.

``record`` is a non-blocking append. A background task flushes every ``interval`` seconds or as soon as
``batch_size`` rows wait. If the database is unreachable the rows stay queued (bounded) and are retried, so a brief
outage loses nothing; ``close`` drains what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import structlog
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store.models import UsageLog

log = structlog.get_logger(__name__)

UsageRow = dict[str, Any]


class UsageWriter:
    def __init__(
        self, engine: AsyncEngine, *, interval: float = 0.5, batch_size: int = 500, max_pending: int = 200_000
    ) -> None:
        self._engine = engine
        self._interval = interval
        self._batch_size = batch_size
        self._pending: deque[UsageRow] = deque(maxlen=max_pending)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushed = 0
        self._flush_lock = asyncio.Lock()

    @property
    def flushed(self) -> int:
        return self._flushed

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    def record(self, row: UsageRow) -> None:
        self._pending.append(row)
        if len(self._pending) >= self._batch_size:
            self._wakeup.set()

    async def flush(self) -> None:
        """Write everything queued so far; a flush already running is waited for, so on return all rows recorded
        before the call are in the database."""
        async with self._flush_lock:
            await self._flush_pending()

    async def _flush_pending(self) -> None:
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(self._batch_size, len(self._pending)))]
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(insert(UsageLog), batch)
            except Exception:
                self._pending.extendleft(reversed(batch))
                raise
            self._flushed += len(batch)

    async def _run(self) -> None:
        backoff = self._interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._interval)
            self._wakeup.clear()
            try:
                await self.flush()
                backoff = self._interval
            except Exception as exc:  # the database is down: keep rows, retry later
                log.warning("usage_flush_failed", error=type(exc).__name__, pending=len(self._pending))
                backoff = min(backoff * 2, 10.0)
                await asyncio.sleep(backoff)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()
        except Exception as exc:
            log.error("usage_flush_on_close_failed", error=type(exc).__name__, lost=len(self._pending))
