"""Two gateway processes sharing PostgreSQL and Redis: limits and budgets hold for the sum, revocation spreads,
and a killed instance leaves no reservation behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import yaml

from omnirelay.billing.cost import cost_of_tokens
from omnirelay.billing.ledger import account_counter
from omnirelay.billing.prices import PriceTable
from omnirelay.crypto import hash_key
from omnirelay.formats.usage import Usage
from omnirelay.limits.redis import RedisLimiter
from omnirelay.store import repo
from omnirelay.store.db import create_engine, sessionmaker
from omnirelay.store.models import Account, ApiKey
from tests.conftest import REDIS_URL, TEST_MASTER_KEY, UPSTREAM_KEY, database_url_for
from tests.harness import ServerThread, free_port

MODEL = "gpt-4o-mini"


def redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, openai_sim: ServerThread) -> Iterator[dict[str, Any]]:
    if not redis_up():
        if os.environ.get("CI"):
            pytest.fail("Redis must be running in CI")
        pytest.skip("Redis is not reachable")
    database_url = database_url_for("postgres", tmp_path_factory.mktemp("pg"))
    directory = tmp_path_factory.mktemp("instances")
    config = {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "redis_namespace": "test-" + uuid.uuid4().hex[:8],
        "master_key": TEST_MASTER_KEY,
        "hold_lease_s": 5.0,
        "hold_sweep_s": 0.5,
        "channels": [
            {
                "name": "sim",
                "type": "openai",
                "base_url": openai_sim.url + "/v1",
                "api_keys": [UPSTREAM_KEY],
                "models": [MODEL],
            }
        ],
    }
    path = directory / "omnirelay.yaml"
    path.write_text(yaml.safe_dump(config))
    state: dict[str, Any] = {"config": config, "path": path, "processes": []}
    yield state
    for process in state["processes"]:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def spawn_instance(shared: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    """A ``serve`` process on a free port, not yet waited for; its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "omnirelay", "serve", "--config", str(shared["path"]), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=(shared["path"].parent / f"instance-{port}.log").open("wb"),
    )
    shared["processes"].append(process)
    return process, f"http://127.0.0.1:{port}"


