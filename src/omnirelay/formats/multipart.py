"""``multipart/form-data`` bodies, parsed incrementally: :class:`MultipartReader` takes the body chunk by chunk as it
arrives and says where each part starts, what bytes it holds and where it ends, keeping no more than one chunk and a
boundary's length of the body at a time. The gateway spools file parts as they come (``api.media``), so an upload is
never held whole in memory; :func:`parse_multipart` is the same reader over a body already in memory (simulators,
tests), with every part's byte span kept so :func:`replace_field` can rewrite one field in place.

Pure: no I/O here, only bytes in and events out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_PARAM = re.compile(rb';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')

MAX_HEADER_BYTES = 16 * 1024
"""One part's header block; a part whose headers run longer is refused (nothing an SDK sends comes near)."""
MAX_PARTS = 1000


class MultipartError(ValueError):
    """The body is not the ``multipart/form-data`` its Content-Type announced."""


@dataclass(frozen=True, slots=True)
class PartHead:
    """A part begins: its headers as sent (``raw``, without the blank line after them) and what they say."""

    name: str
    filename: str | None
    content_type: str | None
    raw: bytes
    start: int
    """Offset of the part's first header byte in the body (just after the boundary line)."""

    @property
    def is_file(self) -> bool:
        return self.filename is not None


@dataclass(frozen=True, slots=True)
class PartData:
    """Some of the current part's bytes, in order."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    end: int
    """Offset just past the part's data (the CRLF before the next boundary starts here)."""


Event = PartHead | PartData | PartEnd


class MultipartReader:
    """An RFC 7578 body fed in chunks (``feed``) and then ended (``close``); each call returns the events the
    bytes so far complete, and raises :class:`MultipartError` on anything the RFC would not accept."""

    def __init__(self, boundary: bytes) -> None:
        self.boundary = boundary
        self._delimiter = b"--" + boundary
        self._separator = b"\r\n" + self._delimiter
        self._buffer = bytearray()
        self._offset = 0
        """Body offset of ``_buffer[0]``."""
        self._state = "preamble"
        self._parts = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, chunk: bytes) -> list[Event]:
        if self._state == "done":
            return []  # the epilogue after the closing delimiter is ignored, as the RFC says
        self._buffer += chunk
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> None:
        if self._state != "done":
            if self._state == "preamble":
                raise MultipartError("the body does not contain the multipart boundary")
            raise MultipartError("the multipart body ends without its closing boundary")
        if not self._parts:
            raise MultipartError("the multipart body has no parts")

    def _consume(self, count: int) -> None:
        del self._buffer[:count]  # bytearray drops its front in place, without moving the rest
        self._offset += count

    def _step(self, events: list[Event]) -> bool:
        """One move of the state machine; False when it needs more bytes."""
        buffer = self._buffer
        if self._state == "preamble":
            if buffer.startswith(self._delimiter):
                self._consume(len(self._delimiter))
            else:
                found = buffer.find(self._separator)
                if found < 0:
                    # Keep what could still be the start of the first delimiter.
                    self._consume(max(0, len(buffer) - len(self._separator)))
                    return False
                self._consume(found + len(self._separator))
            self._state = "after_delimiter"
            return True
        if self._state == "after_delimiter":
            if len(buffer) < 2:
                return False
            if buffer.startswith(b"--"):
                self._state = "done"
                self._buffer.clear()
                return False
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if len(buffer) > 256:
                    raise MultipartError("a multipart boundary line is malformed")
                return False
            if bytes(buffer[:line_end]).strip(b" \t"):
                raise MultipartError("a multipart boundary line is malformed")
            self._consume(line_end + 2)
            self._state = "headers"
            return True
        if self._state == "headers":
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    raise MultipartError("a multipart part's headers are too long")
                return False
            raw = bytes(buffer[:head_end])
            name, filename, part_type = _headers(raw)
            self._parts += 1
            if self._parts > MAX_PARTS:
                raise MultipartError(f"the multipart body has more than {MAX_PARTS} parts")
            events.append(PartHead(name, filename, part_type, raw, self._offset))
            self._consume(head_end + 4)
            self._state = "data"
            return True
        if self._state == "data":
            found = buffer.find(self._separator)
            if found < 0:
                # Everything but a tail that may be the start of the next delimiter is this part's.
                ready = len(buffer) - len(self._separator) + 1
                if ready > 0:
                    events.append(PartData(bytes(buffer[:ready])))
                    self._consume(ready)
                return False
            if found:
                events.append(PartData(bytes(buffer[:found])))
            events.append(PartEnd(self._offset + found))
            self._consume(found + len(self._separator))
            self._state = "after_delimiter"
            return True
        return False


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes
    start: int
    """Offset of the part's first header byte in the body (just after the boundary line)."""
    end: int
    """Offset just past the part's data (the CRLF before the next boundary starts here)."""

    @property
    def is_file(self) -> bool:
        return self.filename is not None

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class Multipart:
    boundary: bytes
    parts: tuple[Part, ...]

    def field(self, name: str) -> str | None:
        """The first plain (non-file) field called ``name``."""
        for part in self.parts:
            if part.name == name and not part.is_file:
                return part.text()
        return None

    def fields(self, name: str) -> list[str]:
        return [p.text() for p in self.parts if p.name == name and not p.is_file]

    def files(self, *names: str) -> list[Part]:
        return [p for p in self.parts if p.name in names and p.is_file]


