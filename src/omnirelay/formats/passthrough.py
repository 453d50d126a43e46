"""Minimal byte edits for same-format relaying: the client's body goes upstream as it was sent, except for the
model name (``model_map``) and, for OpenAI streams, ``stream_options.include_usage`` so the gateway can bill.

Re-serializing would change number formatting, key order or whitespace of bodies that may hold megabytes of base64;
editing the bytes keeps everything else identical. When an edit is ambiguous (the same ``"model":"x"`` text appears
twice) we fall back to re-serializing the parsed body, which is still equivalent JSON.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from omnirelay.formats.anthropic_stream import AnthropicStreamDecoder
from omnirelay.formats.gemini_stream import GeminiFrameReader, GeminiStreamDecoder
from omnirelay.formats.ir import (
    Format,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    UsageUpdate,
)
from omnirelay.formats.openai_chat import openai_usage_to_ir
from omnirelay.formats.sse import DONE, SSEParser
from omnirelay.formats.usage import Usage

_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.)*)"')


def replace_model(raw: bytes, body: dict[str, Any], new_model: str) -> bytes:
    old_model = body.get("model")
    if old_model == new_model:
        return raw
    matches = [m for m in _MODEL_FIELD.finditer(raw) if m.group(1) == orjson.dumps(old_model)[1:-1]]
    if len(matches) == 1:
        match = matches[0]
        return raw[: match.start(1)] + orjson.dumps(new_model)[1:-1] + raw[match.end(1) :]
    return orjson.dumps({**body, "model": new_model})


def ensure_stream_usage(raw: bytes, body: dict[str, Any]) -> tuple[bytes, bool]:
    """Ask an OpenAI upstream for the usage chunk. Returns the body and whether the client did NOT ask for it
    (then the relay must hide that chunk again)."""
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return raw, False
    if "stream_options" not in body and body:
        start = raw.find(b"{")
        return raw[: start + 1] + b'"stream_options":{"include_usage":true},' + raw[start + 1 :], True
    merged = dict(options) if isinstance(options, dict) else {}
    merged["include_usage"] = True
    return orjson.dumps({**body, "stream_options": merged}), True


class OpenAIPassthroughStream:
    """Relays an OpenAI SSE stream event by event while reading usage and the produced text from it.

    ``hide_usage``: the gateway asked for the usage chunk on the client's behalf, so that chunk is dropped and the
    ``"usage":null`` the upstream adds to the other chunks is removed, leaving exactly what the client asked for.
    """

    def __init__(self, hide_usage: bool) -> None:
        self._parser = SSEParser()
        self._hide_usage = hide_usage
        self.usage: Usage | None = None
        self.produced: list[str] = []
        """Content, reasoning and tool-argument text seen, for counting when no usage arrives."""
        self.finished = False
        """True once the upstream sent ``[DONE]``."""
        self.error: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> bytes:
        out = bytearray()
        for event in self._parser.feed(chunk):
            out += self._relay(event.data)
        return bytes(out)

    def finish(self) -> bytes:
        out = bytearray()
        for event in self._parser.flush():
            out += self._relay(event.data)
        return bytes(out)

    def _relay(self, data: str) -> bytes:
        if data.startswith("[DONE]"):
            self.finished = True
            return DONE
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""  # a broken event helps no client; the stream's end decides how the call is billed
        if not isinstance(payload, dict):
            return b""
        if "error" in payload:
            self.error = payload["error"] if isinstance(payload["error"], dict) else {"message": str(payload)}
        usage = payload.get("usage")
        if usage:
            self.usage = openai_usage_to_ir(usage)
        for choice in payload.get("choices") or ():
            self._collect(choice)
        if self._hide_usage:
            if usage and not payload.get("choices"):
                return b""
            data = data.replace(',"usage":null', "")
        return b"data: " + data.encode() + b"\n\n"

    def _collect(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        text = choice.get("text")  # legacy completions
        for piece in (delta.get("content"), delta.get("reasoning_content"), text):
            if piece:
                self.produced.append(piece)
        for call in delta.get("tool_calls") or ():
            arguments = (call.get("function") or {}).get("arguments")
            if arguments:
                self.produced.append(arguments)


class _SSEData:
    __slots__ = ("_parser",)

    def __init__(self) -> None:
        self._parser = SSEParser()

    def feed(self, chunk: bytes) -> list[str]:
        return [event.data for event in self._parser.feed(chunk)]

    def flush(self) -> list[str]:
        return [event.data for event in self._parser.flush()]


class ObservedStream:
    """Same-format relay for Anthropic and Gemini streams: the bytes go to the client exactly as they came; a
    decoder reads along to learn usage, produced text and whether the stream ended properly."""

    def __init__(self, fmt: Format) -> None:
        self._frames: _SSEData | GeminiFrameReader = GeminiFrameReader() if fmt == "gemini" else _SSEData()
        self._decoder: AnthropicStreamDecoder | GeminiStreamDecoder = (
            GeminiStreamDecoder() if fmt == "gemini" else AnthropicStreamDecoder()
        )
        self.usage: Usage | None = None
        self.produced: list[str] = []
        self.finished = False
        self.error: StreamError | None = None

    def feed(self, chunk: bytes) -> bytes:
        for payload in self._frames.feed(chunk):
            self._observe(self._decoder.feed(payload))
        return chunk

    def finish(self) -> bytes:
        for payload in self._frames.flush():
            self._observe(self._decoder.feed(payload))
        self._observe(self._decoder.close())
        return b""

    def _observe(self, events: list[StreamEvent]) -> None:
        for event in events:
            if isinstance(event, TextDelta | ThinkingDelta):
                self.produced.append(event.text)
            elif isinstance(event, ToolCallDelta):
                self.produced.append(event.arguments)
            elif isinstance(event, UsageUpdate):
                self.usage = event.usage
            elif isinstance(event, StreamStart) and event.usage is not None:
                self.usage = event.usage
            elif isinstance(event, StreamEnd):
                self.finished = event.complete
            elif isinstance(event, StreamError):
                self.error = event