def wait_ready(shared: dict[str, Any], process: subprocess.Popen[bytes], url: str) -> str:
    """The instance's ``/v1`` URL once it answers ``/health``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((shared["path"].parent / f"instance-{url.rpartition(':')[2]}.log").read_text())
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return url + "/v1"
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("instance did not start")


def start_instance(shared: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    process, url = spawn_instance(shared)
    return process, wait_ready(shared, process, url)


@pytest.fixture(scope="module")
def instances(shared: dict[str, Any]) -> tuple[str, str]:
    # Started side by side, as instances of one deployment are: the bootstrap lock orders their start-up work.
    a, b = spawn_instance(shared), spawn_instance(shared)
    return wait_ready(shared, *a), wait_ready(shared, *b)


def db(shared: dict[str, Any], work: Any) -> Any:
    async def run() -> Any:
        engine = create_engine(shared["config"]["database_url"])
        try:
            async with sessionmaker(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def new_key(
    shared: dict[str, Any],
    name: str,
    *,
    account: str = "default",
    topup: int = 0,
    reach_instances: bool = True,
    **options: Any,
) -> str:
    """A key made in the database; with ``reach_instances``, returned once the running instances have loaded it."""

    async def work(session: Any) -> str:
        owner = await repo.ensure_account(session, account)
        if topup:
            await repo.post_entry(session, owner.id, topup, kind="topup")
        return (await repo.create_key(session, name, account=account, **options)).key

    key: str = db(shared, work)
    if reach_instances:
        time.sleep(1.2)  # both instances poll the config version twice a second
    return key


def chat(base_url: str, key: str, **extra: Any) -> Any:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8, **extra
    )


def test_rpm_limit_is_shared_by_both_instances(shared: dict[str, Any], instances: tuple[str, str]) -> None:
    key = new_key(shared, "shared-rpm", rpm=10)
    outcomes = []
    for i in range(16):
        try:
            chat(instances[i % 2], key)
            outcomes.append("ok")
        except openai.RateLimitError:
            outcomes.append("limited")
    assert outcomes.count("ok") == 10
    assert outcomes[:10] == ["ok"] * 10


def test_budget_is_shared_by_both_instances(shared: dict[str, Any], instances: tuple[str, str]) -> None:
    key = new_key(shared, "shared-budget", account="shared", reach_instances=False)  # the twin's wait covers it
    # Learn one call's cost from an unlimited twin, then fund the shared account for 20 such calls' worst case.
    twin = new_key(shared, "twin")
    reply = chat(instances[0], twin)
    assert reply.usage is not None
    usage = Usage(input_tokens=reply.usage.prompt_tokens, output_tokens=reply.usage.completion_tokens)
    cost = cost_of_tokens(PriceTable().get(MODEL), usage)  # type: ignore[arg-type]
    budget = 20 * cost

    async def fund(session: Any) -> int:
        account = await repo.ensure_account(session, "shared")
        await repo.post_entry(session, account.id, budget, kind="topup")
        return account.id

    account_id = db(shared, fund)
    time.sleep(1.2)

    async def race() -> list[bool]:
        # One client per instance (building 80 clients cost seconds of CPU), each carrying 40 calls at once.
        clients = [openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0) for url in instances]

        async def one(i: int) -> bool:
            try:
                await clients[i % 2].chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8
                )
                return True
            except openai.RateLimitError:
                return False

        try:
            return await asyncio.gather(*(one(i) for i in range(80)))
        finally:
            for client in clients:
                await client.close()

    results = asyncio.run(race())
    assert 10 <= sum(results) <= 20
    time.sleep(1.5)  # both instances flush their batches

    async def books(session: Any) -> tuple[int, int]:
        account = await session.get(Account, account_id)
        return account.credits_micros, account.debits_micros

    credits, debits = db(shared, books)
    assert credits == budget
    assert debits == sum(results) * cost <= budget


def test_revocation_reaches_the_other_instance_within_a_second(
    shared: dict[str, Any], instances: tuple[str, str]
) -> None:
    key = new_key(shared, "to-revoke")
    assert chat(instances[1], key).choices

    async def revoke(session: Any) -> None:
        from sqlalchemy import select

        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key)))
        await repo.revoke_key(session, key_id)

    db(shared, revoke)
    revoked_at = time.monotonic()
    while True:
        try:
            chat(instances[1], key)
        except openai.AuthenticationError:
            break
        assert time.monotonic() - revoked_at < 1.0, "the other instance still accepts a revoked key"
        time.sleep(0.05)


def test_kill_9_leaves_no_dangling_reservation(shared: dict[str, Any], instances: tuple[str, str]) -> None:
    key = new_key(shared, "crash", account="crash", topup=5_000_000, reach_instances=False)  # the victim loads it
    victim, victim_url = start_instance(shared)

    namespace = shared["config"]["redis_namespace"]

    async def streams() -> int:
        limiter = RedisLimiter.from_url(REDIS_URL, namespace=namespace)
        async with openai.AsyncOpenAI(base_url=victim_url, api_key=key, max_retries=0, timeout=30) as client:

            async def one() -> None:
                try:
                    stream = await client.chat.completions.create(
                        model=MODEL,
                        messages=[{"role": "user", "content": "slow [sim tokens_per_second=4 output_tokens=60]"}],
                        stream=True,
                    )
                    async for _ in stream:
                        pass
                except (openai.APIError, httpx.HTTPError):
                    pass  # the instance is killed under it

            tasks = [asyncio.create_task(one()) for _ in range(50)]
            deadline = time.monotonic() + 4  # well inside the 5 s lease
            while await limiter.open_holds() < 50 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            held = await limiter.open_holds()
            victim.send_signal(signal.SIGKILL)
            await asyncio.gather(*tasks)
        await limiter.close()
        return held

    held = asyncio.run(streams())
    assert held == 50  # the dead instance's reservations are still on the books, until the sweeper of a live
    # instance (either of the two still running) releases them once their 5 s lease ran out

    async def after() -> tuple[int, int]:
        limiter = RedisLimiter.from_url(REDIS_URL, namespace=namespace)
        try:
            deadline = time.monotonic() + 10
            while await limiter.open_holds() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            return await limiter.open_holds(), await limiter.get(account_counter(account_id))
        finally:
            await limiter.close()

    async def account_of(session: Any) -> tuple[int, int, int]:
        from sqlalchemy import func, select

        from omnirelay.store.models import LedgerEntry

        account = await repo.ensure_account(session, "crash")
        ledger = await session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(LedgerEntry.account_id == account.id)
        )
        return account.id, account.credits_micros - account.debits_micros, int(ledger)

    account_id, balance, ledger = db(shared, account_of)
    held, spent_counter = asyncio.run(after())
    assert held == 0
    assert balance == ledger

    async def debits(session: Any) -> int:
        account = await session.get(Account, account_id)
        return int(account.debits_micros)

    assert spent_counter == db(shared, debits)
