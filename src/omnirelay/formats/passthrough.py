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
from omnirelay.formats.gemini_stream import GeminiStreamDecoder
from omnirelay.formats.ir import Format
from omnirelay.formats.openai_chat import openai_usage_to_ir
from omnirelay.formats.sse import DONE, SSEParser
from omnirelay.formats.translate import StreamReader
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


_MARKERS = (b"[DONE]", b'"usage":{', b'"error"')
"""What makes an event worth parsing. (A quote inside a JSON string is escaped, so ``"usage":{`` is a key.)"""


class OpenAIPassthroughStream:
    """Relays an OpenAI SSE stream as it came, reading usage from it with byte searches.

    Most events are forwarded without being parsed: only an event that carries usage, an error or ``[DONE]`` is
    looked at. The bytes are kept, and parsed only if the stream ends without usage, to count what was produced.
    ``hide_usage``: the gateway asked for the usage chunk on the client's behalf, so that chunk is dropped and the
    ``"usage":null`` the upstream adds to the other chunks is removed, leaving exactly what the client asked for.
    Line ends other than ``\n`` (a vendor sending ``\r\n``) take the parsing path of :class:`SSEParser`.
    """

    def __init__(self, hide_usage: bool) -> None:
        self._hide_usage = hide_usage
        self._pending = b""
        self._seen: list[bytes] = []
        self._parser: SSEParser | None = None
        self.usage: Usage | None = None
        self.finished = False
        """True once the upstream sent ``[DONE]``."""
        self.error: dict[str, Any] | None = None

    @property
    def produced(self) -> list[str]:
        """Content, reasoning and tool-argument text seen, for counting when no usage arrives."""
        pieces: list[str] = []
        parser = SSEParser()
        for block in self._seen:
            for event in parser.feed(block):
                _collect_text(event.data, pieces)
        return pieces

    def feed(self, chunk: bytes) -> bytes:
        if self._parser is not None or b"\r" in chunk:
            return self._feed_parsed(chunk)
        data = self._pending + chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return b""
        complete, self._pending = data[: end + 2], data[end + 2 :]
        self._seen.append(complete)
        if b"[DONE]" in complete or b'"usage":{' in complete or b'"error"' in complete or b"data: {" not in complete:
            return self._inspect(complete)
        return self._plain(complete)

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        if self._parser is not None:
            return b"".join(self._relay(e.data) for e in self._parser.feed(rest) + self._parser.flush())
        if rest.strip():
            self._seen.append(rest + b"\n\n")
            return self._inspect(rest + b"\n\n")
        return b""

    def _inspect(self, complete: bytes) -> bytes:
        """Whole events of which some need a look. Only those (usage, an error, the end) are parsed; the events
        before each go on as they are. An upstream that is not pacing its stream sends all of it in one read, the
        usage and ``[DONE]`` with the content, so this is a search per event that matters, not a parse per event."""
        out = bytearray()
        while complete:
            found = [at for marker in _MARKERS if (at := complete.find(marker)) >= 0]
            if not found:
                if b"data: {" in complete:
                    out += self._plain(complete)
                else:  # comments or bare events: what a client could use is re-rendered, the rest dropped
                    out += self._relay_events(complete)
                break
            at = min(found)
            before = complete.rfind(b"\n\n", 0, at)
            begin = before + 2 if before >= 0 else 0
            end = complete.find(b"\n\n", at) + 2
            out += self._plain(complete[:begin])
            out += self._relay_events(complete[begin:end])
            complete = complete[end:]
        return bytes(out)

    def _plain(self, events: bytes) -> bytes:
        return events.replace(b',"usage":null', b"") if self._hide_usage else events

    def _relay_events(self, events: bytes) -> bytes:
        out = b""
        for event in events.split(b"\n\n"):
            if event:
                data = event[6:] if event.startswith(b"data: ") else event.partition(b":")[2].lstrip()
                out += self._relay(data.decode("utf-8", errors="replace"))
        return out

    def _feed_parsed(self, chunk: bytes) -> bytes:
        if self._parser is None:
            self._parser = SSEParser()
            chunk, self._pending = self._pending + chunk, b""
        self._seen.append(chunk)
        return b"".join(self._relay(event.data) for event in self._parser.feed(chunk))

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
        if self._hide_usage:
            if usage and not payload.get("choices"):
                return b""
            data = data.replace(',"usage":null', "")
        return b"data: " + data.encode() + b"\n\n"


def _collect_text(data: str, pieces: list[str]) -> None:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if not isinstance(payload, dict):
        return
    for choice in payload.get("choices") or ():
        delta = choice.get("delta") or {}
        for piece in (delta.get("content"), delta.get("reasoning_content"), choice.get("text")):
            if piece:
                pieces.append(piece)
        for call in delta.get("tool_calls") or ():
            arguments = (call.get("function") or {}).get("arguments")
            if arguments:
                pieces.append(arguments)


class ObservedStream(StreamReader):
    """Same-format relay for Anthropic and Gemini streams: the bytes go to the client exactly as they came; a
    decoder reads along to learn usage, produced text and whether the stream ended properly."""

    def __init__(self, fmt: Format) -> None:
        super().__init__(fmt, GeminiStreamDecoder() if fmt == "gemini" else AnthropicStreamDecoder())

    def feed(self, chunk: bytes) -> bytes:
        self.read(chunk)
        return chunk

    def finish(self) -> bytes:
        self.close()
        return b""
