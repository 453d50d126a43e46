"""Canned OpenAI Chat Completions responses for the static upstream, shaped like the simulator's output.

Responses are built once per (model, stream, include_usage, knobs) and then served from a cache, so the
upstream costs almost nothing per request. A prompt directive ``[sim output_tokens=40]`` (the simulator's
syntax) sets the reply length; ``ttft_ms`` and ``tokens_per_second`` pace a stream like the simulator's knobs;
``fault=500 fault_rate=0.1`` answers that HTTP error (OpenAI's body for it) to that share of requests, drawn at
random per request, as the simulator does (``fault`` alone: every request).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import orjson

_DIRECTIVE = re.compile(rb"\[sim ([^\]]*)\]")
_WORDS = "the quick brown fox jump over lazy dog and then runs into green field where small birds sing".split()
_CREATED = 1_700_000_000
_USAGE_DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
PROMPT_TOKENS = 12


@dataclass(frozen=True, slots=True)
class Knobs:
    output_tokens: int = 16
    ttft_ms: float = 0.0
    tokens_per_second: float = 0.0
    fault: int = 0
    """An HTTP status to answer instead (0: none)."""
    fault_rate: float = 1.0
    """The share of requests that get ``fault``."""

    @property
    def paced(self) -> bool:
        return self.ttft_ms > 0 or self.tokens_per_second > 0


@dataclass(frozen=True, slots=True)
class Canned:
    """One response: the status line and headers, then body pieces written one by one (stream events)."""

    head: bytes
    pieces: tuple[bytes, ...]
    knobs: Knobs


def knobs_of(body: bytes) -> Knobs:
    values: dict[str, Any] = {}
    for match in _DIRECTIVE.finditer(body):
        for part in match.group(1).decode("utf-8", "replace").split():
            name, _, value = part.partition("=")
            try:
                if name == "output_tokens":
                    values[name] = max(0, int(value))
                elif name == "fault":
                    values[name] = int(value) if 400 <= int(value) <= 599 else 0
                elif name == "fault_rate":
                    values[name] = min(1.0, max(0.0, float(value)))
                elif name in ("ttft_ms", "tokens_per_second"):
                    values[name] = max(0.0, float(value))
            except ValueError:
                continue
    return Knobs(**values)


def _words(count: int) -> list[str]:
    return [(" " if i else "") + _WORDS[i % len(_WORDS)] for i in range(count)]


def _usage(completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion,
        "total_tokens": PROMPT_TOKENS + completion,
        **_USAGE_DETAILS,
    }


def _head(content_type: bytes, length: int | None) -> bytes:
    framing = b"transfer-encoding: chunked" if length is None else b"content-length: %d" % length
    return b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\n" + framing + b"\r\n\r\n"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def chat_body(model: str, knobs: Knobs) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-static",
            "object": "chat.completion",
            "created": _CREATED,
            "model": model,
            "system_fingerprint": "fp_static",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(_words(knobs.output_tokens)),
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(knobs.output_tokens),
        }
    )


def chat_events(model: str, knobs: Knobs, include_usage: bool) -> list[bytes]:
    """SSE events of a chat stream: role, one per token, finish, the usage chunk when asked, ``[DONE]``."""
    envelope = {
        "id": "chatcmpl-static",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": model,
        "system_fingerprint": "fp_static",
    }
    usage_null = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**envelope, "choices": [choice], **usage_null}) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word}) for word in _words(knobs.output_tokens)]
    events.append(chunk({}, "stop"))
    if include_usage:
        final = {**envelope, "choices": [], "usage": _usage(knobs.output_tokens)}
        events.append(b"data: " + orjson.dumps(final) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


FAULT_MESSAGE = "The server had an error while processing your request. Sorry about that!"


class CannedResponses:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._cache: dict[tuple[str, bool, bool, Knobs], Canned] = {}
        self._faults: dict[int, Canned] = {}
        self._random = (rng or random.Random()).random

    def for_chat(self, body: bytes) -> Canned:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            return self.error(400, "The request body is not valid JSON.")
        model = str(parsed.get("model") or "unknown")
        stream = parsed.get("stream") is True
        options = parsed.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        knobs = knobs_of(body)
        if knobs.fault and self._random() < knobs.fault_rate:
            fault = self._faults.get(knobs.fault)
            if fault is None:
                fault = self._faults[knobs.fault] = self.error(knobs.fault, FAULT_MESSAGE)
            return fault
        key = (model, stream, include_usage, knobs)
        canned = self._cache.get(key)
        if canned is None:
            canned = self._build(model, stream, include_usage, knobs)
            if len(self._cache) < 1024:
                self._cache[key] = canned
        return canned

    @staticmethod
    def _build(model: str, stream: bool, include_usage: bool, knobs: Knobs) -> Canned:
        if not stream:
            body = chat_body(model, knobs)
            return Canned(_head(b"application/json", len(body)), (body,), knobs)
        pieces = [_chunked(event) for event in chat_events(model, knobs, include_usage)]
        pieces.append(b"0\r\n\r\n")
        return Canned(_head(b"text/event-stream; charset=utf-8", None), tuple(pieces), knobs)

    @staticmethod
    def error(status: int, message: str) -> Canned:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        body = orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})
        reason = {
            400: b"Bad Request",
            404: b"Not Found",
            429: b"Too Many Requests",
            500: b"Internal Server Error",
            503: b"Service Unavailable",
        }.get(status, b"Error")
        head = (
            b"HTTP/1.1 %d " % status
            + reason
            + b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        return Canned(head, (body,), Knobs())
