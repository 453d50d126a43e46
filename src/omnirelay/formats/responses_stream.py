"""OpenAI Responses streams: IR events → the Responses event sequence, and a passthrough tap for OpenAI's own.

Framing written (wire-examples O8): every event is ``event: <type>`` plus ``data: {"type": <type>, ...,
"sequence_number": n}``, numbered from 0; no ``[DONE]``. ``response.created`` and ``response.in_progress`` open
the stream; each output item (a ``reasoning`` summary, the ``message``, each ``function_call``) is announced with
``response.output_item.added``, filled by its deltas, and closed with its ``*.done`` events before the next one
opens; ``response.completed`` (or ``response.incomplete``) repeats the whole Response with its usage. A broken
upstream ends the stream with an ``error`` event instead.
"""

from __future__ import annotations

from typing import Any

import orjson

from omnirelay.formats.ir import (
    Finish,
    FinishReason,
    JSONObject,
    MediaOutput,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    UsageUpdate,
)
from omnirelay.formats.openai_responses import (
    function_call_item,
    image_item,
    message_item,
    output_text,
    reasoning_item,
    response_echo,
    response_id,
    response_object,
    response_status,
    responses_usage_to_ir,
)
from omnirelay.formats.sse import SSEParser, encode_event
from omnirelay.formats.usage import Usage

