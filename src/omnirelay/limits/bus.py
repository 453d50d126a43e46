"""State an instance shares with its peers over the limiter's bus (Redis pub/sub): the listener's lifecycle.

Subclasses name their ``channel`` and implement ``receive`` (one message from the bus); ``synced`` runs each time
the subscription is (re)established, to pick up what peers decided while this instance was not listening.
Messages carry ``origin``, this instance's id, so an instance can ignore its own. ``spawn`` runs fire-and-forget
work (publishing) off the request path; ``stop`` waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine
from typing import Any, ClassVar

import structlog

from omnirelay.limits.base import Limiter

log = structlog.get_logger(__name__)


class BusPeer:
    channel: ClassVar[str]
    name: ClassVar[str]
    """Names the listener's task (``<name>-sync``) and its log event when the bus is lost (``<name>_sync_lost``)."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.origin = os.urandom(6).hex()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._listen(), name=f"{self.name}-sync")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def synced(self) -> None:
        """Called once subscribed (again); nothing by default."""

    def receive(self, message: bytes) -> None:
        raise NotImplementedError

    async def _listen(self) -> None:
        while True:
            try:
                async with self.limiter.subscribe(self.channel) as subscription:
                    await self.synced()
                    async for message in subscription:
                        self.receive(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(f"{self.name}_sync_lost", error=type(exc).__name__)
                await asyncio.sleep(1.0)
