"""Claude Code (``npm install -g @anthropic-ai/claude-code``) answering through an OpenAI-type channel.

Opt-in: skipped when ``claude`` is not on PATH. Claude Code runs as a subprocess, offline, with a throwaway
HOME, pointed at the gateway by ``ANTHROPIC_BASE_URL``; the gateway maps the Claude model names it asks for
onto ``gpt-4o-mini`` of the OpenAI simulator, so every call goes Anthropic client → OpenAI upstream: streaming,
mid-conversation system messages, adaptive thinking, two dozen tools, ``context_management``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from omnirelay.config import ChannelConfig, Settings
from omnirelay.simulators.common import SimKnobs, SimulatorState
from omnirelay.simulators.openai import create_openai_simulator
from tests.conftest import UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread

CLAUDE = shutil.which("claude")
pytestmark = pytest.mark.skipif(
    CLAUDE is None, reason="Claude Code is not installed (npm install -g @anthropic-ai/claude-code)"
)

ANSWER = "Hi from omnirelay!"
TIMEOUT_S = 90
CLAUDE_CODE_MODELS = (
    # What Claude Code 2.1 asks for by default (main model; haiku for small, fast tasks) ...
    "claude-opus-4-8",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    # ... and the names pinned below, which other versions use as their defaults.
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
)
PINNED_ENV = {
    "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4-5-20250929",
    "ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-opus-4-1-20250805",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5-20251001",
    "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5-20251001",
}
OFFLINE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
}


@pytest.fixture(scope="module")
def openai_upstream() -> Iterator[ServerThread]:
    # The fake model answers every call in words and calls no tools, whatever Claude Code offers it.
    state = SimulatorState(defaults=SimKnobs(reply=ANSWER, tool_calls=0), api_keys=frozenset({UPSTREAM_KEY}))
    server = ServerThread(create_openai_simulator(state)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, openai_upstream: ServerThread) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path_factory.mktemp('claude-code') / 'omnirelay.db'}",
        channels=[
            ChannelConfig(
                name="openai-for-claude-code",
                type="openai",
                base_url=openai_upstream.url + "/v1",
                api_keys=[UPSTREAM_KEY],
                model_map=dict.fromkeys(CLAUDE_CODE_MODELS, "gpt-4o-mini"),
            )
        ],
        usage_flush_interval_s=0.05,
    )
    harness = start_gateway(settings)
    harness.keys["cc"] = harness.create_key("claude-code")
    yield harness
    harness.server.stop()


def usage_rows(gw: GatewayHarness) -> list[Any]:
    from sqlalchemy import select

    from omnirelay.store.models import UsageLog

    gw.flush_usage()

    async def read() -> list[Any]:
        async with gw.gateway.sessions() as session:
            return list((await session.scalars(select(UsageLog).order_by(UsageLog.id))).all())

    return gw.run(read())


def run_claude(gw: GatewayHarness, home: Path, *args: str, auth: str = "ANTHROPIC_API_KEY", pinned: bool = True) -> str:
    """``claude -p ...`` with nothing from this process's environment but PATH; returns its stdout.
    ``pinned``: the model names behind Claude Code's aliases come from PINNED_ENV, else its own defaults."""
    assert CLAUDE is not None
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": gw.server.url,
        auth: gw.keys["cc"],
        **OFFLINE_ENV,
        **(PINNED_ENV if pinned else {}),
    }
    done = subprocess.run(
        [CLAUDE, "-p", *args], cwd=home, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"claude exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


def test_say_hi_through_an_openai_channel(gw: GatewayHarness, openai_upstream: ServerThread, tmp_path: Path) -> None:
    before = len(usage_rows(gw))
    assert run_claude(gw, tmp_path / "home", "say hi", pinned=False).strip() == ANSWER
    rows = usage_rows(gw)[before:]
    assert rows, "Claude Code reached the gateway"
    for row in rows:
        assert row.model in CLAUDE_CODE_MODELS, f"Claude Code's default model is not mapped: {row.model}"
        assert (row.endpoint, row.upstream_model, row.status_code) == ("anthropic.chat", "gpt-4o-mini", 200)
        assert row.prompt_tokens > 0 and row.completion_tokens > 0
    sent = httpx.get(openai_upstream.url + "/_sim/requests").json()["requests"]
    body = orjson.loads(sent[-1]["body"])
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True
    assert body["tools"], "Claude Code's tools reached the OpenAI upstream as functions"
    assert any("say hi" in str(m["content"]) for m in body["messages"] if m["role"] == "user")


@pytest.mark.parametrize(
    ("alias", "model", "auth"),
    [
        ("sonnet", PINNED_ENV["ANTHROPIC_DEFAULT_SONNET_MODEL"], "ANTHROPIC_API_KEY"),
        ("haiku", PINNED_ENV["ANTHROPIC_DEFAULT_HAIKU_MODEL"], "ANTHROPIC_AUTH_TOKEN"),
    ],
)
def test_model_aliases_and_bearer_auth(gw: GatewayHarness, tmp_path: Path, alias: str, model: str, auth: str) -> None:
    """``--model sonnet|haiku`` asks for the pinned names; ANTHROPIC_AUTH_TOKEN sends the key as a bearer."""
    before = len(usage_rows(gw))
    assert run_claude(gw, tmp_path / "home", "--model", alias, "say hi", auth=auth).strip() == ANSWER
    assert {row.model for row in usage_rows(gw)[before:]} == {model}
