"""Gemini streamGenerateContent: framing, upstream chunks → IR events, IR events → Gemini chunks.

Every Gemini chunk is a whole ``GenerateContentResponse`` with running (cumulative) ``usageMetadata``. Two
framings exist (G2): ``alt=sse`` (``data: {...}\\r\\n\\r\\n``, no terminator) and, without ``alt``, one JSON
array streamed element by element. An error inside a stream comes as a bare, pretty-printed ``{"error": ...}``
object. Function calls arrive whole (no argument deltas), so the encoder holds a call's argument deltas until
the call is complete; text and thoughts are written as they come.
"""

from __future__ import annotations

import orjson

from omnirelay.formats._json import list_or_empty, obj_or_none, str_or_none
from omnirelay.formats.errors import error_event, upstream_error_from_gemini
from omnirelay.formats.gemini import (
    FINISH_FROM_IR,
    FINISH_TO_IR,
    gemini_usage_to_ir,
    ir_usage_to_gemini,
    loose_arguments,
    standard_base64,
    wrap_signature,
)
from omnirelay.formats.images import kind_of
from omnirelay.formats.ir import (
    SYNTHETIC_ID_PREFIX,
    Finish,
    FinishReason,
    MediaOutput,
    MediaPart,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ThinkingSignature,
    ToolCallDelta,
    ToolCallStart,
    UsageUpdate,
    synthetic_call_id,
)
from omnirelay.formats.usage import Usage

CUT_MESSAGE = "the upstream stream ended before it was complete"
MALFORMED_MESSAGE = "the upstream sent a malformed stream event"


class GeminiFrameReader:
    """Bytes of a Gemini stream body → the JSON text of each chunk, for either framing, any split."""

    __slots__ = (
        "_array", "_buffer", "_data", "_depth", "_escape", "_mode", "_pending", "_raw", "_scan", "_skip_lf",
        "_start", "_string",
    )  # fmt: skip

    def __init__(self) -> None:
        self._mode: str | None = None
        self._pending = b""
        self._skip_lf = False
        self._data: list[str] = []
        self._raw: list[str] = []
        self._buffer = bytearray()
        self._scan = 0
        self._depth = 0
        self._start = -1
        self._string = False
        self._escape = False
        self._array = False

    def feed(self, chunk: bytes) -> list[str]:
        if self._mode is None:
            stripped = (self._pending + chunk).lstrip()
            if not stripped:
                self._pending += chunk
                return []
            self._mode = "array" if stripped.startswith(b"[") else "sse"
            chunk, self._pending = self._pending + chunk, b""
        if self._mode == "array":
            self._buffer += chunk
            return self._scan_array()
        out: list[str] = []
        for line in self._lines(chunk):
            self._line(line.decode("utf-8", errors="replace"), out)
        return out

    def flush(self) -> list[str]:
        out: list[str] = []
        if self._mode == "sse":
            if self._pending:
                self._line(self._pending.decode("utf-8", errors="replace"), out)
                self._pending = b""
            self._line("", out)
            if self._raw:
                out.append("\n".join(self._raw))
                self._raw = []
        elif self._mode == "array" and self._start >= 0:
            out.append(self._buffer[self._start :].decode("utf-8", errors="replace"))
            self._start = -1
        return out

    def _lines(self, chunk: bytes) -> list[bytes]:
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._skip_lf = False
        data = self._pending + chunk
        if not data:
            return []
        lines = data.splitlines()
        if data.endswith((b"\n", b"\r")):
            self._pending = b""
            self._skip_lf = data.endswith(b"\r")
        else:
            self._pending = lines.pop()
        return lines

    def _line(self, line: str, out: list[str]) -> None:
        if not line:
            if self._data:
                out.append("\n".join(self._data))
                self._data = []
            return
        if line.startswith("data:"):
            self._data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif line.startswith((":", "event:", "id:", "retry:")):
            return
        else:  # a bare JSON object, as Gemini sends errors mid-stream
            self._raw.append(line)
            if line.startswith("}"):
                text = "\n".join(self._raw)
                try:
                    orjson.loads(text)
                except orjson.JSONDecodeError:
                    return
                out.append(text)
                self._raw = []

    def _scan_array(self) -> list[str]:
        out: list[str] = []
        buffer = self._buffer
        i = self._scan
        end = len(buffer)
        while i < end:
            byte = buffer[i]
            if self._string:
                if self._escape:
                    self._escape = False
                elif byte == 0x5C:  # backslash
                    self._escape = True
                elif byte == 0x22:
                    self._string = False
            elif byte == 0x22:
                self._string = True
            elif byte in (0x7B, 0x5B):  # { [
                if not self._array and byte == 0x5B:
                    self._array = True
                else:
                    if self._depth == 0:
                        self._start = i
                    self._depth += 1
            elif byte in (0x7D, 0x5D) and self._depth > 0:  # } ]
                self._depth -= 1
                if self._depth == 0:
                    out.append(buffer[self._start : i + 1].decode("utf-8", errors="replace"))
                    self._start = -1
            i += 1
        if self._start < 0:
            del buffer[:end]
            self._scan = 0
        else:
            del buffer[: self._start]
            self._scan = end - self._start
            self._start = 0
        return out


