"""``multipart/form-data`` bodies read in place: fields and files as slices of the body the client sent.

The relay forwards an upload as the bytes it received; it only needs to read a few fields (model, response_format,
n, size) and look at the files (their kind, an audio file's duration). Parsing keeps every part's byte span, so the
one edit the relay ever makes (a mapped model name, :func:`replace_field`) rebuilds the body around the same parts
and the same boundary, leaving every file byte untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_PARAM = re.compile(rb';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


class MultipartError(ValueError):
    """The body is not the ``multipart/form-data`` its Content-Type announced."""


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
    boundary = (match.group(1) or match.group(2)).encode("latin-1")
    if not 1 <= len(boundary) <= 200:
        raise MultipartError("the multipart boundary must be 1 to 200 characters")
    return boundary


def parse_multipart(raw: bytes, content_type: str | None) -> Multipart:
    """Every part of ``raw``; raises :class:`MultipartError` on anything RFC 7578 would not accept."""
    boundary = boundary_of(content_type)
    delimiter = b"--" + boundary
    if not raw.startswith(delimiter):
        position = raw.find(b"\r\n" + delimiter)
        if position < 0:
            raise MultipartError("the body does not contain the multipart boundary")
        cursor = position + 2
    else:
        cursor = 0
    parts: list[Part] = []
    separator = b"\r\n" + delimiter
    while True:
        cursor += len(delimiter)
        if raw.startswith(b"--", cursor):
            break  # the closing delimiter
        line_end = raw.find(b"\r\n", cursor)
        if line_end < 0 or raw[cursor:line_end].strip(b" \t"):
            raise MultipartError("a multipart boundary line is malformed")
        start = line_end + 2
        head_end = raw.find(b"\r\n\r\n", start)
        if head_end < 0:
            raise MultipartError("a multipart part has no end of headers")
        data_start = head_end + 4
        data_end = raw.find(separator, data_start)
        if data_end < 0:
            raise MultipartError("the multipart body ends without its closing boundary")
        name, filename, part_type = _headers(raw[start:head_end])
        parts.append(Part(name, filename, part_type, raw[data_start:data_end], start, data_end))
        cursor = data_end + 2
    if not parts:
        raise MultipartError("the multipart body has no parts")
    return Multipart(boundary, tuple(parts))


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
