"""Simulated upstreams for the routing tests: healthy, flaky (500 on 30 % of calls), hanging, and Anthropic."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from omnirelay.simulators.common import RecordedRequest, SimKnobs, SimulatorState
from tests.conftest import UPSTREAM_KEY
from tests.harness import ServerThread

SECOND_KEY = "sk-upstream-second-0123456789abcdef"
REVOKED_KEY = "sk-upstream-revoked-0123456789abcdef"


def start_openai_sim(defaults: SimKnobs | None = None) -> ServerThread:
    from omnirelay.simulators.openai import create_openai_simulator

    state = SimulatorState(defaults=defaults or SimKnobs(), api_keys=frozenset({UPSTREAM_KEY, SECOND_KEY}))
    server = ServerThread(create_openai_simulator(state)).start()
    server.state = state  # type: ignore[attr-defined]
    return server


@dataclass
class Sims:
    healthy: ServerThread
    flaky: ServerThread
    hanging: ServerThread
    anthropic: ServerThread

    def all(self) -> list[ServerThread]:
        return [self.healthy, self.flaky, self.hanging, self.anthropic]


def state_of(server: ServerThread) -> SimulatorState:
    state: Any = server.state  # type: ignore[attr-defined]
    return state  # type: ignore[no-any-return]


def recorded(server: ServerThread, marker: str) -> RecordedRequest:
    """The simulator's record of the one request whose body holds ``marker``."""
    found = [r for r in state_of(server).requests if marker.encode() in r.body]
    assert len(found) == 1, f"{len(found)} requests carry {marker!r}"
    return found[0]


@pytest.fixture(scope="module")
def sims() -> Iterator[Sims]:
    from omnirelay.simulators.anthropic import create_anthropic_simulator

    anthropic_state = SimulatorState()
    anthropic = ServerThread(create_anthropic_simulator(anthropic_state)).start()
    anthropic.state = anthropic_state  # type: ignore[attr-defined]
    started = Sims(
        healthy=start_openai_sim(),
        flaky=start_openai_sim(SimKnobs(fault="500", fault_rate=0.3)),
        hanging=start_openai_sim(SimKnobs(fault="hang", fault_after=0)),
        anthropic=anthropic,
    )
    yield started
    for server in started.all():
        server.stop()