CUT_MESSAGE = "the upstream stream ended before it was complete"
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesStreamEncoder:
    """IR events → Responses SSE bytes, for the first choice. One per call."""

    __slots__ = (
        "_args",
        "_call",
        "_calls",
        "_created",
        "_done",
        "_echo",
        "_finish",
        "_id",
        "_kind",
        "_model",
        "_output",
        "_seq",
        "_started",
        "_text",
        "_usage",
    )

    def __init__(self, *, model: str | None = None, created: int = 0, echo: JSONObject | None = None) -> None:
        self._model = model or ""
        self._created = created
        self._echo = echo or response_echo({})
        self._id = ""
        self._seq = 0
        self._started = False
        self._done = False
        self._output: list[JSONObject] = []
        """Finished output items, in order."""
        self._kind: str | None = None
        """The open item: ``reasoning``, ``message`` or ``function_call``."""
        self._text: list[str] = []
        self._calls: dict[int, ToolCallPart] = {}
        self._call: int | None = None
        self._args: list[str] = []
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None

    # --- framing

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return encode_event(kind, orjson.dumps(payload))

    def _response(self, status: str, incomplete: JSONObject | None = None) -> JSONObject:
        return response_object(
            self._id,
            self._model,
            self._created,
            self._echo,
            status=status,
            output=list(self._output),
            usage=self._usage if status != "in_progress" else None,
            incomplete=incomplete,
        )

    def _start(self, upstream_id: str = "", model: str = "") -> bytes:
        if self._started:
            return b""
        self._started = True
        self._id = response_id(upstream_id)
        self._model = self._model or model
        response = self._response("in_progress")
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    @property
    def _index(self) -> int:
        """``output_index`` of the open item (finished items come before it)."""
        return len(self._output)

    def _item_id(self, prefix: str) -> str:
        return f"{prefix}_{self._id[5:]}_{self._index}"

    # --- items

    def _open(self, kind: str) -> bytes:
        out = self._close()
        self._kind = kind
        self._text = []
        index = self._index
        if kind == "reasoning":
            item_id = self._item_id("rs")
            return (
                out
                + self._event(
                    "response.output_item.added",
                    output_index=index,
                    item={**reasoning_item(item_id, ""), "summary": []},
                )
                + self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item_id,
                    output_index=index,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
            )
        item_id = self._item_id("msg")
        return (
            out
            + self._event(
                "response.output_item.added", output_index=index, item=message_item(item_id, None, "in_progress")
            )
            + self._event(
                "response.content_part.added",
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=output_text(""),
            )
        )

    def _close(self) -> bytes:
        kind, self._kind = self._kind, None
        index = self._index
        if kind is None:
            return b""
        if kind == "function_call":
            return self._close_call()
        text = "".join(self._text)
        if kind == "reasoning":
            item_id = self._item_id("rs")
            part = {"type": "summary_text", "text": text}
            item = reasoning_item(item_id, text)
            self._output.append(item)
            return (
                self._event(
                    "response.reasoning_summary_text.done",
                    item_id=item_id,
                    output_index=index,
                    summary_index=0,
                    text=text,
                )
                + self._event(
                    "response.reasoning_summary_part.done",
                    item_id=item_id,
                    output_index=index,
                    summary_index=0,
                    part=part,
                )
                + self._event("response.output_item.done", output_index=index, item=item)
            )
        item_id = self._item_id("msg")
        item = message_item(item_id, text)
        self._output.append(item)
        return (
            self._event(
                "response.output_text.done",
                item_id=item_id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            )
            + self._event(
                "response.content_part.done",
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=output_text(text),
            )
            + self._event("response.output_item.done", output_index=index, item=item)
        )

    def _open_call(self, event: ToolCallStart) -> bytes:
        out = self._close()
        self._kind = "function_call"
        self._call = event.index
        self._args = []
        call = ToolCallPart(event.id, event.name, "")
        self._calls[event.index] = call
        item = function_call_item(self._item_id("fc"), call, "in_progress")
        return out + self._event("response.output_item.added", output_index=self._index, item=item)

    def _close_call(self) -> bytes:
        call = self._calls[self._call] if self._call is not None else ToolCallPart("", "", "")
        call.arguments = "".join(self._args)
        index, item_id = self._index, self._item_id("fc")
        item = function_call_item(item_id, call)
        self._output.append(item)
        self._call = None
        return self._event(
            "response.function_call_arguments.done",
            item_id=item_id,
            output_index=index,
            name=call.name,
            arguments=call.arguments,
        ) + self._event("response.output_item.done", output_index=index, item=item)

    # --- events

    def encode(self, event: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(event, StreamStart):
            if event.usage is not None:
                self._usage = event.usage
            return self._start(event.id, event.model)
        out = self._start()
        if getattr(event, "choice", 0) != 0:
            return out  # Responses has no ``n``: only the first choice is shown
        if isinstance(event, TextDelta):
            if not event.text:
                return out
            if self._kind != "message":
                out += self._open("message")
            self._text.append(event.text)
            return out + self._event(
                "response.output_text.delta",
                item_id=self._item_id("msg"),
                output_index=self._index,
                content_index=0,
                delta=event.text,
                logprobs=[],
            )
        if isinstance(event, ThinkingDelta):
            if not event.text:
                return out
            if self._kind != "reasoning":
                out += self._open("reasoning")
            self._text.append(event.text)
            return out + self._event(
                "response.reasoning_summary_text.delta",
                item_id=self._item_id("rs"),
                output_index=self._index,
                summary_index=0,
                delta=event.text,
            )
        if isinstance(event, ToolCallStart):
            if event.index in self._calls:
                return out
            return out + self._open_call(event)
        if isinstance(event, ToolCallDelta):
            if event.index != self._call or not event.arguments:
                return out  # arguments of a call already closed cannot be shown any more
            self._args.append(event.arguments)
            return out + self._event(
                "response.function_call_arguments.delta",
                item_id=self._item_id("fc"),
                output_index=self._index,
                delta=event.arguments,
            )
        if isinstance(event, MediaOutput):
            if event.part.kind != "image" or event.part.data is None:
                return out
            out += self._close()
            index, item = self._index, image_item(self._item_id("ig"), event.part)
            self._output.append(item)
            added = {**item, "status": "in_progress", "result": None}
            return (
                out
                + self._event("response.output_item.added", output_index=index, item=added)
                + self._event("response.output_item.done", output_index=index, item=item)
            )
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return out
        if isinstance(event, Finish):
            self._finish = event.reason
            return out
        if isinstance(event, StreamError):
            self._done = True
            return out + self._event("error", code=event.code, message=event.message, param=None)
        if isinstance(event, StreamEnd):
            return out + self._end(event.complete)
        return out

    def _end(self, complete: bool) -> bytes:
        self._done = True
        if not complete:
            return self._event("error", code="upstream_error", message=CUT_MESSAGE, param=None)
        out = self._close()
        status, incomplete = response_status(self._finish)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(kind, response=self._response(status, incomplete))


# --- passthrough


class ResponsesPassthroughStream:
    """Relays an OpenAI Responses stream as it came, reading usage from its terminal event.

    Every event is parsed (they are small and the terminal one must be found whatever the chunking); the bytes
    forwarded are the upstream's own. ``finished`` once ``response.completed``/``incomplete``/``failed`` passed; a
    stream that ends before that gets an ``error`` event so the client's SDK does not wait for one.
    """

    __slots__ = ("_parser", "_seq", "error", "finished", "produced", "usage")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._seq = 0
        self.usage: Usage | None = None
        self.finished = False
        self.error: JSONObject | None = None
        self.produced: list[str] = []
        """Text and argument deltas, for counting when no usage arrives."""

    def feed(self, chunk: bytes) -> bytes:
        for event in self._parser.feed(chunk):
            self._observe(event.data)
        return chunk

    def finish(self) -> bytes:
        for event in self._parser.flush():
            self._observe(event.data)
        if self.finished or self.error is not None:
            return b""
        payload = {"type": "error", "code": "upstream_error", "message": CUT_MESSAGE, "param": None}
        return encode_event("error", orjson.dumps({**payload, "sequence_number": self._seq}))

    def _observe(self, data: str) -> None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.error = {"message": "the upstream sent a malformed stream event"}
            return
        if not isinstance(payload, dict):
            return
        seq = payload.get("sequence_number")
        if isinstance(seq, int):
            self._seq = seq + 1
        kind = payload.get("type")
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
            delta = payload.get("delta")
            if isinstance(delta, str):
                self.produced.append(delta)
        elif kind in TERMINAL_EVENTS:
            self.finished = True
            response = payload.get("response")
            usage = response.get("usage") if isinstance(response, dict) else None
            if isinstance(usage, dict):
                self.usage = responses_usage_to_ir(usage)
            if kind == "response.failed":
                error = response.get("error") if isinstance(response, dict) else None
                self.error = error if isinstance(error, dict) else {"message": "the response failed"}
        elif kind == "error":
            self.error = payload
