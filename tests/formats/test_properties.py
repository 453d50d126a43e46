"""Property tests: requests keep their meaning across every direction, streams translate the same however the
upstream bytes are split."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnirelay.formats.anthropic_messages import anthropic_request_to_ir, ir_to_anthropic_request
from omnirelay.formats.gemini import gemini_request_to_ir, ir_to_gemini_request
from omnirelay.formats.ir import (
    EFFORT_BUDGET,
    FORMATS,
    Format,
    IRRequest,
    JSONObject,
    MediaPart,
    Message,
    Part,
    Reasoning,
    ResponseFormat,
    TextPart,
    ToolCallPart,
    ToolChoice,
    ToolDef,
    ToolResultPart,
    reasoning_budget,
)
from omnirelay.formats.openai_chat import ir_to_openai_request, openai_request_to_ir
from omnirelay.formats.translate import CallContext, StreamTranslator
from tests.formats.canned import PNG, UPSTREAM_ANSWERS
from tests.formats.wire import A2_STREAM, A3_STREAM, A4_STREAM, G2_LAST, G3_STREAM, G4_STREAM, O2_STREAM, O3_STREAM

TO_WIRE: dict[Format, Callable[[IRRequest], JSONObject]] = {
    "openai": ir_to_openai_request,
    "anthropic": ir_to_anthropic_request,
    "gemini": ir_to_gemini_request,
}
MODELS: dict[Format, str] = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}


def from_wire(fmt: Format, body: JSONObject, stream: bool) -> IRRequest:
    if fmt == "openai":
        return openai_request_to_ir(body)
    if fmt == "anthropic":
        return anthropic_request_to_ir(body)
    return gemini_request_to_ir(body, model=MODELS["gemini"], stream=stream)


# --- strategies ---------------------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=24)
NAMES = st.from_regex(r"[a-z][a-z_]{2,10}", fullmatch=True)
IDS = st.from_regex(r"call_[A-Za-z0-9]{6,10}", fullmatch=True)
JSON_ARGS = st.dictionaries(
    st.from_regex(r"[a-z]{1,6}", fullmatch=True),
    st.integers(-1000, 1000) | TEXT | st.booleans(),
    max_size=3,
)
SCHEMAS = st.builds(
    lambda props: {"type": "object", "properties": {p: {"type": "string"} for p in props}},
    st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), max_size=3, unique=True),
)
IMAGES = st.builds(lambda mt: MediaPart("image", mt, data=PNG), st.sampled_from(["image/png", "image/jpeg"]))


@st.composite
def requests(draw: st.DrawFn, source: Format, target: Format) -> IRRequest:
    pair = {source, target}
    tools = [
        ToolDef(name, draw(st.none() | TEXT), draw(SCHEMAS)) for name in draw(st.lists(NAMES, max_size=3, unique=True))
    ]
    messages: list[Message] = []
    pending: list[ToolCallPart] = []
    for _ in range(draw(st.integers(1, 3))):
        parts: list[Part] = [ToolResultPart(c.id, c.name, [TextPart(draw(TEXT))]) for c in pending]
        parts.append(TextPart(draw(TEXT)))
        if draw(st.booleans()):
            parts.append(draw(IMAGES))
        messages.append(Message("user", parts))
        reply: list[Part] = [TextPart(draw(TEXT))] if draw(st.booleans()) or not tools else []
        pending = []
        if tools:
            for call_id in draw(st.lists(IDS, max_size=2, unique=True)):
                name = draw(st.sampled_from([t.name for t in tools]))
                pending.append(ToolCallPart(call_id, name, orjson.dumps(draw(JSON_ARGS)).decode()))
        if not reply and not pending:
            reply = [TextPart(draw(TEXT))]
        messages.append(Message("assistant", reply + pending))
    messages.append(
        Message("user", [*(ToolResultPart(c.id, c.name, [TextPart("ok")]) for c in pending), TextPart("go")])
    )
    request = IRRequest(model=MODELS[source], messages=messages, source=source, tools=tools)
    request.system = draw(st.lists(TEXT, max_size=2))
    request.stream = draw(st.booleans())
    request.max_tokens = draw(st.integers(1, 4000))
    request.temperature = draw(st.none() | st.floats(0, 1, allow_nan=False))
    request.top_p = draw(st.none() | st.floats(0, 1, allow_nan=False))
    request.stop = draw(st.lists(TEXT, max_size=3))
    if tools:
        mode = draw(st.sampled_from(["auto", "none", "required", "tool", None]))
        if mode == "tool":
            request.tool_choice = ToolChoice("tool", (draw(st.sampled_from([t.name for t in tools])),))
        elif mode is not None:
            request.tool_choice = ToolChoice(mode)  # type: ignore[arg-type]
    elif draw(st.booleans()):
        schema = draw(st.none() | SCHEMAS)
        request.response_format = ResponseFormat("json_schema" if schema else "json_object", schema=schema)
    if draw(st.booleans()):
        effort = draw(st.sampled_from(list(EFFORT_BUDGET)))
        request.reasoning = Reasoning(effort=effort)
        request.max_tokens = EFFORT_BUDGET[effort] + draw(st.integers(1, 4000))
        request.response_format = None if "anthropic" in pair else request.response_format
    if "anthropic" not in pair:
        request.n = draw(st.none() | st.integers(1, 4))
        request.presence_penalty = draw(st.none() | st.floats(-2, 2, allow_nan=False))
        request.frequency_penalty = draw(st.none() | st.floats(-2, 2, allow_nan=False))
        request.seed = draw(st.none() | st.integers(0, 2**31))
    if "openai" not in pair:
        request.top_k = draw(st.none() | st.integers(1, 100))
    return request


def meaning(request: IRRequest) -> dict[str, object]:
    """What both formats of a direction carry, in a comparable form."""
    messages: list[tuple[str, list[object]]] = []
    for message in request.messages:
        parts: list[object] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                parts.append(("text", part.text))
            elif isinstance(part, MediaPart):
                parts.append(("media", part.kind, part.media_type, part.data, part.url))
            elif isinstance(part, ToolCallPart):
                parts.append(("call", part.id, part.name, orjson.loads(part.arguments or "{}")))
            elif isinstance(part, ToolResultPart):
                texts = [p.text for p in part.content if isinstance(p, TextPart)]
                parts.append(("result", part.call_id, part.name, texts, part.is_error))
        if messages and messages[-1][0] == message.role:
            messages[-1][1].extend(parts)
        else:
            messages.append((message.role, parts))
    fmt = request.response_format
    return {
        "system": request.system,
        "messages": messages,
        "stream": request.stream,
        "max_tokens": request.max_tokens,
        "sampling": (request.temperature, request.top_p, request.top_k, request.stop),
        "tools": [(t.name, t.description, t.parameters) for t in request.tools],
        "tool_choice": request.tool_choice,
        "json": None if fmt is None else (fmt.schema or {"type": "object"}),
        "reasoning": None if request.reasoning is None else reasoning_budget(request.reasoning),
        "extras": (request.n, request.presence_penalty, request.frequency_penalty, request.seed),
    }


DIRECTIONS = [(s, t) for s, t in itertools.product(FORMATS, FORMATS) if s != t]


@pytest.mark.parametrize(("source", "target"), DIRECTIONS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_request_meaning_survives_translation(source: Format, target: Format, data: st.DataObject) -> None:
    original = data.draw(requests(source, target))
    client = from_wire(source, TO_WIRE[source](original), original.stream)
    assert meaning(client) == meaning(original)
    upstream = from_wire(target, TO_WIRE[target](client), client.stream)
    assert meaning(upstream) == meaning(client)


# --- stream splitting ---------------------------------------------------------------------------------------

UPSTREAM_STREAMS: list[tuple[Format, bytes]] = [
    ("openai", O2_STREAM),
    ("openai", O3_STREAM),
    ("openai", UPSTREAM_ANSWERS["openai"]("tool", True)),
    ("anthropic", A2_STREAM),
    ("anthropic", A3_STREAM),
    ("anthropic", A4_STREAM),
    ("gemini", G2_LAST.replace(b"\n", b"\r\n")),
    ("gemini", G3_STREAM + G4_STREAM),
    ("gemini", UPSTREAM_ANSWERS["gemini"]("text", True)),
]


def _translate(context: CallContext, pieces: list[bytes]) -> tuple[bytes, object, bool]:
    translator = StreamTranslator(context)
    out = b"".join(translator.feed(piece) for piece in pieces) + translator.finish()
    return out, translator.usage, translator.finished


@pytest.mark.parametrize("client", FORMATS)
@pytest.mark.parametrize(("upstream", "stream"), UPSTREAM_STREAMS)
@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0), max_size=20), gemini_sse=st.booleans())
def test_any_split_translates_the_same(
    client: Format, upstream: Format, stream: bytes, cuts: list[int], gemini_sse: bool
) -> None:
    context = CallContext(client, upstream, True, include_usage=True, gemini_sse=gemini_sse, created=1)
    whole = _translate(context, [stream])
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert _translate(context, pieces) == whole
    assert whole[0]
