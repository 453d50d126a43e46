"""The OpenAI surface through the official ``openai`` SDK, gateway → simulator, on SQLite (what a client sees does
not depend on the database under the gateway)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from omnirelay.config import ChannelConfig, Settings
from tests.conftest import SQLITE_ONLY, UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread, free_port

pytestmark = SQLITE_ONLY


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    sim = openai_sim.url + "/v1"
    settings = Settings(
        database_url=database_url,
        channels=[
            ChannelConfig(
                name="main",
                base_url=sim,
                api_keys=[UPSTREAM_KEY],
                models=["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "gpt-3.5-turbo-instruct"],
                model_map={"gpt-4o-latest": "gpt-4o"},
            ),
            ChannelConfig(
                name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1", api_keys=["x" * 20], models=["dead-model"]
            ),
            ChannelConfig(
                name="slow",
                base_url=sim,
                api_keys=[UPSTREAM_KEY],
                model_map={"slow-model": "gpt-4o-mini"},
                timeout_s=0.5,
            ),
            ChannelConfig(
                name="wrongkey", base_url=sim, api_keys=["sk-wrong-upstream-key-987654321"], models=["wrongkey-model"]
            ),
        ],
        prices={"dead-model": {"free": True}, "wrongkey-model": {"free": True}},
    )
    harness = start_gateway(settings)
    harness.keys["all"] = harness.create_key("all")
    harness.keys["mini"] = harness.create_key("mini-only", models=["gpt-4o-mini"])
    yield harness
    harness.server.stop()


@pytest.fixture(autouse=True)
def _reset_sim(openai_sim: ServerThread) -> None:
    httpx.post(openai_sim.url + "/_sim/reset")


def client(gw: GatewayHarness, key: str = "all") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.keys.get(key, key), max_retries=0)


def aclient(gw: GatewayHarness, key: str = "all") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.base_url, api_key=gw.keys[key], max_retries=0)


def usage_rows(gw: GatewayHarness) -> list[Any]:
    from sqlalchemy import select

    from omnirelay.store.models import UsageLog

    gw.flush_usage()

    async def read() -> list[Any]:
        async with gw.gateway.sessions() as session:
            return list((await session.scalars(select(UsageLog).order_by(UsageLog.id))).all())

    return gw.run(read())


def last_upstream_request(sim: ServerThread) -> dict[str, Any]:
    return httpx.get(sim.url + "/_sim/requests").json()["requests"][-1]


def test_chat_non_stream_returns_upstream_answer_and_logs_usage(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    reply = client(gw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": 'Say it [sim reply="Hello from the sim"]'}]
    )
    assert reply.choices[0].message.content == "Hello from the sim"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    rows = usage_rows(gw)[before:]
    assert len(rows) == 1
    row = rows[0]
    assert (row.model, row.stream, row.status_code) == ("gpt-4o-mini", False, 200)
    assert (row.prompt_tokens, row.completion_tokens) == (reply.usage.prompt_tokens, reply.usage.completion_tokens)
    assert row.usage_estimated is False


def test_overhead_and_request_id_headers(gw: GatewayHarness) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert float(raw.headers["x-omnirelay-overhead-ms"]) >= 0


async def test_stream_with_include_usage_passes_usage_chunk(gw: GatewayHarness) -> None:
    stream = await aclient(gw).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "count [sim output_tokens=12]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert len(text.split()) == 12
    assert usage is not None and usage.completion_tokens == 12


def test_stream_without_include_usage_hides_usage_but_bills_it(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    with httpx.stream(
        "POST",
        gw.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {gw.keys['all']}"},
        json={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi [sim output_tokens=7]"}],
            "stream": True,
        },
    ) as response:
        body = response.read().decode()
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in body.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    for event in events[:-1]:
        payload = json.loads(event.removeprefix("data: "))
        assert "usage" not in payload
        assert payload["choices"]
    # The gateway asked upstream for usage on the client's behalf and billed from it.
    assert json.loads(last_upstream_request(gw_sim(gw))["body"])["stream_options"] == {"include_usage": True}
    row = usage_rows(gw)[before:][0]
    assert row.completion_tokens == 7 and row.usage_estimated is False and row.stream is True


def gw_sim(gw: GatewayHarness) -> ServerThread:
    return gw._sim  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(autouse=True)
def _attach_sim(gw: GatewayHarness, openai_sim: ServerThread) -> None:
    gw._sim = openai_sim  # type: ignore[attr-defined]


WEATHER_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
        },
    },
]


def test_streamed_parallel_tool_calls_assemble(gw: GatewayHarness) -> None:
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather and time [sim tool_calls=2]"}],
        tools=WEATHER_TOOLS,
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                if call.function and call.function.name:
                    entry["name"] = call.function.name
                if call.function and call.function.arguments:
                    entry["arguments"] += call.function.arguments
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    weather = json.loads(calls[0]["arguments"])
    assert isinstance(weather["city"], str) and weather["unit"] in ("c", "f")
    assert isinstance(json.loads(calls[1]["arguments"])["zone"], str)


def test_tool_result_round_trip(gw: GatewayHarness) -> None:
    reply = client(gw).chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
        ],
        tools=WEATHER_TOOLS,
    )
    assert "sunny, 21 C" in (reply.choices[0].message.content or "")


def test_n3_stream_each_choice_assembles(gw: GatewayHarness) -> None:
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "three [sim output_tokens=5]"}], n=3, stream=True
    )
    texts = ["", "", ""]
    finishes: dict[int, str] = {}
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert all(len(t.split()) == 5 for t in texts)
    assert finishes == {0: "stop", 1: "stop", 2: "stop"}


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]


def test_structured_output_parses(gw: GatewayHarness) -> None:
    completion = client(gw).chat.completions.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a person"}], response_format=Person
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Person)


def test_vision_base64_passes_through_untouched(gw: GatewayHarness, openai_sim: ServerThread) -> None:
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40).decode()
    reply = client(gw).chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                ],
            }
        ],
    )
    assert reply.choices[0].message.content
    assert image in last_upstream_request(openai_sim)["body"]


def test_model_map_rewrites_only_the_model(gw: GatewayHarness, openai_sim: ServerThread) -> None:
    raw = (
        b'{"messages": [{"role": "user", "content": "hi"}],  "model": "gpt-4o-latest", '
        b'"temperature": 0.70, "x_vendor": {"model": "keep"}}'
    )
    response = httpx.post(
        gw.base_url + "/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {gw.keys['all']}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    sent = last_upstream_request(openai_sim)["body"].encode()
    assert sent == raw.replace(b'"model": "gpt-4o-latest"', b'"model": "gpt-4o"')


def test_embeddings_float_and_sdk_default_base64(gw: GatewayHarness) -> None:
    as_float = client(gw).embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    default = client(gw).embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=64)
    assert len(as_float.data) == 2 and len(as_float.data[0].embedding) == 1536
    assert len(default.data[1].embedding) == 64
    assert all(isinstance(v, float) for v in default.data[0].embedding)
    assert as_float.usage.prompt_tokens > 0


def test_legacy_completions(gw: GatewayHarness) -> None:
    reply = client(gw).completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time", max_tokens=5)
    assert reply.choices[0].text
    assert reply.usage is not None and reply.usage.completion_tokens <= 5


def test_models_list_only_shows_allowed_models(gw: GatewayHarness) -> None:
    every = {m.id for m in client(gw).models.list()}
    assert {"gpt-4o-mini", "gpt-4o-latest", "slow-model"} <= every
    assert [m.id for m in client(gw, "mini").models.list()] == ["gpt-4o-mini"]
    assert client(gw, "mini").models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client(gw, "mini").models.retrieve("gpt-4o")


def chat(gw: GatewayHarness, key: str = "all", **kwargs: Any) -> Any:
    params: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    params.update(kwargs)
    return client(gw, key).chat.completions.create(**params)


def test_missing_and_bad_keys_are_401(gw: GatewayHarness) -> None:
    response = httpx.post(gw.base_url + "/chat/completions", json={"model": "gpt-4o-mini", "messages": []})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key="sk-or-not-a-real-key")


def test_model_not_allowed_is_403_and_unknown_is_404(gw: GatewayHarness) -> None:
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat(gw, key="mini", model="gpt-4o")
    assert denied.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as missing:
        chat(gw, model="no-such-model")
    assert missing.value.code == "model_not_found"
    assert UPSTREAM_KEY not in str(missing.value.body)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model": "gpt-4o-mini", "messages": [', None),
        (b'{"model": "gpt-4o-mini"}', "messages"),
        (b'{"messages": []}', "model"),
    ],
)
def test_malformed_bodies_are_400_naming_the_field(gw: GatewayHarness, body: bytes, param: str | None) -> None:
    response = httpx.post(
        gw.base_url + "/chat/completions", content=body, headers={"Authorization": f"Bearer {gw.keys['all']}"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert "Traceback" not in response.text


def test_body_over_limit_is_413(gw: GatewayHarness) -> None:
    limit = gw.gateway.settings.max_body_bytes
    big = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"a" * limit + b'"}]}'
    response = httpx.post(
        gw.base_url + "/chat/completions", content=big, headers={"Authorization": f"Bearer {gw.keys['all']}"}
    )
    assert response.status_code == 413


def test_upstream_unreachable_is_502_and_timeout_504(gw: GatewayHarness) -> None:
    with pytest.raises(openai.InternalServerError) as unreachable:
        chat(gw, model="dead-model")
    assert unreachable.value.status_code == 502
    assert "x" * 20 not in str(unreachable.value.body)
    with pytest.raises(openai.InternalServerError) as timeout:
        chat(gw, model="slow-model", messages=[{"role": "user", "content": "[sim fault=hang]"}])
    assert timeout.value.status_code == 504


def test_upstream_4xx_passed_on_and_upstream_auth_failure_hides_key(gw: GatewayHarness) -> None:
    with pytest.raises(openai.BadRequestError):
        chat(gw, messages=[{"role": "user", "content": "[sim fault=400]"}])
    with pytest.raises(openai.RateLimitError):
        chat(gw, messages=[{"role": "user", "content": "[sim fault=429]"}])
    with pytest.raises(openai.InternalServerError) as bad_upstream_key:
        chat(gw, model="wrongkey-model")
    assert bad_upstream_key.value.status_code == 502
    assert "wrong-upstream" not in json.dumps(bad_upstream_key.value.body)


def test_upstream_500_fails_over_to_nothing_and_is_logged(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    with pytest.raises(openai.InternalServerError):
        chat(gw, messages=[{"role": "user", "content": "[sim fault=500]"}])
    row = usage_rows(gw)[before:][-1]
    assert row.status_code >= 500 and row.error_code == "upstream_error"


def test_stream_cut_midway_is_billed_from_offline_count(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "long [sim fault=cut fault_after=6 output_tokens=40]"}],
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    row = usage_rows(gw)[before:][0]
    assert row.usage_estimated is True
    assert row.completion_tokens == len(text.split()) > 0
    assert row.prompt_tokens > 0
    assert row.status_code == 502 and row.error_code == "upstream_stream_cut"


def test_revoked_and_expired_keys_are_refused(gw: GatewayHarness) -> None:
    from datetime import UTC, datetime, timedelta

    from omnirelay.store import repo

    key = gw.create_key("short-lived")
    assert chat(gw, key=key).choices
    key_id = gw.gateway.snapshot.keys_by_hash[__import__("omnirelay.crypto").crypto.hash_key(key)].id

    async def revoke() -> None:
        async with gw.gateway.sessions.begin() as session:
            await repo.revoke_key(session, key_id)
        await gw.gateway.reload()

    gw.run(revoke())
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key=key)
    expired = gw.create_key("expired", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key=expired)


def test_no_upstream_key_in_logs(
    gw: GatewayHarness, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    for content in ("[sim fault=500]", "[sim fault=401]", "hi"):
        try:
            chat(gw, messages=[{"role": "user", "content": content}])
        except openai.APIError:
            pass
    try:
        chat(gw, model="wrongkey-model")
    except openai.APIError:
        pass
    captured = capsys.readouterr()
    everything = caplog.text + captured.out + captured.err
    for secret in (UPSTREAM_KEY, "sk-wrong-upstream-key-987654321"):
        assert secret not in everything
        assert secret[:12] not in everything
