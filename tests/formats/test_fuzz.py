"""Fuzzing the parsers that read what clients and upstreams send: malformed, truncated and huge inputs end in the
module's own error (which the API layer answers as a 4xx), never another exception, and never take long.

Sizes are bounded so every example is fast; ``deadline`` stays on (generous, for a loaded machine) so a parser that
went quadratic or looped would fail here rather than hang a gateway.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from omnirelay.formats.ir import FORMATS, Format, TranslationError, UpstreamUnreadable
from omnirelay.formats.multipart import MultipartError, MultipartReader, PartHead, boundary_of, parse_multipart
from omnirelay.formats.sse import SSEParser
from omnirelay.formats.translate import CallContext, parse_response, translate_request, translate_responses_request

FUZZ = settings(max_examples=150, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow])
"""Random examples each run (a failure prints how to reproduce it); crashes found so far are pinned as
``@example``s."""
DEEP_FUZZ = settings(FUZZ, max_examples=40)
"""Translator inputs are costly to generate: fewer of them per run (each run draws new ones)."""


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# --- SSE ----------------------------------------------------------------------------------------------------

SSE_VALUES = st.one_of(
    st.sampled_from([b"7", b"1500", "\u00b2".encode(), "\u0663".encode(), b"-1", b" 3", b"[DONE]", b"{", b"\xff\xc3"]),
    st.text(max_size=10).map(str.encode),
    st.binary(max_size=8),
)
SSE_LINES = st.tuples(
    st.sampled_from([b"data", b"event", b"id", b"retry", b"", b": comment", b"dat", b"DATA"]),
    st.sampled_from([b":", b": ", b""]),
    SSE_VALUES,
    st.sampled_from([b"\n", b"\r", b"\r\n", b"\n\n", b"\r\n\r\n", b""]),
).map(b"".join)
SSE_BYTES = st.one_of(st.binary(max_size=1024), st.lists(SSE_LINES, max_size=40).map(b"".join))
"""Raw bytes, and lines in the SSE vocabulary (field, colon, value, line end; any of them off) so the fuzz reaches
every field's handling."""


def sse_all(chunks: list[bytes]) -> list[tuple[str, str | None, str | None, int | None]]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)] + parser.flush()
    return [(e.data, e.event, e.id, e.retry) for e in events]


@FUZZ
@given(SSE_BYTES, st.lists(st.integers(min_value=0), max_size=20))
@example("retry: \u00b2\n\ndata: x\n\n".encode(), [])  # was ValueError: "²".isdigit() but int("²") fails
def test_sse_parser_takes_any_bytes_split_anywhere(data: bytes, cuts: list[int]) -> None:
    whole = sse_all([data])
    assert sse_all(split(data, cuts)) == whole
    for _, _, _, retry in whole:
        assert retry is None or retry >= 0


def test_sse_parser_reads_a_huge_event_in_small_chunks_in_linear_time() -> None:
    """A multi-megabyte event (an inline image in a Gemini stream) arriving as the socket delivers it."""
    payload = b"data: " + b"A" * (8 * 1024 * 1024) + b"\n\n"
    parser = SSEParser()
    started = time.perf_counter()
    events = [event for at in range(0, len(payload), 16 * 1024) for event in parser.feed(payload[at : at + 16 * 1024])]
    elapsed = time.perf_counter() - started
    assert len(events) == 1 and len(events[0].data) == 8 * 1024 * 1024
    assert elapsed < 2.0, f"{elapsed:.2f} s for 8 MB in 16 KB chunks"


# --- multipart ----------------------------------------------------------------------------------------------

BOUNDARY = "fuzzBoundary7MA4YWxk"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
FIELD_NAMES = st.sampled_from(["model", "file", "image[]", "prompt", 'we"ird', "é", ""])


