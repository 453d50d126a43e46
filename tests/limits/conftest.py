"""Fixtures of the limiter suites (``test_limits``, ``test_holds``): each test taking ``backend`` or ``limiter``
runs against memory and Redis with the same assertions.

Redis tests use ``OMNIRELAY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and a fresh namespace per
test, deleted afterwards. Without a reachable Redis they are skipped, except under ``CI`` where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from omnirelay.limits import Limiter
from omnirelay.limits.memory import MemoryLimiter
from omnirelay.limits.redis import RedisLimiter

REDIS_URL = os.environ.get("OMNIRELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_available() -> bool:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.exceptions.ConnectionError:
        return False


class Backend:
    """Makes limiters of one kind; ``peer()`` is a second instance sharing state (Redis: another client)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.namespace = f"test-{uuid.uuid4().hex}"
        self._made: list[Limiter] = []
        self._memory: MemoryLimiter | None = None

    def make(self) -> Limiter:
        if self.kind == "memory":
            self._memory = self._memory or MemoryLimiter()
            return self._memory
        limiter = RedisLimiter.from_url(REDIS_URL, namespace=self.namespace)
        self._made.append(limiter)
        return limiter

    peer = make

    async def cleanup(self) -> None:
        for limiter in self._made:
            await limiter.close()
        if self._memory is not None:
            await self._memory.close()
        if self.kind == "redis":
            client = aioredis.Redis.from_url(REDIS_URL)
            keys = [key async for key in client.scan_iter(match=f"omnirelay:{{{self.namespace}}}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, redis_available: bool) -> AsyncIterator[Backend]:
    if request.param == "redis" and not redis_available:
        if os.environ.get("CI"):
            pytest.fail(f"Redis not reachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    b = Backend(request.param)
    yield b
    await b.cleanup()


@pytest.fixture
def limiter(backend: Backend) -> Limiter:
    return backend.make()


@pytest.fixture
def redis_backend(redis_available: bool) -> Iterator[str]:
    if not redis_available:
        if os.environ.get("CI"):
            pytest.fail(f"Redis not reachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    namespace = f"test-{uuid.uuid4().hex}"
    yield namespace
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"omnirelay:{{{namespace}}}:*"))
    if keys:
        client.delete(*keys)
    client.close()
