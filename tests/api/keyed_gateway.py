"""The gateway of the OpenAI-endpoint modules (chat audio, rerank, Responses API): their channels, one key ``all``
that reaches every model, the ``openai`` SDK on it, and the usage rows the database holds once every finished call is
settled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
from sqlalchemy import select

from omnirelay.config import ChannelConfig, Settings
from omnirelay.store.models import UsageLog
from tests.conftest import GatewayHarness, start_gateway

CLAUDE_CHANNEL = ChannelConfig(
    name="claude", type="anthropic", base_url="http://127.0.0.1:9", api_keys=["k" * 20], models=["claude-x"]
)
"""An Anthropic channel no call reaches: asking it for an OpenAI-only endpoint must be a 400 before any upstream."""
CLAUDE_PRICES = {"claude-x": {"input_per_mtok": 1, "output_per_mtok": 1}}


def with_claude(database_url: str, *channels: ChannelConfig) -> Settings:
    """``channels`` and the unreachable Claude channel, with a price for its model."""
    return Settings(database_url=database_url, channels=[*channels, CLAUDE_CHANNEL], prices=CLAUDE_PRICES)


def keyed_gateway(settings: Settings) -> Iterator[GatewayHarness]:
    """For a module fixture (``yield from``): the gateway running with the key ``all``, stopped afterwards."""
    harness = start_gateway(settings)
    harness.keys["all"] = harness.create_key("all")
    yield harness
    harness.server.stop()


def client(gw: GatewayHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.keys["all"], max_retries=0)


def usage_rows(gw: GatewayHarness) -> list[Any]:
    """Every usage row, oldest first, after the calls that finished are settled and flushed."""
    gw.flush_usage()

    async def read() -> list[Any]:
        async with gw.gateway.sessions() as session:
            return list((await session.scalars(select(UsageLog).order_by(UsageLog.id))).all())

    return gw.run(read())  # type: ignore[no-any-return]
