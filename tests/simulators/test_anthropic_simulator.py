"""The Anthropic simulator over a real socket, driven by the official ``anthropic`` SDK (sync and async)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnirelay.simulators.anthropic import (
    CACHE_MIN_TOKENS,
    IMAGE_TOKENS,
    THINKING_TOKENS,
    create_anthropic_simulator,
)
from omnirelay.simulators.common import SimulatorState, generated_words
from omnirelay.simulators.schema_values import value_for_schema
from tests.harness import ServerThread

KEY = "sk-ant-sim-key"
MODEL = "claude-sonnet-4-6"
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "minLength": 2},
            "units": {"type": "string", "enum": ["c", "f"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["location", "units"],
        "additionalProperties": False,
    },
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    state = SimulatorState(api_keys=frozenset({KEY}))
    thread = ServerThread(create_anthropic_simulator(state)).start()
    thread.state = state  # type: ignore[attr-defined]
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def _fresh_state(server: ServerThread) -> None:
    httpx2.post(f"{server.url}/_sim/reset").raise_for_status()


@pytest.fixture
def client(server: ServerThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=KEY, base_url=server.url, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def aclient(server: ServerThread) -> AsyncIterator[anthropic.AsyncAnthropic]:
    sdk = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.url, max_retries=0)
    yield sdk
    await sdk.close()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def raw_post(server: ServerThread, body: dict[str, Any], **headers: str) -> httpx2.Response:
    sent = {"x-api-key": KEY, "anthropic-version": "2023-06-01", **headers}
    return httpx2.post(f"{server.url}/v1/messages", json=body, headers=sent, timeout=10)


def sse_events(raw: bytes) -> list[tuple[str, bytes]]:
    """Split a body into (event, data) while asserting A2's framing: ``event:`` + ``data:`` + blank line."""
    assert raw.endswith(b"\n\n") and b"\r" not in raw
    events = []
    for frame in raw[:-2].split(b"\n\n"):
        event_line, data_line = frame.split(b"\n")
        assert event_line.startswith(b"event: ") and data_line.startswith(b"data: ")
        events.append((event_line[7:].decode(), data_line[6:]))
    return events


# ----------------------------------------------------------------------------------------------------- basics


def test_create_returns_a1_shape_and_headers(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=user("Hello there"))
    message = raw.parse()
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "4000"
    assert re.fullmatch(r"msg_01[A-Za-z0-9]{22}", message.id)
    assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
    assert message.content[0].type == "text"
    assert message.content[0].text == "".join(generated_words("Hello there", 16))
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.output_tokens == 16
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.service_tier == "standard"
    counted = client.messages.count_tokens(model=MODEL, messages=user("Hello there"))
    assert message.usage.input_tokens == counted.input_tokens == 2


def test_same_prompt_same_reply_and_directives_steer(client: anthropic.Anthropic) -> None:
    first = client.messages.create(model=MODEL, max_tokens=100, messages=user("Same seed"))
    second = client.messages.create(model=MODEL, max_tokens=100, messages=user("Same seed"))
    assert first.content == second.content
    steered = client.messages.create(
        model=MODEL, max_tokens=100, messages=user('Same seed [sim output_tokens=3 reply="Exactly this."]')
    )
    assert steered.content[0].text == "Exactly this."  # type: ignore[union-attr]


