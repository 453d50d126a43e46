"""A gateway in front of one task-vendor simulator (Suno, Kling, Replicate, FAL), for the vendor test modules."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.config import ChannelConfig, Settings
from omnirelay.tasks.webhooks import SIGNATURE_HEADER, TASK_ID_HEADER, verify
from tests.conftest import GatewayHarness, start_gateway
from tests.harness import ServerThread
from tests.tasks.conftest import task_settings


def vendor_gateway_fixture(channel_type: str, sim_fixture: str, key: str, models: list[str]) -> Any:
    """A module's gateway fixture: one channel of ``channel_type`` with ``key``, in front of the simulator that the
    fixture named ``sim_fixture`` serves (see ``tests.tasks.conftest.sim_fixture``)."""

    @pytest.fixture(scope="module")
    def fixture(database_url: str, request: pytest.FixtureRequest) -> Iterator[GatewayHarness]:
        sim: ServerThread = request.getfixturevalue(sim_fixture)
        channel = ChannelConfig(name=channel_type, type=channel_type, base_url=sim.url, api_keys=[key], models=models)
        harness = start_gateway(
            Settings(database_url=database_url, config_poll_s=0.1, channels=[channel], tasks=task_settings())
        )
        yield harness
        harness.server.stop()

    return fixture


def upstream_requests(sim: ServerThread, path_part: str = "") -> list[Any]:
    return [r for r in sim.state.requests if path_part in r.path]  # type: ignore[attr-defined]


def poll(fetch: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict:
    """Fetch until ``done``; every state seen is kept in ``_seen``."""
    deadline = time.monotonic() + timeout
    seen: list[Any] = []
    while True:
        current = fetch()
        seen.append(current)
        if done(current):
            current["_seen"] = seen
            return current
        assert time.monotonic() < deadline, f"task not done in time: {current}"
        time.sleep(0.03)


class HookReceiver:
    """A client's webhook endpoint that records every call (headers, body)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []

        async def hook(request: Request) -> Response:
            self.calls.append((dict(request.headers), await request.body()))
            return Response(status_code=204)

        self.server = ServerThread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])).start()
        self.url = self.server.url + "/hook"

    def delivered(self, task_id: str, timeout: float = 10) -> dict[str, Any]:
        """The one signed delivery for ``task_id`` (checked with the test gateways' webhook secret)."""
        deadline = time.monotonic() + timeout
        while not self.calls:
            assert time.monotonic() < deadline, "no webhook delivered"
            time.sleep(0.02)
        time.sleep(0.1)  # a second delivery would show up now
        assert len(self.calls) == 1
        headers, body = self.calls[0]
        assert verify(b"whsec-test", body, headers[SIGNATURE_HEADER.lower()])
        assert headers[TASK_ID_HEADER.lower()] == task_id
        return orjson.loads(body)  # type: ignore[no-any-return]
