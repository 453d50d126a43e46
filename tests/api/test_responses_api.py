"""``POST /v1/responses`` through the gateway with the official ``openai`` SDK (on SQLite: the database only keeps
the usage rows the prices are checked against).

Four channels: OpenAI (``/v1/responses`` passed through byte for byte, model name mapped), Anthropic and Gemini
(translated to their chat formats and back), and an ``openai-compatible`` channel that only has chat (translated to
Chat Completions). Each is called stream and non-stream, with tools and a tool round trip; billing is checked from
the usage rows against the price table; what only OpenAI's servers can do is a 400 naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from omnirelay.billing.cost import cost_of_tokens
from omnirelay.config import ChannelConfig
from omnirelay.formats.usage import Usage
from tests.api.keyed_gateway import client, keyed_gateway, usage_rows
from tests.api.test_matrix import MODELS, TOOL_ECHO, WEATHER, Upstreams, start_upstreams, three_channel_settings
from tests.conftest import SQLITE_ONLY, UPSTREAM_KEY, GatewayHarness

pytestmark = SQLITE_ONLY

COMPAT_MODEL = "deepseek-chat"
"""Served by an ``openai-compatible`` channel (chat only) that points at the OpenAI simulator."""
TARGETS = {**MODELS, "compat": COMPAT_MODEL}
REPLY = "the quick brown fox jumps over the lazy dog"
TOOL = {"type": "function", **WEATHER}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    servers = start_upstreams()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def gw(database_url: str, upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    settings = three_channel_settings(tmp_path_factory.mktemp("responses"), upstreams)
    compat = ChannelConfig(
        name="compat-sim",
        type="openai-compatible",
        base_url=upstreams.sims["openai"].url + "/v1",
        api_keys=[UPSTREAM_KEY],
        models=[COMPAT_MODEL],
    )
    openai_channel = settings.channels[0].model_copy(update={"model_map": {"gpt-4o-latest": "gpt-4o"}})
    channels = [openai_channel, *settings.channels[1:], compat]
    yield from keyed_gateway(settings.model_copy(update={"database_url": database_url, "channels": channels}))


@pytest.fixture(autouse=True)
def _reset(upstreams: Upstreams) -> None:
    upstreams.reset()


def upstream_paths(upstreams: Upstreams, vendor: str) -> list[str]:
    return [r["path"] for r in upstreams.requests("openai" if vendor == "compat" else vendor)]  # type: ignore[arg-type]


def check_billed(gw: GatewayHarness, before: int, model: str, usage: Any, *, stream: bool) -> None:
    """One usage row for the call, with the tokens the SDK saw and their cost at the model's price."""
    rows = usage_rows(gw)[before:]
    assert len(rows) == 1
    row = rows[0]
    assert (row.endpoint, row.model, row.stream, row.status_code) == ("openai.responses", model, stream, 200)
    assert (row.prompt_tokens, row.completion_tokens) == (usage.input_tokens, usage.output_tokens)
    assert row.usage_estimated is False
    price = gw.gateway.billing.price_for(model)
    expected = cost_of_tokens(price, Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens))
    assert expected > 0 and row.cost_micros == expected


def prompt(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "input_text", "text": text}]}]


# --- plain text ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", list(TARGETS))
def test_non_stream_text(gw: GatewayHarness, upstreams: Upstreams, vendor: str) -> None:
    model = TARGETS[vendor]
    before = len(usage_rows(gw))
    response = client(gw).responses.create(
        model=model, instructions="Answer briefly.", input=prompt(f'Say it [sim reply="{REPLY}"]')
    )
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == REPLY
    assert response.model == model
    assert response.output[0].type == "message"
    assert response.usage is not None and response.usage.input_tokens > 0
    assert response.usage.output_tokens == 9
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    expected_path = {"openai": "/v1/responses", "compat": "/v1/chat/completions"}.get(vendor)
    if expected_path is not None:
        assert upstream_paths(upstreams, vendor)[-1] == expected_path
    check_billed(gw, before, model, response.usage, stream=False)