class GeminiStreamDecoder:
    """Feed it the JSON text of each chunk (see :class:`GeminiFrameReader`); ``close()`` when the bytes end.
    Gemini has no final event: a stream is complete when every candidate it showed has a ``finishReason``."""

    __slots__ = ("_calls", "_ended", "_finished", "_seen", "_started")

    def __init__(self) -> None:
        self._started = False
        self._ended = False
        self._seen: set[int] = set()
        self._finished: set[int] = set()
        self._calls: dict[int, int] = {}

    def feed(self, data: str) -> list[StreamEvent]:
        if self._ended:
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            chunk = None
        if isinstance(chunk, list) and len(chunk) == 1:
            chunk = chunk[0]
        if not isinstance(chunk, dict):
            self._ended = True
            return [StreamError(MALFORMED_MESSAGE)]
        if chunk.get("error") is not None:
            self._ended = True
            parsed = upstream_error_from_gemini(200, chunk)
            return [StreamError(parsed.message, parsed.code)]
        events: list[StreamEvent] = []
        response_id = str_or_none(chunk.get("responseId")) or ""
        usage_raw = obj_or_none(chunk.get("usageMetadata"))
        usage = gemini_usage_to_ir(usage_raw) if usage_raw is not None else None
        if not self._started:
            self._started = True
            events.append(StreamStart(response_id, str_or_none(chunk.get("modelVersion")) or "", usage))
        finishes: list[StreamEvent] = []
        for i, raw in enumerate(list_or_empty(chunk.get("candidates"))):
            candidate = obj_or_none(raw)
            if candidate is not None:
                self._candidate(candidate, i, response_id, events, finishes)
        feedback = obj_or_none(chunk.get("promptFeedback"))
        if feedback is not None and feedback.get("blockReason") and 0 not in self._finished:
            self._seen.add(0)
            self._finished.add(0)
            finishes.append(Finish(FinishReason.CONTENT_FILTER, 0))
        if usage is not None:
            events.append(UsageUpdate(usage))
        events.extend(finishes)
        return events

    def _candidate(
        self,
        candidate: dict[str, object],
        i: int,
        response_id: str,
        events: list[StreamEvent],
        finishes: list[StreamEvent],
    ) -> None:
        index = candidate.get("index")
        idx = index if isinstance(index, int) else i
        self._seen.add(idx)
        content = obj_or_none(candidate.get("content")) or {}
        for raw in list_or_empty(content.get("parts")):
            part = obj_or_none(raw)
            if part is None:
                continue
            signature = str_or_none(part.get("thoughtSignature"))
            text = str_or_none(part.get("text"))
            if part.get("thought") is True:
                if text:
                    events.append(ThinkingDelta(text, idx))
                if signature:
                    events.append(ThinkingSignature(signature, "gemini", idx))
                continue
            if signature:
                events.append(ThinkingSignature(signature, "gemini", idx))
            call = obj_or_none(part.get("functionCall"))
            inline = obj_or_none(part.get("inlineData"))
            if text:
                events.append(TextDelta(text, idx))
            elif inline is not None and isinstance(inline.get("data"), str):
                media_type = str_or_none(inline.get("mimeType")) or "application/octet-stream"
                image = MediaPart(kind_of(media_type), media_type, data=standard_base64(str(inline["data"])))
                events.append(MediaOutput(image, idx))
            elif call is not None:
                position = self._calls.get(idx, 0)
                self._calls[idx] = position + 1
                scope = response_id if idx == 0 else f"{response_id}_c{idx}"
                call_id = str_or_none(call.get("id")) or synthetic_call_id(scope, position)
                events.append(ToolCallStart(position, call_id, str_or_none(call.get("name")) or "", idx))
                events.append(ToolCallDelta(position, orjson.dumps(call.get("args") or {}).decode(), idx))
        finish = str_or_none(candidate.get("finishReason"))
        if finish is not None and idx not in self._finished:
            self._finished.add(idx)
            reason = FINISH_TO_IR.get(finish, FinishReason.OTHER)
            if reason == FinishReason.END_TURN and self._calls.get(idx):
                reason = FinishReason.TOOL_USE
            finishes.append(Finish(reason, idx))

    def close(self) -> list[StreamEvent]:
        if self._ended:
            return []
        self._ended = True
        complete = self._started and bool(self._finished) and self._seen <= self._finished
        return [StreamEnd(complete=complete)]


