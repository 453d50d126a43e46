"""Shared fixtures: real databases (SQLite file and PostgreSQL), real sockets, simulated upstreams."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
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


_SCHEMA_FINGERPRINT_SQL = """
SELECT (SELECT string_agg(version_num, ',') FROM alembic_version)
    || '|' || (SELECT string_agg(table_name || '.' || column_name || ':' || data_type || ':' || is_nullable, ','
                                 ORDER BY table_name, column_name)
               FROM information_schema.columns WHERE table_schema = 'public')
    || '|' || (SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public')
    || '|' || (SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint
               WHERE connamespace = 'public'::regnamespace)
"""
_migrated_schemas: dict[str, str] = {}
"""Per PostgreSQL URL, its schema's fingerprint right after this session migrated it. A database that still has that
schema is emptied row by row (~30 ms) instead of being dropped and migrated again (~1 s); any other (first use in
the session, an older revision, a test that altered a table) is rebuilt from the migrations."""


async def _schema_fingerprint(connection: Any) -> str | None:
    import asyncpg

    try:
        return await connection.fetchval(_SCHEMA_FINGERPRINT_SQL)  # type: ignore[no-any-return]
    except asyncpg.UndefinedTableError:
        return None  # not migrated


async def _empty_tables(connection: Any) -> None:
    """Every table as the migrations left it: no rows, sequences back at 1 (foreign-key triggers off meanwhile)."""
    tables = await connection.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
    )
    sequences = await connection.fetch("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
    statements = ["SET session_replication_role = replica"]
    statements += [f'DELETE FROM "{row[0]}"' for row in tables]
    statements += [f"SELECT setval('\"{row[0]}\"', 1, false)" for row in sequences]
    statements.append("SET session_replication_role = DEFAULT")
    await connection.execute(";\n".join(statements))


async def _migrate(url: str) -> None:
    from omnirelay.store.db import create_engine, migrate

    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


async def _reset_postgres(url: str) -> None:
    """Leave ``url`` with the newest schema and no rows (the gateway's own migration at start is then a no-op)."""
    plain_url = url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await _connect_creating(plain_url)
    try:
        migrated = _migrated_schemas.get(url)
        if migrated is not None and await _schema_fingerprint(connection) == migrated:
            await _empty_tables(connection)
            return
        await connection.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()
    await _migrate(url)
    connection = await _connect_creating(plain_url)
    try:
        fingerprint = await _schema_fingerprint(connection)
    finally:
        await connection.close()
    if fingerprint is not None:
        _migrated_schemas[url] = fingerprint


_sqlite_template: Path | None = None


def _migrated_sqlite_file() -> Path:
    """A SQLite file migrated once per session: each test database starts as a copy of it."""
    global _sqlite_template
    if _sqlite_template is None:
        directory = Path(tempfile.mkdtemp(prefix="omnirelay-template-"))
        atexit.register(shutil.rmtree, directory, True)
        template = directory / "omnirelay.db"
        asyncio.run(_migrate(f"sqlite:///{template}"))  # the engine's disposal folds the WAL back into the file
        _sqlite_template = template
    return _sqlite_template


def database_url_for(kind: str, tmp_path: Path) -> str:
    """A migrated, empty database of ``kind`` (``sqlite``: a file in ``tmp_path``; ``postgres``: the test server's)."""
    if kind == "sqlite":
        path = tmp_path / "omnirelay.db"
        if not path.exists():
            shutil.copyfile(_migrated_sqlite_file(), path)
        return f"sqlite:///{path}"
    try:
        asyncio.run(_reset_postgres(POSTGRES_URL))
    except OSError as exc:
        if os.environ.get("CI"):
            raise  # in CI PostgreSQL must be there: .ci/run starts it
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


DATABASE_KINDS = ("sqlite", "postgres")
SQLITE_ONLY = pytest.mark.sqlite_only
"""For a module whose tests check what a client sees (wire shapes, translation, prices from usage): the database
under the gateway does not change it, so its ``database_url`` is SQLite alone. Billing, ledger, concurrency, task
engine and admin-query tests keep both."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: run the module's database_url tests on SQLite alone")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        kinds = ["sqlite"] if metafunc.definition.get_closest_marker("sqlite_only") else list(DATABASE_KINDS)
        metafunc.parametrize("database_url", kinds, indirect=True, scope="module")


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database per module and kind (parametrized by ``pytest_generate_tests``)."""
    return database_url_for(request.param, tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="session", autouse=True)
def _one_tls_context_for_every_http_client() -> Iterator[None]:
    """Every ``httpx`` client (``openai``'s and ``anthropic``'s through their ``httpx2`` copy, and each
    ``httpx.get``/``post`` call) builds a verifying TLS context by reading the whole CA bundle: 40-90 ms of CPU per
    client, thousands of times a run, though every test talks plain HTTP to 127.0.0.1. They share one, built once."""
    import httpx._transports.default as httpx_transports
    import httpx2._transports.default as httpx2_transports

    patched = []
    for module in (httpx_transports, httpx2_transports):
        build = module.create_ssl_context
        shared = build()

        def create_ssl_context(
            verify: Any = True, cert: Any = None, trust_env: bool = True, _build: Any = build, _shared: Any = shared
        ) -> Any:
            if verify is True and cert is None and trust_env:
                return _shared
            return _build(verify=verify, cert=cert, trust_env=trust_env)

        module.create_ssl_context = create_ssl_context
        patched.append((module, build))
    yield
    for module, build in patched:
        module.create_ssl_context = build


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashes() -> Iterator[None]:
    """Console passwords hashed with argon2id at its lowest cost in this process: the production cost (~0.4 s per
    hash or check) is there against offline guessing, and made every sign-up, sign-in and password change in the
    suite cost seconds. The hashes stay argon2id; checking one reads its cost from the hash itself."""
    from argon2 import PasswordHasher

    from omnirelay.api import users

    production = users._hasher
    users._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    users._dummy_hash.cache_clear()
    yield
    users._hasher = production
    users._dummy_hash.cache_clear()


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