def boundary_of(content_type: str | None) -> bytes:
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise MultipartError("the request must be multipart/form-data")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise MultipartError("the multipart/form-data Content-Type has no boundary")
    try:
        boundary = (match.group(1) or match.group(2)).encode("latin-1")
    except UnicodeEncodeError:  # a header value is latin-1 on the wire; a str given here may hold more
        raise MultipartError("the multipart boundary must be latin-1 text") from None
    if not 1 <= len(boundary) <= 200:
        raise MultipartError("the multipart boundary must be 1 to 200 characters")
    return boundary


def parse_multipart(raw: bytes, content_type: str | None) -> Multipart:
    """Every part of ``raw``, a whole body in memory; raises :class:`MultipartError` on anything RFC 7578 would not
    accept."""
    reader = MultipartReader(boundary_of(content_type))
    parts: list[Part] = []
    head: PartHead | None = None
    data: list[bytes] = []
    for event in reader.feed(raw):
        if isinstance(event, PartHead):
            head, data = event, []
        elif isinstance(event, PartData):
            data.append(event.data)
        elif head is not None:
            parts.append(Part(head.name, head.filename, head.content_type, b"".join(data), head.start, event.end))
    reader.close()
    return Multipart(reader.boundary, tuple(parts))


def _headers(block: bytes) -> tuple[str, str | None, str | None]:
    name: str | None = None
    filename: str | None = None
    part_type: str | None = None
    for line in block.split(b"\r\n"):
        key, sep, value = line.partition(b":")
        if not sep:
            raise MultipartError("a multipart part has a malformed header line")
        key = key.strip().lower()
        if key == b"content-disposition":
            if not value.strip().lower().startswith(b"form-data"):
                raise MultipartError("a multipart part is not form-data")
            for match in _PARAM.finditer(value):
                param = match.group(1).lower()
                text = (match.group(2) if match.group(2) is not None else match.group(3)).decode("utf-8", "replace")
                if param == b"name":
                    name = text.replace('\\"', '"')
                elif param == b"filename":
                    filename = text.replace('\\"', '"')
        elif key == b"content-type":
            part_type = value.strip().decode("latin-1")
    if name is None:
        raise MultipartError("a multipart part has no name")
    return name, filename, part_type


def replace_field(raw: bytes, form: Multipart, name: str, value: str) -> bytes:
    """``raw`` with plain field ``name`` set to ``value`` (the same boundary, every other byte as it was)."""
    for part in form.parts:
        if part.name == name and not part.is_file:
            data_start = part.end - len(part.data)
            return raw[:data_start] + value.encode("utf-8") + raw[part.end :]
    # Not sent (the vendor's default applied): add it as the first part.
    first = form.parts[0].start
    head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode("utf-8")
    return raw[:first] + head + b"\r\n--" + form.boundary + b"\r\n" + raw[first:]
