"""Media helpers: data URLs ⇄ base64, and which URLs a target cannot take by reference.

Fetching is I/O and belongs to the gateway. A translator that meets a URL its target cannot take raises
:class:`~omnirelay.formats.ir.NeedsFetch` with every such URL; the gateway fetches them and calls again with
``fetched={url: FetchedMedia(media_type, base64)}``. :func:`urls_to_fetch` lets it ask before translating.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from omnirelay.formats.ir import (
    FetchedMedia,
    Format,
    IRRequest,
    MediaKind,
    MediaPart,
    NeedsFetch,
    ToolResultPart,
)

EXTENSION_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp4": "video/mp4",
    "webm": "video/webm",
}

GEMINI_FILE_PREFIXES = (
    "https://generativelanguage.googleapis.com/",
    "gs://",
    "https://www.youtube.com/",
    "https://youtu.be/",
)
"""URIs Gemini reads itself through ``fileData`` (Files API, Cloud Storage, YouTube); no other vendor can."""

URL_KINDS: dict[Format, frozenset[str]] = {
    "openai": frozenset({"image"}),
    "anthropic": frozenset({"image", "document"}),
    "gemini": frozenset(),
}
"""Media kinds each target accepts by plain ``https://`` URL; anything else must be inlined."""


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<type>;base64,<data>`` → (type, data); None for anything else."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url.partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    media_type = header[5:-7].split(";", 1)[0]
    return media_type or "application/octet-stream", data


def to_data_url(media_type: str, data: str) -> str:
    return f"data:{media_type};base64,{data}"


def guess_media_type(url: str) -> str | None:
    path = url.split("?", 1)[0].split("#", 1)[0]
    _, dot, ext = path.rpartition(".")
    return EXTENSION_TYPES.get(ext.lower()) if dot else None


MAJOR_KINDS: dict[str, MediaKind] = {"image": "image", "audio": "audio", "video": "video"}


def kind_of(media_type: str | None) -> MediaKind:
    if media_type is None:
        return "file"
    kind = MAJOR_KINDS.get(media_type.split("/", 1)[0])
    if kind is not None:
        return kind
    return "document" if media_type in ("application/pdf", "text/plain") else "file"


def is_gemini_uri(url: str) -> bool:
    return url.startswith(GEMINI_FILE_PREFIXES)


def is_http(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def iter_media(request: IRRequest) -> Iterator[MediaPart]:
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, MediaPart):
                yield part
            elif isinstance(part, ToolResultPart):
                for inner in part.content:
                    if isinstance(inner, MediaPart):
                        yield inner


INLINE_KINDS: dict[Format, frozenset[str]] = {
    "openai": frozenset({"image", "audio", "document", "file"}),
    "anthropic": frozenset({"image", "document"}),
    "gemini": frozenset({"image", "audio", "document", "video", "file"}),
}
"""Media kinds each target takes at all; fetching a kind the target refuses anyway would be wasted I/O."""


def needs_fetch(part: MediaPart, target: Format) -> bool:
    if part.url is None or not is_http(part.url) or part.kind not in INLINE_KINDS[target]:
        return False
    if target == "gemini":
        return not is_gemini_uri(part.url)
    return not is_gemini_uri(part.url) and part.kind not in URL_KINDS[target]


def urls_to_fetch(
    request: IRRequest, target: Format, fetched: Mapping[str, FetchedMedia] | None = None
) -> tuple[str, ...]:
    """Media URLs ``target`` cannot take by reference and that ``fetched`` does not already hold (in order,
    unique)."""
    have = fetched or {}
    seen: dict[str, None] = {}
    for part in iter_media(request):
        if part.url is not None and part.url not in have and needs_fetch(part, target):
            seen[part.url] = None
    return tuple(seen)


def inline_media(request: IRRequest, target: Format, fetched: Mapping[str, FetchedMedia] | None) -> None:
    """Replace URLs ``target`` cannot take by the fetched bytes, or raise NeedsFetch listing what is
    missing."""
    missing = urls_to_fetch(request, target, fetched)
    if missing:
        raise NeedsFetch(missing)
    if not fetched:
        return
    for part in iter_media(request):
        if part.url is not None and part.url in fetched and needs_fetch(part, target):
            got = fetched[part.url]
            part.media_type, part.data, part.url = got.media_type, got.data, None