class GeminiStreamEncoder:
    """IR events → Gemini chunks, as ``alt=sse`` SSE (``sse=True``) or the JSON-array stream."""

    __slots__ = ("_calls", "_done", "_finishes", "_first", "_id", "_model", "_signature", "_sse", "_usage")

    def __init__(self, *, model: str | None = None, sse: bool = True) -> None:
        self._model = model or ""
        self._sse = sse
        self._id = ""
        self._first = True
        self._calls: dict[tuple[int, int], list[str]] = {}
        """(choice, position) → [id, name, argument text]."""
        self._signature: dict[int, str] = {}
        self._finishes: dict[int, FinishReason] = {}
        self._usage: Usage | None = None
        self._done = False

    def _frame(self, body: dict[str, object]) -> bytes:
        payload = orjson.dumps(body)
        if self._sse:
            return b"data: " + payload + b"\r\n\r\n"
        prefix = b"[" if self._first else b",\r\n"
        self._first = False
        return prefix + payload

    def _chunk(self, candidates: list[dict[str, object]]) -> bytes:
        body: dict[str, object] = {"candidates": candidates}
        if self._usage is not None:
            body["usageMetadata"] = ir_usage_to_gemini(self._usage)
        body["modelVersion"] = self._model
        body["responseId"] = self._id
        return self._frame(body)

    def _part_chunk(self, choice: int, part: dict[str, object]) -> bytes:
        out = self._flush_calls(choice)
        signature = self._signature.pop(choice, None)
        if signature is not None:
            part["thoughtSignature"] = signature
        candidate = {"content": {"parts": [part], "role": "model"}, "index": choice}
        return out + self._chunk([candidate])

    def _call_parts(self, choice: int) -> list[dict[str, object]]:
        parts: list[dict[str, object]] = []
        for key in sorted(k for k in self._calls if k[0] == choice):
            call_id, name, arguments = self._calls.pop(key)
            call: dict[str, object] = {"name": name, "args": loose_arguments(arguments)}
            if not call_id.startswith(SYNTHETIC_ID_PREFIX):
                call["id"] = call_id
            part: dict[str, object] = {"functionCall": call}
            signature = self._signature.pop(choice, None)
            if signature is not None:
                part["thoughtSignature"] = signature
            parts.append(part)
        return parts

    def _flush_calls(self, choice: int) -> bytes:
        parts = self._call_parts(choice)
        if not parts:
            return b""
        return self._chunk([{"content": {"parts": parts, "role": "model"}, "index": choice}])

    def encode(self, event: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(event, TextDelta):
            return self._part_chunk(event.choice, {"text": event.text})
        if isinstance(event, ThinkingDelta):
            return self._part_chunk(event.choice, {"text": event.text, "thought": True})
        if isinstance(event, ThinkingSignature):
            self._signature[event.choice] = wrap_signature(event.signature, event.origin)
            return b""
        if isinstance(event, ToolCallStart):
            self._calls[(event.choice, event.index)] = [event.id, event.name, ""]
            return b""
        if isinstance(event, ToolCallDelta):
            call = self._calls.get((event.choice, event.index))
            if call is not None:
                call[2] += event.arguments
            return b""
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return b""
        if isinstance(event, Finish):
            self._finishes.setdefault(event.choice, event.reason)
            return b""
        if isinstance(event, StreamStart):
            self._id = event.id
            self._model = self._model or event.model
            if event.usage is not None:
                self._usage = event.usage
            return b""
        if isinstance(event, StreamError):
            return self._error(event.code, event.message)
        if isinstance(event, StreamEnd):
            return self._end(event.complete)
        return b""  # RedactedThinking: Anthropic-only

    def _error(self, code: str, message: str) -> bytes:
        self._done = True
        payload = error_event("gemini", code, message, gemini_sse=self._sse)
        if self._sse:
            return payload
        return (b"[" if self._first else b",\r\n") + payload + b"]"

    def _end(self, complete: bool) -> bytes:
        if not complete:
            choices = {key[0] for key in self._calls}
            out = b"".join(self._flush_calls(choice) for choice in sorted(choices))
            return out + self._error("upstream_error", CUT_MESSAGE)
        self._done = True
        seen = sorted(set(self._finishes) | {key[0] for key in self._calls} | set(self._signature) or {0})
        candidates: list[dict[str, object]] = []
        for choice in seen:
            parts = self._call_parts(choice)
            signature = self._signature.pop(choice, None)
            if signature is not None:
                parts.append({"text": "", "thoughtSignature": signature})
            finish = self._finishes.get(choice, FinishReason.END_TURN)
            candidate: dict[str, object] = {
                "content": {"parts": parts or [{"text": ""}], "role": "model"},
                "finishReason": FINISH_FROM_IR[finish],
                "index": choice,
            }
            candidates.append(candidate)
        out = self._chunk(candidates)
        return out if self._sse else out + b"]"