@st.composite
def multipart_bodies(draw: st.DrawFn) -> bytes:
    """Well-formed bodies, some of them then damaged: cut short, a byte changed, bytes spliced in."""
    parts = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        name = draw(FIELD_NAMES).replace('"', '\\"')
        filename = draw(st.one_of(st.none(), st.sampled_from(["a.png", "b.wav", 'q"uote.mp3', ""])))
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        head = f"Content-Disposition: {disposition}\r\n"
        if draw(st.booleans()):
            head += "Content-Type: application/octet-stream\r\n"
        data = draw(st.binary(max_size=64))
        parts.append(f"--{BOUNDARY}\r\n".encode() + head.encode() + b"\r\n" + data + b"\r\n")
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    damage = draw(st.sampled_from(["none", "truncate", "flip", "splice"]))
    if damage == "truncate":
        body = body[: draw(st.integers(min_value=0, max_value=len(body)))]
    elif damage == "flip" and body:
        at = draw(st.integers(min_value=0, max_value=len(body) - 1))
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    elif damage == "splice":
        at = draw(st.integers(min_value=0, max_value=len(body)))
        junk = draw(st.sampled_from([b"\r\n", b"--", f"--{BOUNDARY}".encode(), b"\r\n\r\n", b":", b"\x00"]))
        body = body[:at] + junk + body[at:]
    return body


CONTENT_TYPES = st.one_of(
    st.just(CONTENT_TYPE),
    st.text(max_size=80),
    st.builds(lambda b: f"multipart/form-data; boundary={b}", st.text(max_size=220)),
    st.builds(lambda b: f'multipart/form-data; boundary="{b}"', st.text(max_size=40)),
)


@FUZZ
@given(st.one_of(multipart_bodies(), st.binary(max_size=1024)), CONTENT_TYPES)
@example(b"", "multipart/form-data; boundary=\u0100")  # was UnicodeEncodeError: a boundary beyond latin-1
def test_multipart_parser_refuses_with_its_own_error(body: bytes, content_type: str) -> None:
    try:
        form = parse_multipart(body, content_type)
    except MultipartError:
        return
    assert form.parts and all(isinstance(part.name, str) for part in form.parts)


@FUZZ
@given(multipart_bodies(), st.lists(st.integers(min_value=0), max_size=12))
def test_multipart_reader_gives_the_same_parts_however_the_body_arrives(body: bytes, cuts: list[int]) -> None:
    def read(chunks: list[bytes]) -> tuple[list[tuple[str, int]], bytes] | str:
        reader = MultipartReader(BOUNDARY.encode())
        names: list[tuple[str, int]] = []
        data = b""
        try:
            for chunk in chunks:
                for event in reader.feed(chunk):
                    if isinstance(event, PartHead):
                        names.append((event.name, event.start))
                    elif hasattr(event, "data"):
                        data += event.data
            reader.close()
        except MultipartError:
            return "refused"
        return names, data

    assert read(split(body, cuts)) == read([body])


def test_multipart_boundary_outside_latin1_is_refused_cleanly() -> None:
    with pytest.raises(MultipartError):
        boundary_of("multipart/form-data; boundary=\u20ac\u20ac")


# --- translators' request parsing ---------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=False),
    st.text(max_size=12),
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
KEYS = st.sampled_from(
    ["model", "messages", "role", "content", "type", "text", "image_url", "url", "tool_calls", "function", "name",
     "arguments", "tools", "tool_choice", "parameters", "max_tokens", "max_completion_tokens", "temperature", "stream",
     "stream_options", "response_format", "json_schema", "system", "input_schema", "tool_use_id", "source", "data",
     "media_type", "contents", "parts", "inlineData", "mimeType", "functionCall", "functionResponse",
     "generationConfig", "systemInstruction", "input", "instructions", "reasoning", "thinking", "budget_tokens",
     "stop", "n", "seed", "logprobs", "top_k", "topK", "metadata", "user", "cache_control", "id", "call_id", "output"]
)  # fmt: skip
ROLES = st.sampled_from(["user", "assistant", "system", "tool", "developer", "model", "function", "", "USER"])
TYPES = st.sampled_from(
    ["text", "image_url", "image", "tool_use", "tool_result", "input_text", "input_image", "function_call",
     "function_call_output", "message", "thinking", "document", "input_audio"]
)  # fmt: skip
FIELD_VALUE = st.one_of(JSON, ROLES, TYPES)
SHAPED = st.recursive(
    FIELD_VALUE,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=12,
)
"""JSON in the translators' own vocabulary, so the fuzz reaches past the first type check."""


