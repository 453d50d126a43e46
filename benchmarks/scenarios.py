"""The rows of the table, as data.

A :class:`Workload` is what the load generator sends (path, JSON body, headers, stream or not). A
:class:`Scenario` is one row: a workload sent to one target server (a key of ``servers.SERVERS``), optionally
compared with a floor row (req/s and CPU per request, against the spine's targets), a baseline row (CPU per
streamed token, or per request) and a TTFT reference row (added time to first token). To add a row, append a
``Scenario`` (and, for a new kind of server, a ``ServerSpec`` in ``servers.SERVERS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

MODEL = "gpt-4o-mini"
OUTPUT_TOKENS = 16
PROMPT = f"Say hello to the benchmark. [sim output_tokens={OUTPUT_TOKENS}]"
"""The directive sets the reply length in both the static upstream and omnirelay's simulator."""
PACED_TTFT_MS = 100
PACED_TOKENS_PER_SECOND = 100
PACED_PROMPT = (
    f"Say hello to the benchmark. [sim output_tokens={OUTPUT_TOKENS} ttft_ms={PACED_TTFT_MS} "
    f"tokens_per_second={PACED_TOKENS_PER_SECOND}]"
)
"""A paced upstream stream: the first event after ``ttft_ms``, then one event every 1/``tokens_per_second`` s, each
its own write (so each arrives in its own read at the relay, as from a real model)."""

OPENAI_STREAM_END = "data: [DONE]\n\n"
ANTHROPIC_STREAM_END = 'event: message_stop\ndata: {"type":"message_stop"}\n\n'
FIRST_WORD = "the"
"""The static upstream's (and simulator's) first output token; its first appearance in the client's stream is the
time to first token."""


@dataclass(frozen=True)
class Workload:
    path: str
    body: dict[str, Any]
    stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    """Extra request headers; ``{key}`` in a value stands for the run's client key. Unless one of them carries the
    key, every request also carries ``Authorization: Bearer <key>``."""
    expect: str = '"choices"'
    """Plain responses: text a good body contains (checked by the wrk driver). Streams: what a complete stream
    ends with (checked by the Python driver)."""
    first_token: str | None = None
    """Streams: the text that marks the first output token in the client's format (its first appearance is the
    time to first token, TTFT)."""
    output_tokens: int = OUTPUT_TOKENS
    """Output tokens per response (the ``[sim output_tokens=N]`` directive): the CPU-per-token denominator."""


@dataclass(frozen=True)
class Scenario:
    name: str
    """Unique row id, ``group/target`` by convention (selectable with ``--scenarios``)."""
    group: str
    """Rows in one group share a workload and are printed together."""
    target: str
    workload: Workload
    floor: str | None = None
    """Name of the row this one is compared with (req/s and CPU-per-request ratios, the spine's targets)."""
    default: bool = True
    """Part of a run without ``--scenarios``; others run only when a pattern names them."""
    tags: tuple[str, ...] = ()
    """Named sets of rows (``--scenarios billing``, ``--scenarios streams``)."""
    baseline: str | None = None
    """Name of a row whose CPU per output token (per request for plain responses) this one is compared with."""
    baseline_target: float | None = None
    """Highest acceptable CPU ratio to ``baseline``; None: the ratio is reported without a verdict."""
    ttft_reference: str | None = None
    """Name of a row (usually direct to the upstream) whose time to first token this one's is compared with."""
    label: str | None = None
    """How the table names the server of this row (default: the server's own label)."""
    latency_reference: str | None = None
    """Name of a row whose p50/p99 latency this one's is compared with (the same server without faults)."""
    faults: bool = False
    """The upstream fails some calls on purpose: errors are this row's measurement (its success rate), not a
    broken run."""

    @property
    def related(self) -> tuple[str, ...]:
        """Rows this one's comparisons need in the same run."""
        return tuple(name for name in (self.floor, self.baseline, self.ttft_reference, self.latency_reference) if name)