def test_system_blocks_tools_and_count_tokens_agree(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": "You are a careful scientist."}]
    kwargs: dict[str, Any] = {"model": MODEL, "system": system, "tools": [WEATHER_TOOL]}
    messages = [{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}]
    counted = client.messages.count_tokens(messages=messages, **kwargs)  # type: ignore[arg-type]
    created = client.messages.create(max_tokens=300, messages=messages, tool_choice={"type": "none"}, **kwargs)  # type: ignore[arg-type]
    assert created.usage.input_tokens == counted.input_tokens > 20
    assert created.stop_reason == "end_turn"


async def test_async_stream_final_message_equals_create(aclient: anthropic.AsyncAnthropic) -> None:
    created = await aclient.messages.create(model=MODEL, max_tokens=100, messages=user("Stream me"))
    texts = []
    async with aclient.messages.stream(model=MODEL, max_tokens=100, messages=user("Stream me")) as stream:
        async for text in stream.text_stream:
            texts.append(text)
        final = await stream.get_final_message()
    assert len(texts) == 16  # one token per delta
    assert final.content[0].text == "".join(texts) == created.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == created.usage.output_tokens == 16
    assert final.usage.input_tokens == created.usage.input_tokens
    assert final.stop_reason == "end_turn"


def test_raw_stream_framing_follows_a2(server: ServerThread) -> None:
    body = {"model": MODEL, "max_tokens": 50, "stream": True, "messages": user("Frame [sim output_tokens=3]")}
    response = raw_post(server, body)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["request-id"].startswith("req_")
    events = sse_events(response.content)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[2][1] == b'{"type": "ping"}'
    parsed = [orjson.loads(data) for _, data in events]
    assert all(p["type"] == name for p, name in zip(parsed, names, strict=True))
    assert any(data.endswith(b" }") for _, data in events)  # the live API's padding
    start = parsed[0]["message"]
    assert list(start)[:2] == ["model", "id"] and start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    assert parsed[1]["content_block"] == {"type": "text", "text": ""}
    assert [p["delta"]["type"] for p in parsed[3:6]] == ["text_delta"] * 3
    assert parsed[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert parsed[-2]["usage"]["output_tokens"] == 3
    assert parsed[-2]["usage"]["input_tokens"] == start["usage"]["input_tokens"]


# ------------------------------------------------------------------------------------------------------ tools


def test_streamed_tool_input_assembles_to_schema_valid_json(client: anthropic.Anthropic) -> None:
    fragments: dict[int, list[str]] = {}
    with client.messages.stream(
        model=MODEL, max_tokens=1000, messages=user("Weather? [sim tool_calls=2]"), tools=[WEATHER_TOOL]
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                fragments.setdefault(event.index, []).append(event.delta.partial_json)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    calls = [b for b in final.content if b.type == "tool_use"]
    assert len(calls) == 2 and len({c.id for c in calls}) == 2
    for index, call in enumerate(final.content):
        assert call.type == "tool_use" and call.id.startswith("toolu_01")
        assert fragments[index][0] == ""  # as the API opens every tool block
        assert json.loads("".join(fragments[index])) == call.input
        assert_valid(WEATHER_TOOL["input_schema"], call.input)


def test_tool_result_round_trip(client: anthropic.Anthropic) -> None:
    messages: list[dict[str, Any]] = user("What is the weather in Paris?")
    first = client.messages.create(model=MODEL, max_tokens=500, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    call = first.content[0]
    assert call.type == "tool_use" and first.stop_reason == "tool_use"
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "22 degrees"}]},
    ]
    second = client.messages.create(model=MODEL, max_tokens=500, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    assert second.stop_reason == "end_turn"
    assert "22 degrees" in second.content[0].text  # type: ignore[union-attr]
    messages[-1]["content"][0]["tool_use_id"] = "toolu_01unknown"
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id`"):
        client.messages.create(model=MODEL, max_tokens=500, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]


def test_tool_choice_forces_a_named_tool_and_none_answers_text(client: anthropic.Anthropic) -> None:
    other = {**WEATHER_TOOL, "name": "get_time", "input_schema": {"type": "object", "properties": {}}}
    forced = client.messages.create(
        model=MODEL,
        max_tokens=500,
        messages=user("Time? [sim tool_calls=3]"),
        tools=[WEATHER_TOOL, other],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_time"},
    )
    assert [(b.type, getattr(b, "name", None), getattr(b, "input", None)) for b in forced.content] == [
        ("tool_use", "get_time", {})
    ]
    plain = client.messages.create(
        model=MODEL, max_tokens=500, messages=user("Time?"), tools=[WEATHER_TOOL], tool_choice={"type": "none"}
    )
    assert [b.type for b in plain.content] == ["text"]


# ------------------------------------------------------------------------------------ thinking, limits, images


def test_thinking_block_streams_with_a_signature(client: anthropic.Anthropic, server: ServerThread) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    with client.messages.stream(model=MODEL, max_tokens=2048, messages=user("Think"), thinking=thinking) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature  # type: ignore[union-attr]
    assert final.usage.output_tokens == THINKING_TOKENS + 16
    created = client.messages.create(model=MODEL, max_tokens=2048, messages=user("Think"), thinking=thinking)
    assert [b.model_dump() for b in created.content] == [
        {k: v for k, v in b.model_dump().items() if k != "parsed_output"} for b in final.content
    ]
    body = {"model": MODEL, "max_tokens": 2048, "stream": True, "thinking": thinking, "messages": user("Think")}
    parsed = [orjson.loads(data) for _, data in sse_events(raw_post(server, body).content)]
    assert parsed[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    stop = next(i for i, p in enumerate(parsed) if p["type"] == "content_block_stop")
    assert parsed[stop - 1]["delta"]["type"] == "signature_delta"
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens"):
        client.messages.create(model=MODEL, max_tokens=1000, messages=user("Think"), thinking=thinking)


def test_max_tokens_and_stop_sequences(client: anthropic.Anthropic) -> None:
    cut = client.messages.create(model=MODEL, max_tokens=5, messages=user("Long answer"))
    assert (cut.stop_reason, cut.usage.output_tokens) == ("max_tokens", 5)
    stopped = client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=user('Go [sim reply="alpha beta END gamma"]'),
        stop_sequences=["END", "gamma"],
    )
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "END")
    assert stopped.content[0].text == "alpha beta "  # type: ignore[union-attr]


def test_images_cost_fixed_tokens(client: anthropic.Anthropic) -> None:
    image: dict[str, Any] = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    url_image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    content = [image, url_image, {"type": "text", "text": "Describe"}]
    with_images = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": content}])  # type: ignore[list-item]
    text_only = client.messages.count_tokens(model=MODEL, messages=user("Describe"))
    assert with_images.input_tokens - text_only.input_tokens == 2 * IMAGE_TOKENS
    created = client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": content}])  # type: ignore[list-item]
    assert created.usage.input_tokens == with_images.input_tokens
    assert created.content[0].text == "".join(generated_words("Describe", 16))  # type: ignore[union-attr]


def test_prompt_cache_writes_then_reads(client: anthropic.Anthropic) -> None:
    long_text = "the quick brown fox " * (CACHE_MIN_TOKENS // 3)
    system: Any = [{"type": "text", "text": long_text, "cache_control": {"type": "ephemeral"}}]
    first = client.messages.create(model=MODEL, max_tokens=20, system=system, messages=user("Q1 cache"))
    second = client.messages.create(model=MODEL, max_tokens=20, system=system, messages=user("Q2 cache"))
    assert first.usage.cache_creation_input_tokens == second.usage.cache_read_input_tokens >= CACHE_MIN_TOKENS
    assert first.usage.cache_read_input_tokens == second.usage.cache_creation_input_tokens == 0
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == first.usage.cache_creation_input_tokens  # type: ignore[union-attr]
    counted = client.messages.count_tokens(model=MODEL, system=system, messages=user("Q2 cache"))
    assert second.usage.input_tokens + second.usage.cache_read_input_tokens == counted.input_tokens


# ----------------------------------------------------------------------------------------------------- errors


def test_request_validation_in_anthropic_shape(server: ServerThread) -> None:
    missing = raw_post(server, {"model": MODEL, "messages": user("x")})
    assert missing.status_code == 400
    assert missing.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    assert missing.json()["request_id"] == missing.headers["request-id"]
    extra = raw_post(server, {"model": MODEL, "max_tokens": 5, "messages": user("x"), "n": 2})
    assert extra.json()["error"]["message"] == "n: Extra inputs are not permitted"
    no_version = httpx2.post(
        f"{server.url}/v1/messages",
        json={"model": MODEL, "max_tokens": 5, "messages": user("x")},
        headers={"x-api-key": KEY},
    )
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]
    bearer = raw_post(
        server,
        {"model": MODEL, "max_tokens": 5, "messages": user("x")},
        **{"x-api-key": "", "authorization": f"Bearer {KEY}"},
    )
    assert bearer.status_code == 200


def test_no_usage_leaves_usage_out(server: ServerThread) -> None:
    body = {"model": MODEL, "max_tokens": 20, "messages": user("x [sim no_usage]")}
    assert "usage" not in raw_post(server, body).json()
    events = sse_events(raw_post(server, {**body, "stream": True}).content)
    assert not any(b'"usage"' in data for _, data in events)


def test_bad_key_is_authentication_error(server: ServerThread) -> None:
    with anthropic.Anthropic(api_key="sk-wrong", base_url=server.url, max_retries=0) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            sdk.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": caught.value.response.headers["request-id"],
    }


@pytest.mark.parametrize(
    ("fault", "error_class", "error_type"),
    [
        ("400", anthropic.BadRequestError, "invalid_request_error"),
        ("401", anthropic.AuthenticationError, "authentication_error"),
        ("403", anthropic.PermissionDeniedError, "permission_error"),
        ("404", anthropic.NotFoundError, "not_found_error"),
        ("413", anthropic.ContentTooLargeError, "request_too_large"),
        ("429", anthropic.RateLimitError, "rate_limit_error"),
        ("500", anthropic.InternalServerError, "api_error"),
        ("529", anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_status_faults_raise_the_sdk_class(
    client: anthropic.Anthropic, fault: str, error_class: type[anthropic.APIStatusError], error_type: str
) -> None:
    with pytest.raises(error_class) as caught:
        client.messages.create(model=MODEL, max_tokens=5, messages=user(f"x [sim fault={fault} retry_after=7]"))
    error = caught.value
    assert error.status_code == int(fault)
    assert error.body["error"]["type"] == error_type  # type: ignore[index]
    assert error.response.headers["request-id"].startswith("req_")
    assert error.response.headers.get("retry-after") == ("7" if fault in {"429", "529"} else None)
    assert error.response.headers["x-should-retry"] == ("true" if fault in {"429", "500", "529"} else "false")


def test_queued_faults_fail_in_order_then_recover(client: anthropic.Anthropic, server: ServerThread) -> None:
    httpx2.post(f"{server.url}/_sim/faults", json={"faults": ["529", "error"]}).raise_for_status()
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        with client.messages.stream(model=MODEL, max_tokens=5, messages=user("x")) as stream:
            stream.get_final_message()
    assert client.messages.create(model=MODEL, max_tokens=5, messages=user("x")).stop_reason == "max_tokens"
    assert httpx2.get(f"{server.url}/_sim/requests").json()["count"] == 3


def test_stream_faults(client: anthropic.Anthropic) -> None:
    def final(fault: str) -> anthropic.types.Message:
        text = f"x [sim fault={fault} fault_after=5]"
        with client.messages.stream(model=MODEL, max_tokens=100, messages=user(text)) as stream:
            return stream.get_final_message()

    with pytest.raises(httpx2.RemoteProtocolError):
        final("reset")
    with pytest.raises(json.JSONDecodeError):
        final("malformed")
    cut = final("cut")  # ended early: no message_delta, so no stop reason and only part of the text
    assert cut.stop_reason is None and len(cut.content[0].text.split()) == 2  # type: ignore[union-attr]
    with pytest.raises(anthropic.APIStatusError) as caught:
        final("error")
    assert caught.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(model=MODEL, max_tokens=5, messages=user("x [sim fault=reset]"))


def test_hang_times_out_and_pacing_takes_time(server: ServerThread) -> None:
    with anthropic.Anthropic(api_key=KEY, base_url=server.url, max_retries=0, timeout=0.3) as sdk:
        with pytest.raises(anthropic.APITimeoutError):
            sdk.messages.create(model=MODEL, max_tokens=5, messages=user("x [sim fault=hang]"))
        started = time.monotonic()
        with sdk.messages.stream(
            model=MODEL, max_tokens=50, messages=user("x [sim tokens_per_second=100 output_tokens=10 ttft_ms=50]")
        ) as stream:
            assert stream.get_final_message().usage.output_tokens == 10
        assert time.monotonic() - started >= 0.14


def test_models_list_and_retrieve(client: anthropic.Anthropic) -> None:
    models = list(client.models.list(limit=2))
    assert len(models) >= 4 and all(m.type == "model" for m in models)
    assert client.models.retrieve(models[0].id).display_name == models[0].display_name
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nope")


# ------------------------------------------------------------------------------------------- schema values


def assert_valid(schema: dict[str, Any], value: object, root: dict[str, Any] | None = None) -> None:
    """A small JSON Schema validator for the keywords the strategy below produces."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return assert_valid(root["$defs"][name], value, root)
    if "const" in schema:
        assert value == schema["const"]
    if "enum" in schema:
        assert value in schema["enum"]
    if "anyOf" in schema:
        errors = 0
        for option in schema["anyOf"]:
            try:
                assert_valid(option, value, root)
            except AssertionError:
                errors += 1
        assert errors < len(schema["anyOf"])
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        assert any(_is_type(value, k) for k in kinds), (value, kinds)
    if isinstance(value, str):
        assert schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9)
    if isinstance(value, int | float) and not isinstance(value, bool):
        assert value >= schema.get("minimum", value) and value <= schema.get("maximum", value)
        assert "exclusiveMinimum" not in schema or value > schema["exclusiveMinimum"]
        assert "exclusiveMaximum" not in schema or value < schema["exclusiveMaximum"]
        assert "multipleOf" not in schema or value % schema["multipleOf"] == 0
    if isinstance(value, list):
        assert schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", 10**9)
        for item in value:
            assert_valid(schema.get("items", {}), item, root)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        assert set(schema.get("required", [])) <= set(value)
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(properties)
        for name, item in value.items():
            assert_valid(properties.get(name, {}), item, root)
    return None


def _is_type(value: object, kind: str) -> bool:
    checks = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "null": value is None,
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }
    return checks[kind.lower()]


@st.composite
def _integer_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    low = draw(st.integers(-1000, 1000))
    width = draw(st.integers(4, 500))  # room for a multiple of any step below strictly inside
    if draw(st.booleans()):
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = low
    if draw(st.booleans()):
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = low + width
    if draw(st.booleans()):
        schema["multipleOf"] = draw(st.integers(1, 3))
    return schema


@st.composite
def _number_schemas(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.floats(-1e6, 1e6, allow_nan=False))
    high = low + draw(st.floats(0.5, 1e6))
    bounds = {"minimum": low, "maximum": high} if draw(st.booleans()) else {"exclusiveMinimum": low}
    return {"type": "number", **bounds}


_STRING_SCHEMAS = st.builds(
    lambda low, extra, fmt: {"type": "string", "minLength": low, "maxLength": low + extra, **fmt},
    st.integers(0, 40),
    st.integers(0, 40),
    st.sampled_from([{}, {"format": "date-time"}, {"format": "email"}, {"format": "uuid"}]),
)
_LEAVES = st.one_of(
    _STRING_SCHEMAS,
    _integer_schemas(),
    _number_schemas(),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.just({"type": ["string", "null"]}),
    st.lists(st.one_of(st.integers(), st.text(max_size=5)), min_size=1, max_size=4).map(lambda e: {"enum": e}),
    st.sampled_from([{"const": "fixed"}, {"type": "STRING"}, {"type": "INTEGER", "minimum": 3}]),
)


def _composites(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    objects = st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), children, max_size=4).flatmap(
        lambda props: st.builds(
            lambda required, closed: {
                "type": "object",
                "properties": props,
                "required": required,
                **({"additionalProperties": False} if closed else {}),
            },
            st.lists(st.sampled_from(sorted(props)), unique=True) if props else st.just([]),
            st.booleans(),
        )
    )
    arrays = st.builds(
        lambda items, low, extra: {"type": "array", "items": items, "minItems": low, "maxItems": low + extra},
        children,
        st.integers(0, 3),
        st.integers(0, 3),
    )
    unions = st.lists(children, min_size=1, max_size=3).map(lambda options: {"anyOf": options})
    return st.one_of(objects, arrays, unions)


SCHEMAS = st.recursive(_LEAVES, _composites, max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS, seed=st.text(max_size=12))
def test_value_for_schema_is_valid_and_deterministic(schema: dict[str, Any], seed: str) -> None:
    value = value_for_schema(schema, seed)
    assert_valid(schema, value)
    assert value_for_schema(schema, seed) == value
    json.dumps(value)  # tool inputs must serialise


def test_value_for_schema_follows_refs_and_ends_recursion() -> None:
    node = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
        },
        "required": ["name", "children", "next"],
    }
    schema = {"$defs": {"Node": node}, "$ref": "#/$defs/Node"}
    value = value_for_schema(schema, "tree")
    assert_valid(schema, value)
    depth = 0
    while value is not None:
        assert isinstance(value, dict)
        value, depth = value["next"], depth + 1
    assert 1 < depth < 20
    impossible = {"$defs": {"N": {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}}, "required": ["n"]}}}
    with pytest.raises(ValueError, match="deeper than any finite"):
        value_for_schema({**impossible, "$ref": "#/$defs/N"}, "x")