def loose(*keys: str, **fixed: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with ``fixed`` fields and any of ``keys`` holding plausible or garbage values."""
    return st.fixed_dictionaries(fixed, optional=dict.fromkeys(keys, VALUES))


VALUES = st.deferred(
    lambda: st.one_of(
        SHAPED, st.text(max_size=12), st.integers(-3, 5000), st.lists(PART, max_size=3), PART, st.just({})
    )
)
PART = st.deferred(
    lambda: loose(
        "text", "image_url", "url", "detail", "source", "data", "media_type", "id", "name", "input", "content",
        "tool_use_id", "is_error", "thinking", "signature", "input_audio", "file", "inlineData", "fileData",
        "mimeType", "functionCall", "functionResponse", "args", "response", "thought", "cache_control",
        type=st.one_of(TYPES, st.text(max_size=6)),
    )
)  # fmt: skip
OPENAI_BODY = loose(
    "tools", "tool_choice", "response_format", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
    "stream_options", "n", "seed", "reasoning_effort", "logprobs", "top_logprobs", "parallel_tool_calls", "user",
    "modalities", "audio", "prediction", "web_search_options", "metadata", "frequency_penalty", "logit_bias",
    model=st.just("m"),
    messages=st.lists(
        loose("content", "tool_calls", "tool_call_id", "name", "refusal", "audio", role=ROLES), max_size=4
    ),
)  # fmt: skip
ANTHROPIC_BODY = loose(
    "system", "tools", "tool_choice", "thinking", "temperature", "top_k", "top_p", "stop_sequences", "metadata",
    "service_tier", "mcp_servers", "container",
    model=st.just("m"),
    max_tokens=st.one_of(st.integers(1, 4096), VALUES),
    messages=st.lists(loose("content", role=ROLES), max_size=4),
)  # fmt: skip
GEMINI_BODY = loose(
    "systemInstruction", "generationConfig", "tools", "toolConfig", "safetySettings", "cachedContent", "labels",
    contents=st.lists(loose("parts", role=ROLES), max_size=4),
)  # fmt: skip
RESPONSES_BODY = loose(
    "instructions", "tools", "tool_choice", "text", "reasoning", "max_output_tokens", "temperature",
    "previous_response_id", "store", "include", "truncation", "parallel_tool_calls",
    model=st.just("m"),
    input=st.one_of(st.text(max_size=20), st.lists(loose("content", "role", "call_id", "output", "arguments",
                                                         "name", type=TYPES), max_size=4)),
)  # fmt: skip
BODIES: dict[Format, st.SearchStrategy[Any]] = {
    "openai": OPENAI_BODY,
    "anthropic": ANTHROPIC_BODY,
    "gemini": GEMINI_BODY,
}
"""Each client format's request shape, every field optional and any value possibly wrong: the fuzz gets past the
first type check into every field's translation."""


@st.composite
def requests_for(draw: st.DrawFn) -> tuple[Format, Format, Any]:
    client, upstream = draw(st.sampled_from(PAIRS))
    return client, upstream, draw(st.one_of(BODIES[client], BODIES[client], SHAPED))


PAIRS = [(client, upstream) for client in FORMATS for upstream in FORMATS if client != upstream]


@DEEP_FUZZ
@given(requests_for())
def test_translate_request_refuses_with_translation_errors(request: tuple[Format, Format, Any]) -> None:
    client, upstream, body = request
    try:
        translated = translate_request(client, upstream, orjson.dumps(body), model="m", upstream_model="u")
    except TranslationError:
        return
    assert isinstance(orjson.loads(translated.body), dict)


@FUZZ
@given(st.binary(max_size=256), st.sampled_from(sorted(FORMATS)))
def test_translate_request_from_bytes_that_are_not_json(body: bytes, client: Format) -> None:
    upstream = next(f for f in sorted(FORMATS) if f != client)
    try:
        translate_request(client, upstream, body, model="m", upstream_model="u")
    except TranslationError:
        pass


@DEEP_FUZZ
@given(st.one_of(RESPONSES_BODY, SHAPED), st.sampled_from(sorted(FORMATS)))
def test_translate_responses_request_refuses_with_translation_errors(body: Any, upstream: Format) -> None:
    try:
        translate_responses_request(upstream, orjson.dumps(body), upstream_model="u")
    except TranslationError:
        pass


@DEEP_FUZZ
@given(requests_for())
def test_upstream_answers_that_make_no_sense_are_unreadable(request: tuple[Format, Format, Any]) -> None:
    client, upstream, body = request  # request-shaped garbage, as an answer of the upstream's format
    try:
        parse_response(CallContext(client=client, upstream=upstream, stream=False), orjson.dumps(body))
    except UpstreamUnreadable:
        pass
