"""OpenAI Chat Completions streams: upstream chunks → IR events, and IR events → the exact OpenAI framing.

Framing written (O2-O4): a role chunk first (``{"role":"assistant","content":""}``), then one chunk per delta,
tool calls with ``index``/``id``/``type``/``name`` on their first fragment and only ``arguments`` after, a
finish chunk per choice with ``delta:{}``, a usage chunk with ``choices:[]`` only when the client asked
``stream_options.include_usage``, and ``data: [DONE]``.
"""

from __future__ import annotations

import orjson

from omnirelay.formats._json import list_or_empty, obj_or_none, str_or_none
from omnirelay.formats.errors import error_event, upstream_error_from_openai
from omnirelay.formats.ir import (
    Finish,
    FinishReason,
    MediaOutput,
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
    synthetic_call_id,
    untag_signature,
)
from omnirelay.formats.openai_chat import (
    FINISH_FROM_IR,
    FINISH_TO_IR,
    image_output_entry,
    ir_usage_to_openai,
    openai_usage_to_ir,
    thinking_block_entry,
)
from omnirelay.formats.sse import DONE
from omnirelay.formats.usage import Usage

CUT_MESSAGE = "the upstream stream ended before it was complete"
MALFORMED_MESSAGE = "the upstream sent a malformed stream event"


_TEXT_DELTA = frozenset(("role", "content"))
"""The keys of a delta that carries nothing but text (what most chunks of every stream are)."""


class OpenAIStreamDecoder:
    """Feed it each SSE ``data`` payload of an OpenAI chat stream; ``close()`` when the bytes end."""

    __slots__ = ("_calls", "_ended", "_finished", "_seen", "_started")

    def __init__(self) -> None:
        self._started = False
        self._ended = False
        self._seen: set[int] = set()
        self._finished: set[int] = set()
        self._calls: set[tuple[int, int]] = set()

    def feed(self, data: str) -> list[StreamEvent]:
        if self._ended:
            return []
        if data.startswith("[DONE]"):
            self._ended = True
            return [StreamEnd(complete=True)]
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            chunk = None
        if not isinstance(chunk, dict):
            self._ended = True
            return [StreamError(MALFORMED_MESSAGE)]
        if chunk.get("error") is not None:
            self._ended = True
            parsed = upstream_error_from_openai(200, chunk)
            return [StreamError(parsed.message, parsed.code)]
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(StreamStart(str_or_none(chunk.get("id")) or "", str_or_none(chunk.get("model")) or ""))
        for item in list_or_empty(chunk.get("choices")):
            choice = obj_or_none(item)
            if choice is not None:
                self._choice(choice, events)
        usage = obj_or_none(chunk.get("usage"))
        if usage is not None:
            events.append(UsageUpdate(openai_usage_to_ir(usage)))
        return events

    def _choice(self, choice: dict[str, object], events: list[StreamEvent]) -> None:
        index = choice.get("index")
        idx = index if isinstance(index, int) else 0
        self._seen.add(idx)
        delta = choice.get("delta")
        if type(delta) is dict and delta.keys() <= _TEXT_DELTA:  # the usual chunk: a piece of text, nothing else
            content = delta.get("content")
            if content and type(content) is str:
                events.append(TextDelta(content, idx))
        else:
            self._delta(obj_or_none(delta) or {}, idx, events)
        finish = str_or_none(choice.get("finish_reason"))
        if finish is not None:
            self._finished.add(idx)
            events.append(Finish(FINISH_TO_IR.get(finish, FinishReason.OTHER), idx))

    def _delta(self, delta: dict[str, object], idx: int, events: list[StreamEvent]) -> None:
        reasoning = str_or_none(delta.get("reasoning_content")) or str_or_none(delta.get("reasoning"))
        if reasoning:
            events.append(ThinkingDelta(reasoning, idx))
        for raw_block in list_or_empty(delta.get("thinking_blocks")):
            block = obj_or_none(raw_block) or {}
            if block.get("type") == "redacted_thinking":
                events.append(RedactedThinking(str_or_none(block.get("data")) or "", idx))
            elif block.get("signature"):
                signature, origin = untag_signature(str_or_none(block.get("signature")) or "", "anthropic")
                events.append(ThinkingSignature(signature, origin, idx))
        content = str_or_none(delta.get("content"))
        if content:
            events.append(TextDelta(content, idx))
        refusal = str_or_none(delta.get("refusal"))
        if refusal:
            events.append(TextDelta(refusal, idx))
        for raw in list_or_empty(delta.get("tool_calls")):
            call = obj_or_none(raw)
            if call is None:
                continue
            position = call.get("index")
            pos = position if isinstance(position, int) else 0
            function = obj_or_none(call.get("function")) or {}
            if (idx, pos) not in self._calls:
                self._calls.add((idx, pos))
                google = obj_or_none((obj_or_none(call.get("extra_content")) or {}).get("google"))
                google_signature = str_or_none(google.get("thought_signature")) if google else None
                if google_signature:
                    events.append(ThinkingSignature(google_signature, "gemini", idx))
                call_id = str_or_none(call.get("id")) or synthetic_call_id(str(idx), pos)
                name = str_or_none(function.get("name")) or ""
                events.append(ToolCallStart(pos, call_id, name, idx))
            arguments = str_or_none(function.get("arguments"))
            if arguments:
                events.append(ToolCallDelta(pos, arguments, idx))

    def close(self) -> list[StreamEvent]:
        if self._ended:
            return []
        self._ended = True
        complete = self._started and bool(self._finished) and self._seen <= self._finished
        return [StreamEnd(complete=complete)]


