"""The rows of the table, as data.

A :class:`Workload` is what the load generator sends (path, JSON body, headers, stream or not). A
:class:`Scenario` is one row: a workload sent to one target server (a key of ``servers.SERVERS``), optionally
compared with a floor row. To add a row, append a ``Scenario`` (and, for a new kind of server, a
``ServerSpec`` in ``servers.SERVERS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODEL = "gpt-4o-mini"
PROMPT = "Say hello to the benchmark. [sim output_tokens=16]"
"""The directive sets the reply length in both the static upstream and omnirelay's simulator."""


@dataclass(frozen=True)
class Workload:
    path: str
    body: dict[str, Any]
    stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    """Extra request headers; every request also carries ``Authorization: Bearer <bench key>``."""
    expect: str = '"choices"'
    """Text a good non-stream response contains (checked by the wrk driver)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    """Unique row id, ``group/target`` by convention (selectable with ``--scenarios``)."""
    group: str
    """Rows in one group share a workload and are printed together."""
    target: str
    workload: Workload
    floor: str | None = None
    """Name of the row this one is compared with (req/s and CPU-per-request ratios)."""
    default: bool = True
    """Part of a run without ``--scenarios``; others run only when a pattern names them."""


CHAT = Workload(
    "/v1/chat/completions",
    {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64},
)
CHAT_STREAM = Workload(
    "/v1/chat/completions",
    {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    stream=True,
    expect="data: [DONE]",
)


LONG_PROMPT = "Summarize this. [sim output_tokens=16] " + "the quick brown fox jumps over the lazy dog. " * 1000
CHAT_LONG_PROMPT = Workload(
    "/v1/chat/completions",
    {"model": MODEL, "messages": [{"role": "user", "content": LONG_PROMPT}], "max_tokens": 64},
)
"""About 10k prompt tokens: what the gateway does per prompt token (counting, parsing) shows here."""


def relay_trio(group: str, workload: Workload, default: bool = True) -> list[Scenario]:
    """Direct to the upstream (the driver's ceiling), the bare relay floor, and omnirelay compared with it."""
    return [
        Scenario(f"{group}/direct", group, "upstream", workload, default=default),
        Scenario(f"{group}/bare", group, "bare", workload, default=default),
        Scenario(f"{group}/omnirelay", group, "omnirelay", workload, floor=f"{group}/bare", default=default),
    ]


SCENARIOS: list[Scenario] = [
    *relay_trio("chat", CHAT),
    *relay_trio("chat-stream", CHAT_STREAM),
    *relay_trio("chat-10k-prompt", CHAT_LONG_PROMPT, default=False),
]


def select(patterns: list[str] | None) -> list[Scenario]:
    """Scenarios whose name or group matches a pattern (fnmatch), in table order, plus their floors."""
    from fnmatch import fnmatch

    if not patterns:
        return [s for s in SCENARIOS if s.default]
    chosen = {s.name for s in SCENARIOS if any(fnmatch(s.name, p) or fnmatch(s.group, p) for p in patterns)}
    if not chosen:
        known = ", ".join(s.name for s in SCENARIOS)
        raise SystemExit(f"no scenario matches {patterns}; known: {known}")
    chosen |= {s.floor for s in SCENARIOS if s.name in chosen and s.floor}
    return [s for s in SCENARIOS if s.name in chosen]
