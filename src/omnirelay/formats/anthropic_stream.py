"""Anthropic Messages streams: upstream events → IR events, and IR events → the exact Anthropic framing.

Framing written (A2-A4): ``message_start`` then ``ping``; per block ``content_block_start``, its deltas and
``content_block_stop`` with indexes in content order; ``message_delta`` with ``stop_reason`` and cumulative
usage; ``message_stop``. Upstreams that report input usage only at the end (OpenAI) get ``input_tokens`` = the
caller's estimate (or 0) in ``message_start`` and the real numbers in ``message_delta``: the SDK's accumulator
overwrites the snapshot with every usage field ``message_delta`` carries.
"""

from __future__ import annotations

import orjson

from omnirelay.formats._json import obj_or_none, str_or_none
from omnirelay.formats.anthropic_messages import (
    JSON_TOOL,
    STOP_FROM_IR,
    STOP_TO_IR,
    anthropic_usage_to_ir,
    ir_usage_to_anthropic,
    safe_tool_id,
    thinking_block,
)
from omnirelay.formats.errors import error_event, upstream_error_from_anthropic
from omnirelay.formats.ir import (
    Finish,
    FinishReason,
    RedactedThinking,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ThinkingPart,
    ThinkingSignature,
    ToolCallDelta,
    ToolCallStart,
    UsageUpdate,
    tag_signature,
)
from omnirelay.formats.sse import encode_event
from omnirelay.formats.usage import Usage

CUT_MESSAGE = "the upstream stream ended before it was complete"
MALFORMED_MESSAGE = "the upstream sent a malformed stream event"
PING = encode_event("ping", b'{"type": "ping"}')


