"""Task tests: fast simulated upstreams (tasks end in ~0.3 s), a gateway polling every few tens of milliseconds."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest
from sqlalchemy import func, select

from omnirelay.config import ChannelConfig, Settings, TaskSettings
from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.tasks.lifecycle import TaskKnobs
from omnirelay.simulators.tasks.midjourney import create_midjourney_simulator
from omnirelay.simulators.tasks.video import create_video_simulator
from omnirelay.store import repo
from omnirelay.store.models import Account, ApiKey, LedgerEntry, Task
from tests.conftest import GatewayHarness, start_gateway
from tests.harness import ServerThread

MJ_KEY = "mj-upstream-secret-0123456789"
VIDEO_KEY = "sk-video-upstream-0123456789"
MJ_MODELS = ["mj_imagine", "mj_upscale", "mj_variation", "mj_reroll", "mj_blend", "mj_describe", "mj_video", "mj_modal"]
VIDEO_MODELS = ["gen4_turbo", "ray-2", "veo-3.0-generate-001", "kling-v2-1"]


def sim_fixture(
    factory: Callable[..., Any], key: str, scope: Literal["session", "module"] = "module", **knobs: Any
) -> Any:
    """A fixture (named by the module attribute it is assigned to) serving ``factory``'s simulator with one accepted
    key; tasks take 0.3 s unless ``knobs`` or a prompt say otherwise. ``server.state`` is its request log."""

    @pytest.fixture(scope=scope)
    def fixture() -> Iterator[ServerThread]:
        state = SimulatorState(api_keys=frozenset({key}), requests=deque(maxlen=200_000))
        defaults = TaskKnobs(**{"duration": 0.3, "queue": 0.2, "length": 2.0, **knobs})
        server = ServerThread(factory(state, defaults)).start()
        server.state = state  # type: ignore[attr-defined]
        yield server
        server.stop()

    return fixture


mj_sim = sim_fixture(create_midjourney_simulator, MJ_KEY, "session", length=4.0)
video_sim = sim_fixture(create_video_simulator, VIDEO_KEY, "session", length=4.0)


def task_settings(**overrides: Any) -> TaskSettings:
    values: dict[str, Any] = {
        "poll_tick_s": 0.02,
        "poll_interval_scale": 0.02,
        "lease_s": 5.0,
        "webhook_allow_private": True,
        "webhook_backoff_s": 0.05,
        "webhook_secret": "whsec-test",
        "max_wait_s": 10.0,
    }
    values.update(overrides)
    return TaskSettings(**values)


def gateway_settings(database_url: str, mj_sim: ServerThread, video_sim: ServerThread, **tasks: Any) -> Settings:
    return Settings(
        database_url=database_url,
        config_poll_s=0.1,
        channels=[
            ChannelConfig(name="mj", type="midjourney", base_url=mj_sim.url, api_keys=[MJ_KEY], models=MJ_MODELS),
            ChannelConfig(
                name="video", type="video", base_url=video_sim.url, api_keys=[VIDEO_KEY], models=VIDEO_MODELS
            ),
        ],
        tasks=task_settings(**tasks),
    )


@dataclass
class Client:
    """An account with a prepaid balance and one key, talking to one gateway over HTTP."""

    gw: GatewayHarness
    account_id: int
    key_id: int
    key: str

    def http(self, gw: GatewayHarness | None = None) -> httpx.Client:
        target = gw or self.gw
        return httpx.Client(base_url=target.server.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)


def new_client(gw: GatewayHarness, name: str, topup_micros: int = 100_000_000) -> Client:
    async def work() -> tuple[int, int, str]:
        async with gw.gateway.sessions.begin() as session:
            account = await repo.ensure_account(session, name)
            await repo.post_entry(session, account.id, topup_micros, kind="topup", reason="test")
            created = await repo.create_key(session, f"{name}-key", account=name)
        return account.id, created.id, created.key

    account_id, key_id, key = gw.run(work())
    gw.run(gw.gateway.reload())
    return Client(gw, account_id, key_id, key)


def books(gw: GatewayHarness, account_id: int) -> dict[str, Any]:
    """The account's money as the database has it, and every task ledger entry by task id."""

    async def read() -> dict[str, Any]:
        async with gw.gateway.sessions() as session:
            account = await session.get(Account, account_id, populate_existing=True)
            assert account is not None
            entries = (
                await session.execute(
                    select(LedgerEntry.ref, LedgerEntry.amount_micros)
                    .where(LedgerEntry.account_id == account_id, LedgerEntry.kind == "settlement")
                    .order_by(LedgerEntry.id)
                )
            ).all()
            spent = await session.scalar(
                select(func.coalesce(func.sum(ApiKey.spent_micros), 0)).where(ApiKey.account_id == account_id)
            )
            by_ref: dict[str, list[int]] = {}
            for ref, amount in entries:
                by_ref.setdefault(ref, []).append(amount)
            return {
                "balance": account.credits_micros - account.debits_micros,
                "debits": account.debits_micros,
                "key_spent": spent,
                "entries": by_ref,
            }

    return gw.run(read())  # type: ignore[no-any-return]


def task_row(gw: GatewayHarness, public_id: str) -> Task:
    async def read() -> Task:
        async with gw.gateway.sessions() as session:
            row = await session.scalar(select(Task).where(Task.public_id == public_id))
            assert row is not None
            return row

    return gw.run(read())  # type: ignore[no-any-return]


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def gw(database_url: str, mj_sim: ServerThread, video_sim: ServerThread) -> Iterator[GatewayHarness]:
    harness = start_gateway(gateway_settings(database_url, mj_sim, video_sim))
    yield harness
    harness.server.stop()


def sim_requests(sim: ServerThread) -> list[Any]:
    return list(sim.state.requests)  # type: ignore[attr-defined]
