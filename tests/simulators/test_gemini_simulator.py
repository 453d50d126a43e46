"""The Gemini simulator over a real socket, driven by the official ``google-genai`` SDK (sync and async)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pydantic
import pytest
from google import genai
from google.genai import errors, types

from omnirelay.simulators.common import SimulatorState, generated_words
from omnirelay.simulators.gemini import MEDIA_TOKENS, THINKING_TOKENS, create_gemini_simulator
from tests.harness import ServerThread

# google-genai's async client subclasses aiohttp.ClientSession, which aiohttp answers with a DeprecationWarning
# raised from the SDK's module (so pyproject's aiohttp filter misses it); nothing in this code can avoid it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged:DeprecationWarning"
)

KEY = "gemini-sim-key"
MODEL = "gemini-2.5-flash"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "location": types.Schema(type=types.Type.STRING),
            "units": types.Schema(type=types.Type.STRING, enum=["c", "f"]),
        },
        required=["location", "units"],
    ),
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


class Forecast(pydantic.BaseModel):
    city: str
    high: int
    rain: bool
    hours: list[float]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    state = SimulatorState(api_keys=frozenset({KEY}))
    thread = ServerThread(create_gemini_simulator(state)).start()
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def _fresh_state(server: ServerThread) -> None:
    httpx2.post(f"{server.url}/_sim/reset").raise_for_status()


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[genai.Client]:
    sdk = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=server.url, api_version="v1beta"))
    yield sdk
    sdk.close()


@pytest.fixture
async def aclient(server: ServerThread) -> AsyncIterator[genai.client.AsyncClient]:
    sdk = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=server.url, api_version="v1beta"))
    yield sdk.aio
    await sdk.aio.aclose()


def raw_post(server: ServerThread, method: str, body: dict[str, Any], query: str = "") -> httpx2.Response:
    url = f"{server.url}/v1beta/models/{MODEL}:{method}{query}"
    return httpx2.post(url, json=body, headers={"x-goog-api-key": KEY}, timeout=10)


def contents(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


# ----------------------------------------------------------------------------------------------------- basics


def test_generate_content_follows_g1(client: genai.Client, server: ServerThread) -> None:
    response = client.models.generate_content(model=MODEL, contents="Hello there")
    assert response.text == "".join(generated_words("Hello there", 16))
    candidate = response.candidates[0]  # type: ignore[index]
    assert (candidate.finish_reason, candidate.index, candidate.content.role) == ("STOP", 0, "model")  # type: ignore[union-attr]
    usage = response.usage_metadata
    assert usage is not None and usage.thoughts_token_count is None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (2, 16, 18)
    assert usage.prompt_tokens_details[0].modality == "TEXT"  # type: ignore[index]
    assert response.model_version == MODEL and len(response.response_id or "") == 23
    raw = raw_post(server, "generateContent", contents("Hello there"))
    assert raw.headers["content-type"] == "application/json; charset=UTF-8"
    assert raw.text.startswith('{\n  "candidates": [\n')  # pretty-printed, Google style
    assert list(raw.json()) == ["candidates", "usageMetadata", "modelVersion", "responseId"]


def test_default_v1_path_and_query_key(server: ServerThread) -> None:
    with genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=server.url)) as sdk:
        assert sdk.models.generate_content(model=MODEL, contents="Hi").text
    assert httpx2.get(f"{server.url}/_sim/requests").json()["requests"][0]["path"].startswith("/v1/models/")
    by_query = httpx2.post(f"{server.url}/v1/models/{MODEL}:generateContent?key={KEY}", json=contents("Hi"))
    assert by_query.status_code == 200


def test_stream_matches_non_stream(client: genai.Client) -> None:
    whole = client.models.generate_content(model=MODEL, contents="Stream me")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Stream me"))
    assert len(chunks) == 16  # one token per chunk
    assert "".join(c.text or "" for c in chunks) == whole.text
    assert [c.candidates[0].finish_reason for c in chunks][-2:] == [None, "STOP"]  # type: ignore[index]
    running = [c.usage_metadata.candidates_token_count for c in chunks]  # type: ignore[union-attr]
    assert running == list(range(1, 17))  # cumulative, as G2 shows
    assert {c.response_id for c in chunks} == {chunks[0].response_id}


async def test_async_stream(aclient: genai.client.AsyncClient) -> None:
    stream = await aclient.models.generate_content_stream(model=MODEL, contents="Stream me [sim output_tokens=4]")
    texts = [chunk.text async for chunk in stream]
    assert "".join(t or "" for t in texts) == "".join(generated_words("Stream me", 4))


def test_sse_framing_follows_g2(server: ServerThread) -> None:
    body = contents('Frame <b> [sim output_tokens=3 reply="a <b> c"]')
    response = raw_post(server, "streamGenerateContent", body, "?alt=sse")
    assert response.headers["content-type"] == "text/event-stream"
    raw = response.content
    frames = raw.split(b"\r\n\r\n")
    assert frames[-1] == b"" and len(frames) == 4
    for frame in frames[:-1]:
        assert frame.startswith(b"data: {") and b"\n" not in frame and b"event:" not in frame
        assert b'"candidates": [{"content": {"parts": [{"text": ' in frame  # ": " after keys, bare ","
        assert b'"role": "model"},' in frame
    assert b"\\u003cb\\u003e" in raw and b"<b>" not in raw
    last = json.loads(frames[-2][6:])
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert "".join(json.loads(f[6:])["candidates"][0]["content"]["parts"][0]["text"] for f in frames[:-1]) == "a <b> c"


def test_json_array_stream_without_alt(server: ServerThread) -> None:
    raw = raw_post(server, "streamGenerateContent", contents("Array [sim output_tokens=3]")).content
    assert raw.startswith(b"[{\n") and raw.endswith(b"}\n]") and raw.count(b"\n,\r\n") == 2
    chunks = json.loads(raw)
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, None, "STOP"]


# ----------------------------------------------------------------------------------------------------- tools


def test_function_calling_round_trip(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode="ANY", allowed_function_names=["get_weather"])
        ),
    )
    prompt = types.Content(role="user", parts=[types.Part(text="Weather in Paris and Rome? [sim tool_calls=2]")])
    first = client.models.generate_content(model=MODEL, contents=[prompt], config=config)
    calls = first.function_calls or []
    assert [c.name for c in calls] == ["get_weather", "get_weather"]
    assert all(c.id is None and set(c.args or {}) == {"location", "units"} for c in calls)  # no id, as G3
    assert all((c.args or {})["units"] in {"c", "f"} for c in calls)
    assert first.candidates[0].finish_reason == "STOP"  # type: ignore[index]
    results = types.Content(
        role="user",
        parts=[types.Part.from_function_response(name="get_weather", response={"temp": "22 degrees"})],
    )
    auto = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    second = client.models.generate_content(
        model=MODEL, contents=[prompt, first.candidates[0].content, results], config=auto
    )  # type: ignore[index, list-item]
    assert second.function_calls is None and "22 degrees" in (second.text or "")
    none = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="NONE")),
    )
    assert client.models.generate_content(model=MODEL, contents="Weather?", config=none).function_calls is None


def test_function_call_streams_whole_in_one_chunk(client: genai.Client, server: ServerThread) -> None:
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Weather?", config=config))
    assert len(chunks) == 1 and chunks[0].function_calls and chunks[0].candidates[0].finish_reason == "STOP"  # type: ignore[index]
    tools = {"tools": [{"functionDeclarations": [WEATHER.model_dump(mode="json", exclude_none=True)]}]}
    raw = raw_post(server, "streamGenerateContent", {**contents("Weather?"), **tools}, "?alt=sse").content
    candidate = json.loads(raw.removeprefix(b"data: ").rstrip())["candidates"][0]
    assert candidate["finishMessage"] == "Model generated function call(s)."  # the SDK drops this field
    assert list(candidate["content"]["parts"][0]) == ["functionCall"]


# ------------------------------------------------------------------------------------ thinking, JSON, limits


def test_thoughts_come_first_with_a_signature(client: genai.Client) -> None:
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    response = client.models.generate_content(model=MODEL, contents="Think", config=config)
    parts = response.candidates[0].content.parts  # type: ignore[index, union-attr]
    assert [bool(p.thought) for p in parts] == [True, False]  # type: ignore[union-attr]
    assert parts[1].thought_signature and parts[1].text == response.text  # type: ignore[index]
    usage = response.usage_metadata
    assert usage.thoughts_token_count == THINKING_TOKENS  # type: ignore[union-attr]
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count + THINKING_TOKENS  # type: ignore[union-attr, operator]
    streamed = list(client.models.generate_content_stream(model=MODEL, contents="Think", config=config))
    flags = [bool(c.candidates[0].content.parts[0].thought) for c in streamed]  # type: ignore[index, union-attr]
    assert flags == [True] * THINKING_TOKENS + [False] * 16
    hidden = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=512))
    quiet = client.models.generate_content(model=MODEL, contents="Think", config=hidden)
    assert len(quiet.candidates[0].content.parts) == 1  # type: ignore[index, union-attr, arg-type]
    assert quiet.usage_metadata.thoughts_token_count == THINKING_TOKENS  # type: ignore[union-attr]


def test_json_output_matches_the_schema(client: genai.Client) -> None:
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=Forecast)
    response = client.models.generate_content(model=MODEL, contents="Forecast", config=config)
    assert isinstance(response.parsed, Forecast)
    json_schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 6}},
        "required": ["n"],
    }
    config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=json_schema)
    value = json.loads(client.models.generate_content(model=MODEL, contents="Number", config=config).text or "")
    assert value["n"] in {5, 6}


def test_max_tokens_stop_sequences_and_candidates(client: genai.Client) -> None:
    cut = client.models.generate_content(
        model=MODEL, contents="Long", config=types.GenerateContentConfig(max_output_tokens=4)
    )
    assert cut.candidates[0].finish_reason == "MAX_TOKENS" and cut.usage_metadata.candidates_token_count == 4  # type: ignore[index, union-attr]
    stopped = client.models.generate_content(
        model=MODEL,
        contents='Go [sim reply="alpha beta END gamma"]',
        config=types.GenerateContentConfig(stop_sequences=["END"]),
    )
    assert stopped.text == "alpha beta " and stopped.candidates[0].finish_reason == "STOP"  # type: ignore[index]
    several = client.models.generate_content(
        model=MODEL, contents="Pick", config=types.GenerateContentConfig(candidate_count=2)
    )
    candidates = several.candidates or []
    assert [c.index for c in candidates] == [0, 1] and candidates[0].content != candidates[1].content
    assert several.usage_metadata.candidates_token_count == 32  # type: ignore[union-attr]


def test_count_tokens_agrees_with_usage_and_images_cost_fixed(client: genai.Client) -> None:
    parts = [types.Part.from_bytes(data=PNG, mime_type="image/png"), types.Part(text="Describe this")]
    content = types.Content(role="user", parts=parts)
    counted = client.models.count_tokens(model=MODEL, contents=[content])
    text_only = client.models.count_tokens(model=MODEL, contents="Describe this")
    assert counted.total_tokens == text_only.total_tokens + MEDIA_TOKENS  # type: ignore[operator]
    response = client.models.generate_content(model=MODEL, contents=[content])
    assert response.usage_metadata.prompt_token_count == counted.total_tokens  # type: ignore[union-attr]
    details = {d.modality: d.token_count for d in response.usage_metadata.prompt_tokens_details}  # type: ignore[union-attr]
    assert details["IMAGE"] == MEDIA_TOKENS


def test_system_instruction_and_file_parts_count(server: ServerThread) -> None:
    request = {
        "contents": [{"role": "user", "parts": [{"fileData": {"mimeType": "video/mp4", "fileUri": "files/abc"}}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
    }
    counted = raw_post(server, "countTokens", {"generateContentRequest": {"model": f"models/{MODEL}", **request}})
    assert counted.json() == {
        "totalTokens": 3 + MEDIA_TOKENS,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 3},
            {"modality": "VIDEO", "tokenCount": MEDIA_TOKENS},
        ],
    }
    usage = raw_post(server, "generateContent", request).json()["usageMetadata"]
    assert usage["promptTokenCount"] == 3 + MEDIA_TOKENS


def test_no_usage_hang_and_latency(server: ServerThread) -> None:
    assert "usageMetadata" not in raw_post(server, "generateContent", contents("x [sim no_usage]")).json()
    url = f"{server.url}/v1beta/models/{MODEL}:generateContent"
    with pytest.raises(httpx2.ReadTimeout):
        httpx2.post(url, json=contents("x [sim fault=hang]"), headers={"x-goog-api-key": KEY}, timeout=0.3)
    slow = raw_post(server, "streamGenerateContent", contents("x [sim latency_ms=150 output_tokens=2]"), "?alt=sse")
    assert slow.elapsed.total_seconds() >= 0.15


def test_embeddings(client: genai.Client, server: ServerThread) -> None:
    result = client.models.embed_content(
        model="gemini-embedding-001",
        contents=["the quick brown fox", "the quick brown dog", "stock market prices"],
        config=types.EmbedContentConfig(output_dimensionality=256),
    )
    fox, dog, market = (e.values or [] for e in result.embeddings or [])
    assert len(fox) == 256 and math.isclose(sum(v * v for v in fox), 1.0, rel_tol=1e-6)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(fox, dog) > cosine(fox, market)  # shared words, nearer vectors
    single = raw_post(server, "embedContent", {"content": {"parts": [{"text": "the quick brown fox"}]}})
    values = single.json()["embedding"]["values"]
    assert len(values) == 768
    again = raw_post(server, "embedContent", {"content": {"parts": [{"text": "the quick brown fox"}]}})
    assert again.json()["embedding"]["values"] == values


def test_models_list_and_get(client: genai.Client) -> None:
    names = [m.name for m in client.models.list(config={"page_size": 2})]
    assert "models/gemini-2.5-flash" in names and len(names) >= 5
    model = client.models.get(model=MODEL)
    assert model.input_token_limit == 1048576 and model.thinking
    with pytest.raises(errors.ClientError) as caught:
        client.models.get(model="gemini-nope")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


# ----------------------------------------------------------------------------------------------------- errors


def test_keys_follow_g5(server: ServerThread) -> None:
    with genai.Client(
        api_key="wrong", http_options=types.HttpOptions(base_url=server.url, api_version="v1beta")
    ) as sdk:
        with pytest.raises(errors.ClientError) as caught:
            sdk.models.generate_content(model=MODEL, contents="Hi")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    missing = httpx2.post(f"{server.url}/v1beta/models/{MODEL}:generateContent", json=contents("Hi"))
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"


def test_invalid_requests(server: ServerThread) -> None:
    empty = raw_post(server, "generateContent", {"contents": []})
    assert empty.status_code == 400 and "contents is not specified" in empty.json()["error"]["message"]
    unknown = raw_post(server, "generateContent", {**contents("x"), "max_tokens": 5})
    assert unknown.json()["error"]["message"].startswith('Invalid JSON payload received. Unknown name "max_tokens"')


@pytest.mark.parametrize(
    ("fault", "error_class", "code", "status"),
    [
        ("400", errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("401", errors.ClientError, 401, "UNAUTHENTICATED"),
        ("403", errors.ClientError, 403, "PERMISSION_DENIED"),
        ("404", errors.ClientError, 404, "NOT_FOUND"),
        ("429", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("500", errors.ServerError, 500, "INTERNAL"),
        ("503", errors.ServerError, 503, "UNAVAILABLE"),
        ("529", errors.ServerError, 503, "UNAVAILABLE"),
    ],
)
def test_status_faults(
    client: genai.Client, fault: str, error_class: type[errors.APIError], code: int, status: str
) -> None:
    with pytest.raises(error_class) as caught:
        client.models.generate_content(model=MODEL, contents=f"Hi [sim fault={fault} retry_after=9]")
    assert (caught.value.code, caught.value.status) == (code, status)
    if fault == "429":
        retry = [d for d in caught.value.details["error"]["details"] if d["@type"].endswith("RetryInfo")]
        assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}]
    if fault == "529":
        assert caught.value.message == "The model is overloaded. Please try again later."


def test_stream_faults(client: genai.Client, server: ServerThread) -> None:
    def finish_reasons(fault: str) -> list[Any]:
        text = f"Hi [sim fault={fault} fault_after=3]"
        return [
            c.candidates[0].finish_reason for c in client.models.generate_content_stream(model=MODEL, contents=text)
        ]  # type: ignore[index]

    with pytest.raises(httpx2.RemoteProtocolError):
        finish_reasons("reset")
    with pytest.raises(errors.UnknownApiResponseError):
        finish_reasons("malformed")
    assert finish_reasons("cut") == [None, None, None]
    with pytest.raises(errors.ServerError) as caught:
        finish_reasons("error")
    assert caught.value.code == 503
    httpx2.post(f"{server.url}/_sim/faults", json={"faults": ["500"]}).raise_for_status()
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model=MODEL, contents="Hi")
    assert client.models.generate_content(model=MODEL, contents="Hi").text  # recovered


async def test_async_stream_faults(aclient: genai.client.AsyncClient) -> None:
    stream = await aclient.models.generate_content_stream(model=MODEL, contents="Hi [sim fault=error fault_after=2]")
    with pytest.raises(errors.ServerError):
        async for _ in stream:
            pass