class AnthropicStreamDecoder:
    """Feed it each SSE ``data`` payload of a Messages stream; ``close()`` when the bytes end.

    ``json_tool``: the request asked for structured output through :data:`JSON_TOOL`; that call's input is
    streamed as text and its ``tool_use`` stop becomes ``end_turn``."""

    __slots__ = ("_blocks", "_calls", "_ended", "_finished", "_json_tool", "_started", "_usage")

    def __init__(self, *, json_tool: bool = False) -> None:
        self._json_tool = json_tool
        self._started = False
        self._ended = False
        self._finished = False
        self._blocks: dict[int, tuple[str, int]] = {}
        """Block index → (kind, tool-call position)."""
        self._calls = 0
        self._usage: dict[str, object] = {}

    def feed(self, data: str) -> list[StreamEvent]:
        if self._ended:
            return []
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            self._ended = True
            return [StreamError(MALFORMED_MESSAGE)]
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "message_start":
            return self._message_start(event)
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            self._ended = True
            return [StreamEnd(complete=True)]
        if kind == "error":
            self._ended = True
            parsed = upstream_error_from_anthropic(200, event)
            return [StreamError(parsed.message, parsed.code)]
        return []  # ping, content_block_stop, and event types added later

    def _message_start(self, event: dict[str, object]) -> list[StreamEvent]:
        message = obj_or_none(event.get("message")) or {}
        self._started = True
        usage = obj_or_none(message.get("usage"))
        if usage is not None:
            self._usage.update(usage)
        return [
            StreamStart(
                str_or_none(message.get("id")) or "",
                str_or_none(message.get("model")) or "",
                anthropic_usage_to_ir(usage) if usage is not None else None,
            )
        ]

    def _block_start(self, event: dict[str, object]) -> list[StreamEvent]:
        index = event.get("index")
        block = obj_or_none(event.get("content_block")) or {}
        kind = block.get("type")
        idx = index if isinstance(index, int) else len(self._blocks)
        if kind == "text":
            self._blocks[idx] = ("text", -1)
            text = str_or_none(block.get("text"))
            return [TextDelta(text)] if text else []
        if kind == "thinking":
            self._blocks[idx] = ("thinking", -1)
            text = str_or_none(block.get("thinking"))
            return [ThinkingDelta(text)] if text else []
        if kind == "redacted_thinking":
            self._blocks[idx] = ("redacted", -1)
            return [RedactedThinking(str_or_none(block.get("data")) or "")]
        if kind == "tool_use":
            name = str_or_none(block.get("name")) or ""
            if self._json_tool and name == JSON_TOOL:
                self._blocks[idx] = ("json", -1)
                return []
            position = self._calls
            self._calls += 1
            self._blocks[idx] = ("tool", position)
            events: list[StreamEvent] = [ToolCallStart(position, str_or_none(block.get("id")) or "", name)]
            given = obj_or_none(block.get("input"))
            if given:
                events.append(ToolCallDelta(position, orjson.dumps(given).decode()))
            return events
        self._blocks[idx] = ("other", -1)
        return []

    def _delta(self, event: dict[str, object]) -> list[StreamEvent]:
        index = event.get("index")
        block_kind, position = self._blocks.get(index if isinstance(index, int) else -1, ("other", -1))
        delta = obj_or_none(event.get("delta")) or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = str_or_none(delta.get("text"))
            return [TextDelta(text)] if text else []
        if kind == "input_json_delta":
            fragment = str_or_none(delta.get("partial_json"))
            if not fragment:
                return []
            if block_kind == "json":
                return [TextDelta(fragment)]
            return [ToolCallDelta(position, fragment)] if block_kind == "tool" else []
        if kind == "thinking_delta":
            text = str_or_none(delta.get("thinking"))
            return [ThinkingDelta(text)] if text else []
        if kind == "signature_delta":
            signature = str_or_none(delta.get("signature"))
            return [ThinkingSignature(signature, "anthropic")] if signature else []
        return []

    def _message_delta(self, event: dict[str, object]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        usage = obj_or_none(event.get("usage"))
        if usage is not None:
            self._usage.update((k, v) for k, v in usage.items() if v is not None)
            events.append(UsageUpdate(anthropic_usage_to_ir(self._usage)))
        delta = obj_or_none(event.get("delta")) or {}
        stop = str_or_none(delta.get("stop_reason"))
        if stop is not None:
            reason = STOP_TO_IR.get(stop, FinishReason.OTHER)
            answered = any(kind == "json" for kind, _ in self._blocks.values())
            if answered and reason == FinishReason.TOOL_USE and self._calls == 0:
                reason = FinishReason.END_TURN
            self._finished = True
            events.append(Finish(reason, 0, str_or_none(delta.get("stop_sequence"))))
        return events

    def close(self) -> list[StreamEvent]:
        if self._ended:
            return []
        self._ended = True
        return [StreamEnd(complete=self._started and self._finished)]


def _event(name: str, body: dict[str, object]) -> bytes:
    return encode_event(name, orjson.dumps(body))


class AnthropicStreamEncoder:
    """IR events → Anthropic SSE bytes. One per call; only choice 0 exists for an Anthropic client."""

    __slots__ = (
        "_done",
        "_estimate",
        "_finish",
        "_id",
        "_model",
        "_next",
        "_open",
        "_started",
        "_stop_sequence",
        "_tools",
        "_usage",
    )

    def __init__(self, *, model: str | None = None, input_tokens_estimate: int = 0) -> None:
        self._model = model
        self._estimate = input_tokens_estimate
        self._id = ""
        self._started = False
        self._next = 0
        self._open: str | None = None
        self._tools: dict[int, int] = {}
        """Tool-call position → block index."""
        self._finish: FinishReason | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None
        self._done = False

    def _start(self, response_id: str, model: str, usage: Usage | None) -> bytes:
        self._started = True
        self._id = response_id or "msg_omnirelay"
        if usage is not None:
            start_usage = ir_usage_to_anthropic(usage)
        else:
            start_usage = ir_usage_to_anthropic(Usage(input_tokens=self._estimate))
        message: dict[str, object] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model or model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        return _event("message_start", {"type": "message_start", "message": message}) + PING

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._next - 1})

    def _open_block(self, kind: str, block: dict[str, object]) -> bytes:
        out = self._close()
        self._open = kind
        index = self._next
        self._next += 1
        return out + _event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )

    def _delta(self, delta: dict[str, object]) -> bytes:
        body = {"type": "content_block_delta", "index": self._next - 1, "delta": delta}
        return _event("content_block_delta", body)

    def encode(self, event: StreamEvent) -> bytes:
        if self._done:
            return b""
        head = b""
        if not self._started:
            if isinstance(event, StreamStart):
                return self._start(event.id, event.model, event.usage)
            head = self._start("", "", None)
        if getattr(event, "choice", 0) != 0:
            return head
        return head + self._encode(event)

    def _encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            out = b"" if self._open == "text" else self._open_block("text", {"type": "text", "text": ""})
            return out + self._delta({"type": "text_delta", "text": event.text})
        if isinstance(event, ThinkingDelta):
            out = b""
            if self._open != "thinking":
                out = self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            return out + self._delta({"type": "thinking_delta", "thinking": event.text})
        if isinstance(event, ThinkingSignature):
            out = b""
            if self._open != "thinking" or event.origin != "anthropic":
                # Another vendor's signature belongs to the part after it, not to the thoughts: own block.
                out = self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            signature = tag_signature(event.signature, event.origin, "anthropic")
            return out + self._delta({"type": "signature_delta", "signature": signature}) + self._close()
        if isinstance(event, RedactedThinking):
            block = thinking_block(ThinkingPart(event.data, None, "anthropic", redacted=True))
            return self._open_block("redacted", block) + self._close()
        if isinstance(event, ToolCallStart):
            block = {"type": "tool_use", "id": safe_tool_id(event.id), "name": event.name, "input": {}}
            out = self._open_block("tool", block)
            self._tools[event.index] = self._next - 1
            return out
        if isinstance(event, ToolCallDelta):
            if self._open != "tool" or self._tools.get(event.index) != self._next - 1 or not event.arguments:
                return b""
            return self._delta({"type": "input_json_delta", "partial_json": event.arguments})
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return b""
        if isinstance(event, Finish):
            self._finish = event.reason
            self._stop_sequence = event.stop_sequence
            return self._close()
        if isinstance(event, StreamError):
            self._done = True
            return self._close() + error_event("anthropic", event.code, event.message)
        if isinstance(event, StreamEnd):
            return self._end(event.complete)
        return b""

    def _end(self, complete: bool) -> bytes:
        self._done = True
        out = self._close()
        if not complete:
            return out + error_event("anthropic", "upstream_error", CUT_MESSAGE)
        finish = self._finish or (FinishReason.TOOL_USE if self._tools else FinishReason.END_TURN)
        usage = ir_usage_to_anthropic(self._usage or Usage(input_tokens=self._estimate))
        delta = {
            "stop_reason": STOP_FROM_IR[finish],
            "stop_sequence": self._stop_sequence if finish == FinishReason.STOP_SEQUENCE else None,
        }
        out += _event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return out + _event("message_stop", {"type": "message_stop"})
