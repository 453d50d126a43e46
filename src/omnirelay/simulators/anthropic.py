"""A faithful fake of Anthropic's Messages API: ``/v1/messages``, ``count_tokens``, ``/v1/models``.

Wire shapes follow the recorded transcripts in ``reference/wire-examples.md`` (A1-A7): compact JSON events
padded with spaces before the closing brace as the live API now sends them, ``ping`` after the first block
start, cumulative ``message_delta`` usage, errors as ``{"type":"error","error":{...},"request_id":...}`` with
``request-id``, ``x-should-retry``, ``retry-after`` and ``anthropic-ratelimit-*`` headers.

What the fake model does, deterministically from the prompt text (system + text parts, directives stripped):
- thinking (``thinking.type`` enabled or adaptive): a block of ``THINKING_TOKENS`` words with a signature;
- tools offered and allowed by ``tool_choice``: ``knobs.tool_calls`` parallel ``tool_use`` blocks whose input
  comes from the tool's ``input_schema``; a last user turn with ``tool_result`` blocks is answered in text
  quoting them;
- otherwise ``knobs.reply`` or ``knobs.output_tokens`` generated words, cut by ``stop_sequences`` or
  ``max_tokens``.

Tokens are counted with cl100k (an approximation of Claude's tokenizer) the same way for ``count_tokens`` and
for the usage of ``/v1/messages``: the sum over tool definitions, system and message blocks, ``IMAGE_TOKENS``
per image or document, thinking blocks of earlier turns free (the API drops them). Prompt caching is simulated
per instance: a ``cache_control`` breakpoint past ``CACHE_MIN_TOKENS`` writes its prefix, and the same prefix
later reads it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.formats.sse import encode_event
from omnirelay.simulators.common import (
    ABORT,
    STATUS_FAULTS,
    STREAM_FAULTS,
    Abort,
    BreakableStream,
    SimKnobs,
    SimulatorState,
    cl100k_tokens,
    control_routes,
    generated_words,
    pace,
    strip_directives,
)
from omnirelay.simulators.schema_values import value_for_schema

IMAGE_TOKENS = 1600
"""Input tokens charged per image or binary document (Claude's is about (w*h)/750, 1600 at most)."""
THINKING_TOKENS = 12
CACHE_MIN_TOKENS = 1024
"""Shortest prefix the API caches; shorter breakpoints are ignored, as on the real API."""

MODELS: tuple[tuple[str, str, str], ...] = (
    # Ids the 2.14 SDK knows and does not flag as deprecated; release dates are illustrative.
    ("claude-opus-5", "Claude Opus 5", "2026-09-01T00:00:00Z"),
    ("claude-sonnet-5", "Claude Sonnet 5", "2026-09-01T00:00:00Z"),
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-01T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-01T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_FAULT_MESSAGES = {
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "The requested resource could not be found.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "This request would exceed your organization's rate limit. Please try again later.",
    500: "Internal server error",
    529: "Overloaded",
}
_MESSAGE_FIELDS = frozenset(
    "model messages max_tokens system metadata stop_sequences stream temperature top_p top_k tools "
    "tool_choice thinking service_tier container mcp_servers context_management output_config output_format "
    "inference_geo".split()
)
_COUNT_FIELDS = frozenset(
    "model messages system tools tool_choice thinking mcp_servers context_management output_config".split()
)
_PIECE = re.compile(r"\s*\S+|\s+$")
_JSON_FRAGMENT = 12
_STREAM_FAULTS = STREAM_FAULTS | {"error"}
_PING = b'{"type": "ping"}'
_SSE_MEDIA_TYPE = "text/event-stream; charset=utf-8"


class _InvalidRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# ---------------------------------------------------------------------------------------------------- tokens


count_tokens = cl100k_tokens


def _dumps_text(value: object) -> str:
    # ``json.dumps`` spacing (``{"a": 1, "b": 2}``) is what the API streams in input_json_delta fragments.
    return json.dumps(value, ensure_ascii=False)


@dataclass(slots=True)
class _Prompt:
    text: str
    """System and every text part, for knobs and the seed."""
    input_tokens: int
    breakpoints: list[tuple[str, int, str]]
    """(hash of the prefix, its tokens, ttl) at each ``cache_control`` block, in order."""
    tool_results: list[str] | None
    """Text of the last user turn when it returns ``tool_result`` blocks (maybe empty); None otherwise."""


class _PromptWalker:
    """One pass over tools, system and messages: counts tokens, gathers text, notes cache breakpoints."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.tokens = 0
        self.breakpoints: list[tuple[str, int, str]] = []
        self._hash = hashlib.sha256()

    def add(self, item: dict[str, Any], tokens: int, text: str = "") -> None:
        self.tokens += tokens
        if text:
            self.texts.append(text)
        self._hash.update(orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
        control = item.get("cache_control")
        if isinstance(control, dict):
            self.breakpoints.append((self._hash.hexdigest(), self.tokens, str(control.get("ttl", "5m"))))

    def block(self, block: dict[str, Any], where: str) -> None:
        kind = block.get("type")
        if kind == "text":
            text = str(block.get("text", ""))
            self.add(block, count_tokens(text), text)
        elif kind in {"image", "document"}:
            source = block.get("source")
            if not isinstance(source, dict) or source.get("type") not in {
                "base64",
                "url",
                "text",
                "file",
                "content",
            }:
                raise _InvalidRequest(f"{where}.source: Input tag does not match any of the expected tags")
            if source.get("type") == "text":
                self.add(block, count_tokens(str(source.get("data", ""))))
            else:
                self.add(block, IMAGE_TOKENS)
        elif kind == "tool_use":
            self.add(
                block,
                count_tokens(str(block.get("name", ""))) + count_tokens(_dumps_text(block.get("input"))),
            )
        elif kind == "tool_result":
            self.add(block, 0)
            self.tool_result(block, where)
        elif kind in {"thinking", "redacted_thinking"}:
            self.add(block, 0)
        else:
            self.add(block, count_tokens(_dumps_text(block)))

    def tool_result(self, block: dict[str, Any], where: str) -> None:
        content = block.get("content", "")
        if isinstance(content, str):
            self.tokens += count_tokens(content)
            self.texts.append(content)
        elif isinstance(content, list):
            for index, inner in enumerate(content):
                if isinstance(inner, dict):
                    self.block(inner, f"{where}.content.{index}")


def _as_blocks(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _read_prompt(body: dict[str, Any]) -> _Prompt:
    walker = _PromptWalker()
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            walker.add(tool, count_tokens(_dumps_text(tool)))
    for index, block in enumerate(_as_blocks(body.get("system"))):
        walker.block(block, f"system.{index}")
    previous_tool_ids: set[str] = set()
    tool_results: list[str] | None = None
    for m_index, message in enumerate(body["messages"]):
        blocks = _as_blocks(message.get("content"))
        start = len(walker.texts)
        for b_index, block in enumerate(blocks):
            where = f"messages.{m_index}.content.{b_index}"
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in previous_tool_ids:
                raise _InvalidRequest(
                    f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
            walker.block(block, where)
        previous_tool_ids = {str(b.get("id")) for b in blocks if b.get("type") == "tool_use"}
        has_results = any(b.get("type") == "tool_result" for b in blocks)
        tool_results = walker.texts[start:] if message.get("role") == "user" and has_results else None
    return _Prompt("\n".join(walker.texts), walker.tokens, walker.breakpoints, tool_results)


class _PromptCache:
    """Prefixes written by earlier requests of this simulator instance (bounded, oldest forgotten first)."""

    def __init__(self, size: int = 4096) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def account(self, breakpoints: list[tuple[str, int, str]]) -> tuple[int, int, str]:
        """(tokens written, tokens read, ttl of the write) for one request; remembers what it writes."""
        cacheable = [b for b in breakpoints if b[1] >= CACHE_MIN_TOKENS]
        if not cacheable:
            return 0, 0, "5m"
        read = next((tokens for digest, tokens, _ in reversed(cacheable) if digest in self._seen), 0)
        for digest, _, _ in cacheable:
            self._seen[digest] = None
            self._seen.move_to_end(digest)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        _, last_tokens, ttl = cacheable[-1]
        return last_tokens - read, read, ttl


# ------------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True, slots=True)
class _Block:
    kind: Literal["thinking", "text", "tool_use"]
    pieces: tuple[str, ...]
    """Thinking or text tokens, or the input JSON fragments of a tool call; one stream delta each."""
    signature: str = ""
    tool_id: str = ""
    tool_name: str = ""
    tool_input: object = None


@dataclass(frozen=True, slots=True)
class _Usage:
    input_tokens: int
    cache_write: int
    cache_read: int
    cache_ttl: str
    output_tokens: int


@dataclass(frozen=True, slots=True)
class _Plan:
    """The whole reply, decided before anything is sent; the JSON and the stream are two renderings of it."""

    blocks: tuple[_Block, ...]
    stop_reason: str
    stop_sequence: str | None
    usage: _Usage


def _random_id(prefix: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(22))


def _signature(thinking: str) -> str:
    digest = hashlib.sha256(("signature:" + thinking).encode()).digest()
    return base64.b64encode(b"\x12\xa4\x01" + digest + digest[::-1]).decode()


def _cut_text(text: str, budget: int, stops: list[str]) -> tuple[list[str], int, str, str | None]:
    """Pieces of ``text`` that fit; their tokens; stop reason; matched stop sequence."""
    matched: str | None = None
    cut_at = len(text)
    for stop in stops:
        found = text.find(stop) if stop else -1
        if 0 <= found < cut_at:
            cut_at, matched = found, stop
    pieces: list[str] = []
    used = 0
    for piece in _PIECE.findall(text[:cut_at]):
        tokens = count_tokens(piece)
        if used + tokens > budget:
            return pieces, used, "max_tokens", None
        pieces.append(piece)
        used += tokens
    return pieces, used, ("stop_sequence" if matched is not None else "end_turn"), matched


def _chosen_tools(body: dict[str, Any], knobs: SimKnobs, answering_results: bool) -> list[dict[str, Any]]:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type", "auto")
    if not tools or kind == "none" or (answering_results and kind == "auto"):
        return []
    if kind == "tool":
        named = [t for t in tools if t.get("name") == choice.get("name")]
        if not named:
            raise _InvalidRequest(f"Tool '{choice.get('name')}' not found in provided tools")
        return named[:1]
    count = max(1, knobs.tool_calls) if kind == "any" else knobs.tool_calls
    if choice.get("disable_parallel_tool_use"):
        count = min(count, 1)
    return [tools[i % len(tools)] for i in range(count)]


def _tool_block(tool: dict[str, Any], seed: str, index: int) -> tuple[_Block, int]:
    name = str(tool["name"])
    tool_input = value_for_schema(tool.get("input_schema") or {}, f"{seed}/{name}/{index}")
    text = _dumps_text(tool_input)
    fragments = ("", *(text[i : i + _JSON_FRAGMENT] for i in range(0, len(text), _JSON_FRAGMENT)))
    block = _Block("tool_use", fragments, tool_id=_random_id("toolu_01"), tool_name=name, tool_input=tool_input)
    return block, count_tokens(name) + count_tokens(text)


def _plan(body: dict[str, Any], prompt: _Prompt, knobs: SimKnobs, seed: str, cache: _PromptCache) -> _Plan:
    budget = int(body["max_tokens"])
    blocks: list[_Block] = []
    thinking = body.get("thinking") or {}
    if thinking.get("type") in {"enabled", "adaptive"}:
        words = tuple(generated_words("thinking " + seed, min(THINKING_TOKENS, budget)))
        blocks.append(_Block("thinking", words, signature=_signature("".join(words))))
        budget -= len(words)
    answering = prompt.tool_results is not None
    tools = _chosen_tools(body, knobs, answering)
    if knobs.reply is not None:
        text = knobs.reply
    elif answering and not tools:
        text = "The tool returned: " + " ".join(prompt.tool_results or ["nothing"])
    else:
        text = "" if tools else "".join(generated_words(seed, knobs.output_tokens))
    pieces, used, stop_reason, stop_sequence = _cut_text(text, budget, list(body.get("stop_sequences") or []))
    if pieces:
        blocks.append(_Block("text", tuple(pieces)))
    budget -= used
    if stop_reason == "end_turn" and tools:
        calls = [_tool_block(tool, seed, index) for index, tool in enumerate(tools)]
        if sum(tokens for _, tokens in calls) <= budget:
            blocks.extend(block for block, _ in calls)
            used += sum(tokens for _, tokens in calls)
            stop_reason = "tool_use"
        else:
            stop_reason = "max_tokens"
    output = used + sum(len(b.pieces) for b in blocks if b.kind == "thinking")
    written, read, ttl = cache.account(prompt.breakpoints)
    usage = _Usage(prompt.input_tokens - written - read, written, read, ttl, output)
    return _Plan(tuple(blocks), stop_reason, stop_sequence, usage)


# ------------------------------------------------------------------------------------------------- rendering


def _usage_json(usage: _Usage, *, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write if usage.cache_ttl != "1h" else 0,
            "ephemeral_1h_input_tokens": usage.cache_write if usage.cache_ttl == "1h" else 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
        "inference_geo": "not_available",
    }


def _block_json(block: _Block) -> dict[str, Any]:
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": "".join(block.pieces), "signature": block.signature}
    if block.kind == "text":
        return {"type": "text", "text": "".join(block.pieces)}
    return {
        "type": "tool_use",
        "id": block.tool_id,
        "name": block.tool_name,
        "input": block.tool_input,
        "caller": {"type": "direct"},
    }


def _message_json(plan: _Plan, model: str, message_id: str, knobs: SimKnobs) -> dict[str, Any]:
    message: dict[str, Any] = {
        "model": model,
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": [_block_json(b) for b in plan.blocks],
        "stop_reason": plan.stop_reason,
        "stop_sequence": plan.stop_sequence,
    }
    if not knobs.no_usage:
        message["usage"] = _usage_json(plan.usage, output_tokens=plan.usage.output_tokens)
    return message


_Event = tuple[str, dict[str, Any] | bytes, bool]
"""(event name, data, whether it carries a generated token and so is paced)."""


def _block_events(index: int, block: _Block) -> Iterator[_Event]:
    if block.kind == "thinking":
        start: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in block.pieces]
    elif block.kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in block.pieces]
    else:
        start = {
            "type": "tool_use",
            "id": block.tool_id,
            "name": block.tool_name,
            "caller": {"type": "direct"},
        }
        start["input"] = {}
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in block.pieces]
    yield (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": start},
        False,
    )
    if index == 0:
        yield "ping", _PING, False
    for delta in deltas:
        yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}, True
    if block.kind == "thinking":
        signature = {"type": "signature_delta", "signature": block.signature}
        yield (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": signature},
            False,
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": index}, False


def _stream_events(plan: _Plan, model: str, message_id: str, knobs: SimKnobs) -> list[_Event]:
    start = {**_message_json(replace(plan, blocks=()), model, message_id, knobs), "stop_reason": None}
    start["stop_sequence"] = None
    if "usage" in start:
        start["usage"] = _usage_json(plan.usage, output_tokens=1)
    events: list[_Event] = [("message_start", {"type": "message_start", "message": start}, False)]
    if not plan.blocks:
        events.append(("ping", _PING, False))
    for index, block in enumerate(plan.blocks):
        events.extend(_block_events(index, block))
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence},
    }
    if not knobs.no_usage:
        full = _usage_json(plan.usage, output_tokens=plan.usage.output_tokens)
        delta["usage"] = {
            k: full[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        }
        delta["usage"]["output_tokens"] = plan.usage.output_tokens
    events.append(("message_delta", delta, False))
    events.append(("message_stop", {"type": "message_stop"}, False))
    return events


def _padded(data: dict[str, Any] | bytes, number: int) -> bytes:
    """Compact JSON with spaces before the last ``}``, as the live API pads its events (A2)."""
    if isinstance(data, bytes):
        return data
    raw = orjson.dumps(data)
    return raw[:-1] + b" " * ((number * 7 + len(raw)) % 16) + b"}"


async def _sse(events: list[_Event], knobs: SimKnobs) -> AsyncIterator[bytes | Abort]:
    # A requested stream fault always fires, at the last event at the latest.
    fault_at = min(knobs.fault_after, len(events) - 1) if knobs.fault in _STREAM_FAULTS else -1
    first_token = True
    for number, (name, data, is_token) in enumerate(events):
        if number == fault_at:
            async for chunk in _stream_fault(knobs.fault or ""):
                yield chunk
            return
        if is_token:
            if first_token and knobs.ttft_ms:
                await asyncio.sleep(knobs.ttft_ms / 1000)
            first_token = False
            await pace(knobs)
        yield encode_event(name, _padded(data, number))


async def _stream_fault(fault: str) -> AsyncIterator[bytes | Abort]:
    if fault == "reset":
        yield ABORT
    elif fault == "malformed":
        yield encode_event("content_block_delta", b'{"type":"content_block_delta","index":0,"delta":{"type":"text_')
    elif fault == "error":
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        yield encode_event("error", orjson.dumps(error))
    # "cut": nothing more, the body just ends.


# ---------------------------------------------------------------------------------------------------- errors


def _ratelimit_headers(exhausted: bool = False) -> dict[str, str]:
    reset = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers: dict[str, str] = {}
    for name, limit in (("requests", 4000), ("tokens", 2_000_000), ("input-tokens", 1_600_000),
                        ("output-tokens", 400_000)):  # fmt: skip
        headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{name}-remaining"] = "0" if exhausted else str(limit - 1)
        headers[f"anthropic-ratelimit-{name}-reset"] = reset
    return headers


def _error(status: int, message: str, retry_after: int | None = None) -> Response:
    request_id = _random_id("req_011C")
    error_type = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    headers = {
        "request-id": request_id,
        "x-should-retry": "true" if status in {408, 409, 429} or status >= 500 else "false",
    }
    headers.update(_ratelimit_headers(exhausted=status == 429))
    if status in {429, 529}:
        headers["retry-after"] = str(retry_after if retry_after is not None else 1)
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _fault_response(knobs: SimKnobs) -> Response:
    status = int(knobs.fault or 500)
    return _error(status, _FAULT_MESSAGES.get(status, f"Simulated error {status}"), knobs.retry_after)


# -------------------------------------------------------------------------------------------------- requests


def _validate(body: object, fields: frozenset[str], required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _InvalidRequest("Input should be a valid dictionary")
    for name in required:
        if name not in body:
            raise _InvalidRequest(f"{name}: Field required")
    extra = sorted(set(body) - fields)
    if extra:
        raise _InvalidRequest(f"{extra[0]}: Extra inputs are not permitted")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _InvalidRequest("messages: at least one message is required")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in {"user", "assistant"}:
            raise _InvalidRequest(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        if not isinstance(message.get("content"), str | list):
            raise _InvalidRequest(f"messages.{index}.content: Field required")
    if "max_tokens" in required:
        _validate_budget(body)
    return body


def _validate_budget(body: dict[str, Any]) -> None:
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _InvalidRequest("max_tokens: Input should be greater than or equal to 1")
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise _InvalidRequest("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if budget >= max_tokens:
            raise _InvalidRequest("`max_tokens` must be greater than `thinking.budget_tokens`")
    forced = (body.get("tool_choice") or {}).get("type") in {"any", "tool"}
    if forced and thinking.get("type") in {"enabled", "adaptive"}:
        raise _InvalidRequest("Thinking may not be enabled when tool_choice forces tool use.")


def _auth_error(request: Request, state: SimulatorState) -> Response | None:
    key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization", "")
    if not key and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        return _error(401, "x-api-key header is required")
    if not state.key_ok(key):
        return _error(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return _error(400, "anthropic-version: header is required")
    return None


def _parse(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _InvalidRequest(f"There was an error parsing the body of your request: {exc}") from exc


async def _before_answer(request: Request, knobs: SimKnobs) -> Response | None:
    """Latency, then the faults that replace the answer; None when the answer should go ahead."""
    if knobs.latency_ms:
        await asyncio.sleep(knobs.latency_ms / 1000)
    if knobs.fault == "hang":
        # Never answer, but end once the client gives up, so hung calls don't pile up in load runs.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        return Response(status_code=499)
    if knobs.fault in STATUS_FAULTS:
        return _fault_response(knobs)
    return None


def _non_stream_response(message: dict[str, Any], knobs: SimKnobs) -> Response:
    raw = orjson.dumps(message)
    headers = {"request-id": _random_id("req_011C"), **_ratelimit_headers()}
    if knobs.fault == "error":
        return _error(529, "Overloaded", knobs.retry_after)
    if knobs.fault in STREAM_FAULTS:
        # A body that breaks off: dropped mid-transfer for "reset", complete but truncated JSON otherwise.
        async def broken() -> AsyncIterator[bytes | Abort]:
            yield raw[: len(raw) // 2]
            if knobs.fault == "reset":
                yield ABORT

        return BreakableStream(broken(), headers=headers, media_type="application/json")
    return Response(raw, headers=headers, media_type="application/json")


def create_anthropic_simulator(state: SimulatorState | None = None) -> Starlette:
    """The Anthropic Messages API simulator as a Starlette app, with ``/_sim/*`` control routes."""
    state = state or SimulatorState()
    prompt_cache = _PromptCache()

    async def prepare(
        request: Request, fields: frozenset[str], required: tuple[str, ...]
    ) -> tuple[dict[str, Any], _Prompt, SimKnobs] | Response:
        """Record, authenticate, validate, read prompt and knobs, wait, fault: what both POSTs share."""
        raw = await request.body()
        state.record(request, raw)
        if (denied := _auth_error(request, state)) is not None:
            return denied
        try:
            body = _validate(_parse(raw), fields, required)
            prompt = _read_prompt(body)
        except _InvalidRequest as exc:
            return _error(exc.status, exc.message)
        knobs = state.knobs_for(request, prompt.text)
        early = await _before_answer(request, knobs)
        return early if early is not None else (body, prompt, knobs)

    async def messages(request: Request) -> Response:
        prepared = await prepare(request, _MESSAGE_FIELDS, ("model", "max_tokens", "messages"))
        if isinstance(prepared, Response):
            return prepared
        body, prompt, knobs = prepared
        try:
            plan = _plan(body, prompt, knobs, strip_directives(prompt.text), prompt_cache)
        except _InvalidRequest as exc:
            return _error(exc.status, exc.message)
        model, message_id = str(body["model"]), _random_id("msg_01")
        if body.get("stream"):
            events = _stream_events(plan, model, message_id, knobs)
            headers = {
                "request-id": _random_id("req_011C"),
                "cache-control": "no-cache",
                **_ratelimit_headers(),
            }
            return BreakableStream(_sse(events, knobs), headers=headers, media_type=_SSE_MEDIA_TYPE)
        await asyncio.sleep(knobs.ttft_ms / 1000)
        if knobs.tokens_per_second > 0:
            await asyncio.sleep(plan.usage.output_tokens / knobs.tokens_per_second)
        return _non_stream_response(_message_json(plan, model, message_id, knobs), knobs)

    async def count(request: Request) -> Response:
        prepared = await prepare(request, _COUNT_FIELDS, ("model", "messages"))
        if isinstance(prepared, Response):
            return prepared
        return Response(orjson.dumps({"input_tokens": prepared[1].input_tokens}), media_type="application/json")

    async def list_models(request: Request) -> Response:
        state.record(request, b"")
        if (denied := _auth_error(request, state)) is not None:
            return denied
        return Response(orjson.dumps(_model_page(request)), media_type="application/json")

    async def get_model(request: Request) -> Response:
        state.record(request, b"")
        if (denied := _auth_error(request, state)) is not None:
            return denied
        model_id = request.path_params["model_id"]
        found = [m for m in MODELS if m[0] == model_id]
        if not found:
            return _error(404, f"model: {model_id}")
        return Response(orjson.dumps(_model_json(found[0])), media_type="application/json")

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(status, "Not Found" if status == 404 else str(exc))

    routes = [
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:str}", get_model, methods=["GET"]),
        *control_routes(state),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


def _model_json(model: tuple[str, str, str]) -> dict[str, Any]:
    model_id, name, created = model
    return {
        "type": "model",
        "id": model_id,
        "display_name": name,
        "created_at": created,
        "lifecycle": "active",
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
    }


def _model_page(request: Request) -> dict[str, Any]:
    """``GET /v1/models`` with ``limit`` and ``after_id`` paging (what the SDK's pager sends), newest first."""
    ordered = sorted(MODELS, key=lambda m: m[2], reverse=True)
    ids = [m[0] for m in ordered]
    raw_limit = request.query_params.get("limit", "20")
    limit = max(1, min(1000, int(raw_limit))) if raw_limit.isdigit() else 20
    after = request.query_params.get("after_id")
    start = ids.index(after) + 1 if after in ids else 0
    page = ordered[start : start + limit]
    return {
        "data": [_model_json(m) for m in page],
        "has_more": start + len(page) < len(ordered),
        "first_id": page[0][0] if page else None,
        "last_id": page[-1][0] if page else None,
    }
