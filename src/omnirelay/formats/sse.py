"""Server-sent events: an incremental parser and the encoder.

The parser accepts ``\\n``, ``\\r\\n`` and ``\\r`` line ends (Gemini sends ``\\r\\n``) and any split of the byte
stream into chunks, so a relay can feed it whatever the socket delivers. It is pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Feeds bytes, yields complete events. One parser per stream."""

    __slots__ = ("_buffer", "_data", "_event", "_id", "_pending_cr", "_pieces", "_retry")

    def __init__(self) -> None:
        self._buffer = b""
        self._pieces: list[bytes] = []
        """Chunks without a line end, after ``_buffer``: joined once the line ends, so a huge line arriving in many
        chunks costs linear time, not a copy of everything so far per chunk."""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk.startswith(b"\n"):
            # The previous chunk ended with "\r" of a "\r\n" pair; the line was already taken.
            chunk = chunk[1:]
        self._pending_cr = False
        if b"\n" not in chunk and b"\r" not in chunk:
            if chunk:
                self._pieces.append(chunk)
            return []
        if self._pieces:
            buffer = b"".join((self._buffer, *self._pieces, chunk))
            self._pieces = []
        else:
            buffer = self._buffer + chunk
        events: list[SSEEvent] = []
        if b"\r" not in buffer and not self._data and self._event is None:
            buffer = self._whole_events(buffer, events)
        start = 0
        length = len(buffer)
        while start < length:
            cr = buffer.find(b"\r", start)
            lf = buffer.find(b"\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, next_start = lf, lf + 1
            elif cr + 1 < length:
                end = cr
                next_start = cr + 2 if buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
            else:
                end, next_start = cr, cr + 1
                self._pending_cr = True
            event = self._line(buffer[start:end].decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
            start = next_start
        self._buffer = buffer[start:]
        return events

    def _whole_events(self, buffer: bytes, events: list[SSEEvent]) -> bytes:
        """The complete events at the start of ``buffer`` (``\n`` line ends, no event begun before), appended to
        ``events``; returns the rest. An event that is one ``data:`` line (nearly every event of every vendor) is
        cut out whole instead of line by line: one split for the lot. Others go through ``_line``."""
        end = buffer.rfind(b"\n\n")
        if end < 0:
            return buffer
        line = self._line
        for block in buffer[:end].split(b"\n\n"):
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append(SSEEvent(block[6:].decode("utf-8", errors="replace"), None, self._id, self._retry))
                self._retry = None
                continue
            for text in (*block.decode("utf-8", errors="replace").split("\n"), ""):  # the block, its blank line
                event = line(text)
                if event is not None:
                    events.append(event)
        return buffer[end + 2 :]

    def flush(self) -> list[SSEEvent]:
        """End of stream: a last event without its blank line still counts (servers do cut that short)."""
        events: list[SSEEvent] = []
        if self._pieces:
            self._buffer, self._pieces = b"".join((self._buffer, *self._pieces)), []
        if self._buffer:
            line, self._buffer = self._buffer.decode("utf-8", errors="replace"), b""
            event = self._line(line)
            if event is not None:
                events.append(event)
        event = self._line("")
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            event = SSEEvent(data="\n".join(self._data), event=self._event, id=self._id, retry=self._retry)
            self._data, self._event, self._retry = [], None, None
            return event
        if line[0] == ":":
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():  # "²".isdigit() is true, int("²") fails
            self._retry = int(value)
        return None


def encode_data(data: bytes | str) -> bytes:
    """One ``data:`` event as OpenAI and Gemini frame it."""
    payload = data.encode() if isinstance(data, str) else data
    return b"data: " + payload + b"\n\n"


def encode_event(event: str, data: bytes | str) -> bytes:
    """A named event as Anthropic and the Responses API frame it."""
    payload = data.encode() if isinstance(data, str) else data
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