class OpenAIStreamEncoder:
    """IR events → OpenAI chunk bytes. One per call; ``model`` overrides the upstream's name."""

    __slots__ = (
        "_calls",
        "_created",
        "_done",
        "_finished",
        "_id",
        "_include_usage",
        "_model",
        "_prefix",
        "_roles",
        "_signature",
        "_thinking",
        "_thinking_blocks",
        "_usage",
    )

    def __init__(self, *, model: str | None = None, created: int = 0, include_usage: bool = False) -> None:
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._id = ""
        self._prefix = b""
        self._roles: set[int] = set()
        self._finished: set[int] = set()
        self._calls: set[tuple[int, int]] = set()
        self._signature: dict[int, str] = {}
        self._thinking: dict[int, list[str]] = {}
        """Reasoning text since the last signature, per choice: an Anthropic block is shown whole once signed."""
        self._thinking_blocks: dict[int, int] = {}
        self._usage: Usage | None = None
        self._done = False

    def _start(self, response_id: str, model: str) -> None:
        self._id = response_id or "chatcmpl-omnirelay"
        self._prefix = (
            b'data: {"id":'
            + orjson.dumps(self._id)
            + b',"object":"chat.completion.chunk","created":'
            + str(self._created).encode()
            + b',"model":'
            + orjson.dumps(self._model or model)
            + b',"choices":['
        )

    def _chunk(self, choice: int, delta: dict[str, object], finish: str | None = None) -> bytes:
        body = {"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._prefix + orjson.dumps(body) + b"]}\n\n"

    def _role(self, choice: int) -> bytes:
        if not self._prefix:
            self._start("", "")
        if choice in self._roles:
            return b""
        self._roles.add(choice)
        return self._chunk(choice, {"role": "assistant", "content": ""})

    def encode(self, event: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(event, StreamStart):
            if not self._prefix:
                self._start(event.id, event.model)
            return self._role(0)
        if isinstance(event, TextDelta):
            self._signature.pop(event.choice, None)  # a Gemini signature on text is not a call's
            return self._role(event.choice) + self._chunk(event.choice, {"content": event.text})
        if isinstance(event, ThinkingDelta):
            self._thinking.setdefault(event.choice, []).append(event.text)
            return self._role(event.choice) + self._chunk(event.choice, {"reasoning_content": event.text})
        if isinstance(event, ThinkingSignature):
            text = "".join(self._thinking.pop(event.choice, ()))
            if event.origin == "gemini":
                self._signature[event.choice] = event.signature
                return b""
            return self._block(event.choice, ThinkingPart(text, event.signature, event.origin))
        if isinstance(event, RedactedThinking):
            return self._block(event.choice, ThinkingPart(event.data, None, "anthropic", redacted=True))
        if isinstance(event, ToolCallStart):
            return self._role(event.choice) + self._tool_start(event)
        if isinstance(event, ToolCallDelta):
            if not event.arguments:
                return b""
            fragment = {"index": event.index, "function": {"arguments": event.arguments}}
            return self._role(event.choice) + self._chunk(event.choice, {"tool_calls": [fragment]})
        if isinstance(event, MediaOutput):
            if event.part.kind != "image" or event.part.data is None:
                return b""
            return self._role(event.choice) + self._chunk(event.choice, {"images": [image_output_entry(event.part)]})
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return b""
        if isinstance(event, Finish):
            if event.choice in self._finished:
                return b""
            self._finished.add(event.choice)
            return self._role(event.choice) + self._chunk(event.choice, {}, FINISH_FROM_IR[event.reason])
        if isinstance(event, StreamError):
            self._done = True
            return error_event("openai", event.code, event.message)
        if isinstance(event, StreamEnd):
            return self._end(event.complete)
        return b""

    def _block(self, choice: int, part: ThinkingPart) -> bytes:
        index = self._thinking_blocks.get(choice, 0)
        self._thinking_blocks[choice] = index + 1
        delta: dict[str, object] = {"thinking_blocks": [thinking_block_entry(index, part)]}
        return self._role(choice) + self._chunk(choice, delta)

    def _tool_start(self, event: ToolCallStart) -> bytes:
        key = (event.choice, event.index)
        if key in self._calls:
            return b""
        self._calls.add(key)
        call: dict[str, object] = {
            "index": event.index,
            "id": event.id,
            "type": "function",
            "function": {"name": event.name, "arguments": ""},
        }
        signature = self._signature.pop(event.choice, None)
        if signature is not None:
            call["extra_content"] = {"google": {"thought_signature": signature}}
        return self._chunk(event.choice, {"tool_calls": [call]})

    def _end(self, complete: bool) -> bytes:
        self._done = True
        if not complete:
            return error_event("openai", "upstream_error", CUT_MESSAGE)
        out = bytearray(self._role(0) if not self._roles else b"")
        for choice in sorted(self._roles - self._finished):
            out += self._chunk(choice, {}, FINISH_FROM_IR[FinishReason.END_TURN])
        if self._include_usage and self._usage is not None:
            usage = orjson.dumps(ir_usage_to_openai(self._usage))
            out += self._prefix + b'],"usage":' + usage + b"}\n\n"
        out += DONE
        return bytes(out)