def _chat_body(prompt: str, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 64}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def _openai_stream(prompt: str) -> Workload:
    return Workload(
        "/v1/chat/completions",
        _chat_body(prompt, stream=True),
        stream=True,
        expect=OPENAI_STREAM_END,
        first_token=f'"content":"{FIRST_WORD}"',
    )


def _anthropic_stream(prompt: str) -> Workload:
    """What the ``anthropic`` SDK sends: the key as ``x-api-key`` (and no bearer token), ``anthropic-version``, and a
    Messages body with ``stream: true``."""
    return Workload(
        "/v1/messages",
        {"model": MODEL, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": prompt}]},
        stream=True,
        headers={"x-api-key": "{key}", "anthropic-version": "2023-06-01"},
        expect=ANTHROPIC_STREAM_END,
        first_token=f'"text":"{FIRST_WORD}"',
    )


CHAT = Workload("/v1/chat/completions", _chat_body(PROMPT, stream=False))
CHAT_STREAM = _openai_stream(PROMPT)
ANTHROPIC_STREAM = _anthropic_stream(PROMPT)
CHAT_STREAM_PACED = _openai_stream(PACED_PROMPT)
ANTHROPIC_STREAM_PACED = _anthropic_stream(PACED_PROMPT)

LONG_PROMPT = "Summarize this. [sim output_tokens=16] " + "the quick brown fox jumps over the lazy dog. " * 1000
CHAT_LONG_PROMPT = Workload("/v1/chat/completions", _chat_body(LONG_PROMPT, stream=False))
"""About 10k prompt tokens: what the gateway does per prompt token (counting, parsing) shows here."""

FAULT_RATE = 0.1
FAULT_PROMPT = f"Say hello to the benchmark. [sim output_tokens={OUTPUT_TOKENS} fault=500 fault_rate={FAULT_RATE}]"
"""Routing issue: the upstream answers HTTP 500 to 10% of calls, drawn at random per call."""
CHAT_FAULTS = Workload("/v1/chat/completions", _chat_body(FAULT_PROMPT, stream=False))
CHAT_STREAM_FAULTS = _openai_stream(FAULT_PROMPT)

TRANSLATION_CPU_TARGET = 1.5
"""Formats issue: a translated stream (Anthropic client, OpenAI channel) costs at most this multiple of the CPU of
a passthrough stream, per streamed token."""


def relay_trio(
    group: str, workload: Workload, default: bool = True, tags: tuple[str, ...] = (), ttft: bool = False
) -> list[Scenario]:
    """Direct to the upstream (the driver's ceiling), the bare relay floor, and omnirelay compared with it; with
    ``ttft`` (paced streams, where the load does not saturate anything) the relays' time to first token is
    compared with the direct row's."""
    return [
        Scenario(f"{group}/direct", group, "upstream", workload, default=default, tags=tags),
        Scenario(
            f"{group}/bare",
            group,
            "bare",
            workload,
            default=default,
            tags=tags,
            ttft_reference=f"{group}/direct" if ttft else None,
        ),
        Scenario(
            f"{group}/omnirelay",
            group,
            "omnirelay",
            workload,
            floor=f"{group}/bare",
            default=default,
            tags=tags,
            ttft_reference=f"{group}/direct" if ttft else None,
        ),
    ]


def client_reference(group: str, workload: Workload, tags: tuple[str, ...]) -> Scenario:
    """The floor's relay on omnirelay's upstream client instead of aiohttp: how much of omnirelay's distance to the
    floor (or lead over it) is the HTTP client's, not the gateway's work."""
    return Scenario(f"{group}/bare-http1", group, "bare-http1", workload, floor=f"{group}/bare", tags=tags)


def budgeted_rows(group: str, workload: Workload) -> list[Scenario]:
    """Billing issue: omnirelay with a budgeted, rate-limited key (every call reserves, settles and consumes rate
    windows in the limiter), in memory and in Redis; the floor's targets apply, and the CPU per request is also
    compared with plain omnirelay (whose key reserves nothing) to show what the limiter costs."""
    return [
        Scenario(
            f"{group}/{target}",
            group,
            target,
            workload,
            floor=f"{group}/bare",
            tags=("billing",),
            baseline=f"{group}/omnirelay",
        )
        for target in ("omnirelay-budget-memory", "omnirelay-budget-redis")
    ]


def routing_rows(group: str, clean: Workload, faulty: Workload) -> list[Scenario]:
    """Routing issue: omnirelay with three channels for the model (breakers on) against the floor, then with 10% of
    upstream calls failing: the bare relay shows what a client sees without failover, omnirelay's success rate and
    latency added to its own clean row show what failover costs."""
    tags = ("routing",)
    return [
        Scenario(f"{group}/omnirelay-3ch", group, "omnirelay-3ch", clean, floor=f"{group}/bare", tags=tags),
        Scenario(f"{group}-faults/bare", f"{group}-faults", "bare", faulty, default=False, tags=tags, faults=True),
        Scenario(
            f"{group}-faults/omnirelay-3ch",
            f"{group}-faults",
            "omnirelay-3ch",
            faulty,
            default=False,
            tags=tags,
            faults=True,
            latency_reference=f"{group}/omnirelay-3ch",
        ),
    ]


SCENARIOS: list[Scenario] = [
    *relay_trio("chat", CHAT, tags=("billing",)),
    client_reference("chat", CHAT, ("billing",)),
    *budgeted_rows("chat", CHAT),
    *relay_trio("chat-stream", CHAT_STREAM, tags=("streams",)),
    client_reference("chat-stream", CHAT_STREAM, ("streams",)),
    # The upstream speaks OpenAI only and the bare relay cannot translate: the translated row's floor is the bare
    # relay carrying the OpenAI stream (the transport floor), and its CPU per token is judged against passthrough.
    Scenario(
        "anthropic-stream/omnirelay",
        "anthropic-stream",
        "omnirelay",
        ANTHROPIC_STREAM,
        floor="chat-stream/bare",
        tags=("streams",),
        baseline="chat-stream/omnirelay",
        baseline_target=TRANSLATION_CPU_TARGET,
        label="omnirelay, Anthropic client → OpenAI channel",
    ),
    *relay_trio("chat-stream-paced", CHAT_STREAM_PACED, default=False, tags=("streams",), ttft=True),
    Scenario(
        "anthropic-stream-paced/omnirelay",
        "anthropic-stream-paced",
        "omnirelay",
        ANTHROPIC_STREAM_PACED,
        floor="chat-stream-paced/bare",
        default=False,
        tags=("streams",),
        baseline="chat-stream-paced/omnirelay",
        baseline_target=TRANSLATION_CPU_TARGET,
        ttft_reference="chat-stream-paced/direct",
        label="omnirelay, Anthropic client → OpenAI channel",
    ),
    *relay_trio("chat-10k-prompt", CHAT_LONG_PROMPT, default=False),
    *routing_rows("chat", CHAT, CHAT_FAULTS),
    *routing_rows("chat-stream", CHAT_STREAM, CHAT_STREAM_FAULTS),
]


def _matches(scenario: Scenario, pattern: str) -> bool:
    names = (scenario.name, scenario.group, *scenario.tags)
    return any(fnmatch(name, pattern) for name in names)


def select(patterns: list[str] | None) -> list[Scenario]:
    """Scenarios whose name, group or tag matches a pattern (fnmatch), in table order, plus the rows their
    comparisons need (floor, baseline, TTFT and latency references), and theirs."""
    if not patterns:
        chosen = {s.name for s in SCENARIOS if s.default}
    else:
        chosen = {s.name for s in SCENARIOS if any(_matches(s, p) for p in patterns)}
    if not chosen:
        known = ", ".join(s.name for s in SCENARIOS)
        tags = ", ".join(sorted({t for s in SCENARIOS for t in s.tags}))
        raise SystemExit(f"no scenario matches {patterns}; known: {known}; tags: {tags}")
    by_name = {s.name: s for s in SCENARIOS}
    pending = list(chosen)
    while pending:  # the rows compared with, and theirs (a fault row's clean reference has a floor)
        for related in by_name[pending.pop()].related:
            if related not in chosen:
                chosen.add(related)
                pending.append(related)
    return [s for s in SCENARIOS if s.name in chosen]
