"""Shared fixtures: real databases (SQLite file and PostgreSQL), real sockets, simulated upstreams."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ServerThread


def _per_worker(url: str) -> str:
    """Under pytest-xdist each worker has a database of its own (``test_gw0``, ``test_gw1``...), created on first
    use: the fixtures reset a database's whole schema, which would pull it from under the other worker's tests."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base, _, name = url.rpartition("/")
    return f"{base}/{name}_{worker}"


POSTGRES_URL = _per_worker(os.environ.get("OMNIRELAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))
# Redis state is kept apart by a fresh namespace per test (limiters, breakers, budgets), not per worker.
REDIS_URL = os.environ.get("OMNIRELAY_TEST_REDIS", "redis://127.0.0.1:6379/15")


async def _connect_creating(url: str) -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        base, _, name = url.rpartition("/")
        admin = await asyncpg.connect(f"{base}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass  # another worker made it first
        finally:
            await admin.close()
        return await asyncpg.connect(url)


async def _reset_postgres(url: str) -> None:
    connection = await _connect_creating(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


def database_url_for(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'omnirelay.db'}"
    try:
        asyncio.run(_reset_postgres(POSTGRES_URL))
    except OSError as exc:
        if os.environ.get("CI"):
            raise  # in CI PostgreSQL must be there: .ci/run starts it
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return database_url_for(request.param, tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="session")
def openai_sim() -> Iterator[ServerThread]:
    from omnirelay.simulators.common import SimulatorState
    from omnirelay.simulators.openai import create_openai_simulator

    state = SimulatorState(api_keys=frozenset({"sk-upstream-secret-0123456789abcdef"}))
    server = ServerThread(create_openai_simulator(state)).start()
    server.state = state  # type: ignore[attr-defined]
    yield server
    server.stop()


UPSTREAM_KEY = "sk-upstream-secret-0123456789abcdef"
# A fixed Fernet key: tests on PostgreSQL need one (only SQLite installs generate their own beside the file).
TEST_MASTER_KEY = "x3ZbE2zkd0xWm6a9bT1KqJ4oF6iYp8Rr2Nn5Uu7Ww0A="


@dataclass
class GatewayHarness:
    server: ServerThread
    gateway: Any
    relay: Any
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1"

    def create_key(self, name: str, **options: Any) -> str:
        from omnirelay.store import repo

        async def work() -> str:
            async with self.gateway.sessions.begin() as session:
                created = await repo.create_key(session, name, **options)
            await self.gateway.reload()
            return created.key

        return self.server.call(work())

    def run(self, coro: Any) -> Any:
        return self.server.call(coro)

    def flush_usage(self) -> None:
        """Wait until every finished call is settled and its rows are in the database."""

        async def settle_and_flush() -> None:
            await self.relay.admission.drain()
            await self.gateway.writer.flush()

        self.server.call(settle_and_flush())


def start_gateway(settings: Any) -> GatewayHarness:
    from omnirelay.app import create_app

    if settings.master_key is None:
        settings = settings.model_copy(update={"master_key": TEST_MASTER_KEY})
    app = create_app(settings)
    server = ServerThread(app).start()
    return GatewayHarness(server=server, gateway=app.state.gateway, relay=app.state.relay)