@pytest.mark.parametrize("vendor", list(TARGETS))
def test_stream_text(gw: GatewayHarness, vendor: str) -> None:
    model = TARGETS[vendor]
    before = len(usage_rows(gw))
    deltas: list[str] = []
    types: list[str] = []
    sequence: list[int] = []
    with client(gw).responses.stream(model=model, input=prompt(f'Say it [sim reply="{REPLY}"]')) as stream:
        for event in stream:
            types.append(event.type)
            sequence.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == REPLY and final.output_text == REPLY
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert sequence == list(range(len(sequence)))
    assert final.status == "completed" and final.usage is not None and final.usage.output_tokens == 9
    check_billed(gw, before, model, final.usage, stream=True)


def test_stream_raw_wire_has_event_lines_and_no_done(gw: GatewayHarness) -> None:
    """The framing a non-SDK client parses: ``event:`` equal to ``data.type``, and no ``[DONE]``."""
    for model in (TARGETS["openai"], TARGETS["anthropic"]):
        with httpx.stream(
            "POST",
            gw.base_url + "/responses",
            headers={"authorization": f"Bearer {gw.keys['all']}"},
            json={"model": model, "input": "hi", "stream": True},
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            body = response.read().decode()
        blocks = [b for b in body.split("\n\n") if b.strip()]
        assert "[DONE]" not in body
        for block in blocks:
            event_line, data_line = block.split("\n")
            assert event_line.removeprefix("event: ") == json.loads(data_line.removeprefix("data: "))["type"]
        assert json.loads(blocks[-1].split("\n")[1][6:])["type"] == "response.completed"


# --- tools --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
@pytest.mark.parametrize("vendor", list(TARGETS))
def test_tool_call_round_trip(gw: GatewayHarness, vendor: str, stream: bool) -> None:
    model = TARGETS[vendor]
    sdk = client(gw)
    ask = prompt("What is the weather in Paris?")
    if stream:
        with sdk.responses.stream(model=model, input=ask, tools=[TOOL], tool_choice="required") as events:
            argument_deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
            first = events.get_final_response()
    else:
        first = sdk.responses.create(model=model, input=ask, tools=[TOOL], tool_choice="required")
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and call.call_id
    arguments = json.loads(call.arguments)
    assert set(arguments) >= {"city", "unit"} and arguments["unit"] in ("celsius", "fahrenheit")
    if stream:
        assert "".join(argument_deltas) == call.arguments
    follow_up = [
        *ask,
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny and 21 degrees"},
    ]
    second = sdk.responses.create(model=model, input=follow_up, tools=[TOOL])
    echo = TOOL_ECHO["openai" if vendor == "compat" else vendor]  # type: ignore[index]
    assert second.output_text.startswith(echo) and "sunny and 21 degrees" in second.output_text


def test_tool_definitions_reach_anthropic_in_its_shape(gw: GatewayHarness, upstreams: Upstreams) -> None:
    client(gw).responses.create(model=TARGETS["anthropic"], input="weather?", tools=[TOOL], max_output_tokens=300)
    body = upstreams.last_body("anthropic")
    assert body["tools"] == [
        {"name": "get_weather", "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}
    ]
    assert body["max_tokens"] == 300


# --- passthrough specifics ----------------------------------------------------------------------------------


def test_openai_channel_passthrough_maps_the_model_and_keeps_the_body(gw: GatewayHarness, upstreams: Upstreams) -> None:
    raw = orjson.dumps({"model": "gpt-4o-latest", "input": "Hi", "store": False, "metadata": {"k": "v"}})
    response = httpx.post(
        gw.base_url + "/responses",
        content=raw,
        headers={"authorization": f"Bearer {gw.keys['all']}", "content-type": "application/json"},
    )
    assert response.status_code == 200
    sent = upstreams.requests("openai")[-1]
    assert sent["body"] == raw.decode().replace('"gpt-4o-latest"', '"gpt-4o"')
    assert response.json()["model"] == "gpt-4o"  # the upstream's own body, untouched


def test_previous_response_id_works_on_openai_channels(gw: GatewayHarness) -> None:
    sdk = client(gw)
    first = sdk.responses.create(model=TARGETS["openai"], input='Hi [sim reply="first answer"]')
    second = sdk.responses.create(model=TARGETS["openai"], input="and then?", previous_response_id=first.id)
    assert second.status == "completed" and second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # type: ignore[union-attr]


# --- what cannot be translated ------------------------------------------------------------------------------

UNTRANSLATABLE: list[tuple[dict[str, Any], str]] = [
    ({"previous_response_id": "resp_abc"}, "previous_response_id"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
    ({"background": True}, "background"),
    ({"conversation": "conv_123"}, "conversation"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
]


@pytest.mark.parametrize("vendor", ["anthropic", "gemini", "compat"])
@pytest.mark.parametrize(("extra", "param"), UNTRANSLATABLE, ids=[p for _, p in UNTRANSLATABLE])
def test_untranslatable_fields_are_a_400_naming_them(
    gw: GatewayHarness, upstreams: Upstreams, vendor: str, extra: dict[str, Any], param: str
) -> None:
    before = len(upstream_paths(upstreams, vendor))
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw).responses.create(model=TARGETS[vendor], **{"input": "hi", **extra})
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == param
    assert param.split("[")[0] in error["message"]
    assert len(upstream_paths(upstreams, vendor)) == before  # nothing was sent upstream


def test_missing_input_is_a_400(gw: GatewayHarness) -> None:
    response = httpx.post(
        gw.base_url + "/responses",
        json={"model": TARGETS["anthropic"]},
        headers={"authorization": f"Bearer {gw.keys['all']}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


# --- failures -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_upstream_error_mid_stream_ends_with_an_error_event(gw: GatewayHarness, vendor: str) -> None:
    before = len(usage_rows(gw))
    types: list[str] = []
    stream = client(gw).responses.create(
        model=TARGETS[vendor], input="Hi [sim fault=error fault_after=4 output_tokens=30]", stream=True
    )
    for event in stream:
        types.append(event.type)
    assert types[0] == "response.created"
    assert types[-1] == "error" and "response.completed" not in types
    rows = usage_rows(gw)[before:]
    assert len(rows) == 1 and rows[0].status_code == 502


def test_upstream_429_reaches_the_client_as_openai_error(gw: GatewayHarness) -> None:
    with pytest.raises(openai.RateLimitError):
        client(gw).responses.create(model=TARGETS["gemini"], input="Hi [sim fault=429]")


def test_max_output_tokens_makes_an_incomplete_response(gw: GatewayHarness) -> None:
    for vendor in ("openai", "anthropic", "gemini"):
        response = client(gw).responses.create(
            model=TARGETS[vendor], input="Tell me [sim output_tokens=60]", max_output_tokens=20
        )
        assert response.status == "incomplete", vendor
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"


# --- structured output and images -----------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("vendor", list(TARGETS))
def test_json_schema_text_format(gw: GatewayHarness, vendor: str) -> None:
    response = client(gw).responses.create(
        model=TARGETS[vendor],
        input="Name a big city.",
        text={"format": {"type": "json_schema", "name": "city", "schema": SCHEMA, "strict": True}},
    )
    value = json.loads(response.output_text)
    assert set(value) == {"city", "population"} and isinstance(value["population"], int)


PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def test_input_image_reaches_gemini_inline(gw: GatewayHarness, upstreams: Upstreams) -> None:
    content = [
        {"type": "input_text", "text": "What is in this picture?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_1PX}", "detail": "low"},
    ]
    response = client(gw).responses.create(model=TARGETS["gemini"], input=[{"role": "user", "content": content}])
    assert response.status == "completed"
    parts = upstreams.last_body("gemini")["contents"][0]["parts"]
    assert {"inlineData": {"mimeType": "image/png", "data": PNG_1PX}} in parts


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"text": {"verbosity": "low"}}, "text.verbosity"), ({"top_logprobs": 3}, "top_logprobs")],
)
def test_openai_only_options_are_named_as_the_responses_client_sent_them(
    gw: GatewayHarness, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw).responses.create(model=TARGETS["anthropic"], input="hi", **extra)
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == param and f"'{param}'" in error["message"]
