"""SSE parsing: any split of the bytes and any of ``\\n``, ``\\r\\n``, ``\\r`` line ends give the same events.
Gemini's frame reader is held to the same standard for both of its framings."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.formats.gemini_stream import GeminiFrameReader
from omnirelay.formats.sse import DONE, SSEEvent, SSEParser, encode_data, encode_event

LINE_TEXT = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20)
EVENTS = st.lists(
    st.tuples(
        st.lists(LINE_TEXT, min_size=1, max_size=3),
        st.none() | st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
        st.booleans(),
    ),
    min_size=1,
    max_size=6,
)
ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])


def _serialize(events: list[tuple[list[str], str | None, bool]], ending: str) -> bytes:
    out: list[str] = []
    for lines, name, comment in events:
        if comment:
            out.append(": keep-alive" + ending)
        if name is not None:
            out.append(f"event: {name}{ending}")
        out.extend(f"data: {line}{ending}" for line in lines)
        out.append(ending)
    return "".join(out).encode()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


@settings(max_examples=150, deadline=None)
@given(events=EVENTS, ending=ENDINGS, cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_any_split_any_line_ending_same_events(
    events: list[tuple[list[str], str | None, bool]], ending: str, cuts: list[int]
) -> None:
    data = _serialize(events, ending)
    expected = [SSEEvent("\n".join(lines), name) for lines, name, _ in events]
    parser = SSEParser()
    got = [event for piece in _split(data, cuts) for event in parser.feed(piece)] + parser.flush()
    assert got == expected


def test_last_event_without_blank_line_is_kept() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: b") == [SSEEvent("a")]
    assert parser.flush() == [SSEEvent("b")]


def test_encoders() -> None:
    assert encode_data(b"{}") == b"data: {}\n\n"
    assert encode_event("ping", '{"type": "ping"}') == b'event: ping\ndata: {"type": "ping"}\n\n'
    assert DONE == b"data: [DONE]\n\n"


CHUNKS = st.lists(
    st.dictionaries(
        st.sampled_from(["text", "x", "y"]), LINE_TEXT | st.integers(-(2**40), 2**40), min_size=1, max_size=3
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=100, deadline=None)
@given(chunks=CHUNKS, array=st.booleans(), crlf=st.booleans(), cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_gemini_frames_any_split(chunks: list[dict[str, object]], array: bool, crlf: bool, cuts: list[int]) -> None:
    ending = b"\r\n" if crlf else b"\n"
    if array:
        indented = [orjson.dumps(c, option=orjson.OPT_INDENT_2).replace(b"\n", ending) for c in chunks]
        data = b"[" + (b"," + ending).join(indented) + b"]"
    else:
        data = b"".join(b"data: " + orjson.dumps(c) + ending + ending for c in chunks)
    reader = GeminiFrameReader()
    texts = [t for piece in _split(data, cuts) for t in reader.feed(piece)] + reader.flush()
    assert [orjson.loads(t) for t in texts] == chunks


def _reference(data: bytes) -> list[SSEEvent]:
    """The SSE spec read naively: lines on any line end, fields accumulated, a blank line dispatches."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    events: list[SSEEvent] = []
    lines: list[str] = []
    name: str | None = None
    last_id: str | None = None
    retry: int | None = None
    for line in text.split("\n")[:-1]:  # what follows the last line end is not a line yet
        if not line:
            if lines or name is not None:
                events.append(SSEEvent("\n".join(lines), name, last_id, retry))
                lines, name, retry = [], None, None
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        value = value[1:] if sep and value.startswith(" ") else value
        if field == "data":
            lines.append(value)
        elif field == "event":
            name = value
        elif field == "id":
            last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return events


FIELD_LINE = st.one_of(
    st.builds(lambda v: f"data: {v}", LINE_TEXT),
    st.builds(lambda v: f"data:{v}", LINE_TEXT),
    st.builds(lambda v: f"event: {v}", LINE_TEXT),
    st.builds(lambda v: f"id: {v}", LINE_TEXT),
    st.builds(lambda v: f"retry: {v}", st.integers(min_value=0, max_value=10_000)),
    st.just(": comment"),
)
# Blocks of field lines, each ended by a blank line (some left open at the end): events as servers send them.
FIELD_LINES = st.builds(
    lambda blocks, tail: [line for block in blocks for line in (*block, "")] + tail,
    st.lists(st.lists(FIELD_LINE, max_size=3), max_size=8),
    st.lists(FIELD_LINE, max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(lines=FIELD_LINES, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_any_field_lines_parse_as_the_spec_reads_them(lines: list[str], cuts: list[int]) -> None:
    """Whole single-line events are cut out in one pass, everything else line by line: both as the spec says."""
    data = "".join(line + "\n" for line in lines).encode()
    parser = SSEParser()
    got = [event for piece in _split(data, cuts) for event in parser.feed(piece)]
    assert got == _reference(data)
