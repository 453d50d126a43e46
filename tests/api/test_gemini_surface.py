"""The Gemini surface through the official ``google-genai`` SDK (and raw HTTP where the SDK cannot go): both API
versions, the SSE and JSON-array streams, countTokens, embeddings, the model list, the three ways to send a
key, Google's error shape, vendor tools, and the 400s for what a target cannot express. One gateway on SQLite
with a channel per simulator (see test_matrix)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from google import genai
from google.genai import errors as gerrors
from google.genai import types as gtypes

from tests.api.test_matrix import MODELS, REPLY, REPLY_TOKENS, Upstreams, start_upstreams, three_channel_settings
from tests.conftest import GatewayHarness, start_gateway

CLAUDE = MODELS["anthropic"]
GPT = MODELS["openai"]
GEMINI = MODELS["gemini"]
EMBEDDING = "gemini-embedding-001"
ALL = [GEMINI, GPT, CLAUDE]
SAY: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": f'Hello [sim reply="{REPLY}"]'}]}]}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    servers = start_upstreams()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams) -> Iterator[GatewayHarness]:
    settings = three_channel_settings(
        tmp_path_factory.mktemp("gemini-surface"), upstreams, extra_models={"gemini": [EMBEDDING]}
    )
    harness = start_gateway(settings)
    harness.keys["all"] = harness.create_key("all")
    yield harness
    harness.server.stop()


@pytest.fixture(autouse=True)
def _fresh_logs(upstreams: Upstreams) -> None:
    upstreams.reset()


_CLIENTS: dict[tuple[str, str, str], genai.Client] = {}


def client(gw: GatewayHarness, version: str = "v1beta", key: str | None = None) -> genai.Client:
    """Kept for the module: a ``genai.Client`` closes its connections once garbage collected, which would
    break ``client(gw).models...`` mid-call; building one also costs an SSL context."""
    cache_key = (gw.server.url, version, key or gw.keys["all"])
    if cache_key not in _CLIENTS:
        options = gtypes.HttpOptions(base_url=gw.server.url, api_version=version)
        _CLIENTS[cache_key] = genai.Client(api_key=cache_key[2], http_options=options)
    return _CLIENTS[cache_key]


def post(gw: GatewayHarness, path: str, body: dict[str, Any], **options: Any) -> httpx.Response:
    options.setdefault("headers", {"x-goog-api-key": gw.keys["all"]})
    return httpx.post(gw.server.url + path, json=body, **options)


def google_error(response: httpx.Response) -> dict[str, Any]:
    """Google's shape: ``{"error": {"code", "message", "status"}}``, code equal to the HTTP status."""
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == response.status_code
    assert isinstance(error["message"], str) and error["message"]
    return error


# --- generateContent on both API versions -------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1beta", "v1"])
@pytest.mark.parametrize("model", ALL)
def test_generate_content_on_both_versions(gw: GatewayHarness, version: str, model: str) -> None:
    sdk = client(gw, version)
    response = sdk.models.generate_content(model=model, contents=SAY["contents"])
    assert response.text == REPLY
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == REPLY_TOKENS
    streamed = "".join(chunk.text or "" for chunk in sdk.models.generate_content_stream(model=model, contents="x"))
    assert streamed


@pytest.mark.parametrize("model", ALL)
def test_json_array_stream_without_alt_sse(gw: GatewayHarness, upstreams: Upstreams, model: str) -> None:
    response = post(gw, f"/v1beta/models/{model}:streamGenerateContent", SAY)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    chunks = orjson.loads(response.content)
    assert isinstance(chunks, list) and len(chunks) > 1
    parsed = [gtypes.GenerateContentResponse.model_validate(chunk) for chunk in chunks]
    assert "".join(p.text or "" for p in parsed) == REPLY
    last = parsed[-1]
    assert last.candidates and last.candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count == REPLY_TOKENS
    if model == GEMINI:
        assert upstreams.requests("gemini")[-1]["path"].endswith(":streamGenerateContent")


def test_sse_stream_framing(gw: GatewayHarness) -> None:
    response = post(gw, f"/v1beta/models/{GPT}:streamGenerateContent?alt=sse", SAY)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.replace("\r\n", "\n").split("\n\n") if e.strip()]
    assert all(e.startswith("data: ") for e in events)
    texts = [gtypes.GenerateContentResponse.model_validate_json(e[6:]).text or "" for e in events]
    assert "".join(texts) == REPLY


def test_snake_case_fields_reach_any_channel(gw: GatewayHarness, upstreams: Upstreams) -> None:
    """Google's JSON parser takes proto field names; so does the gateway when it translates."""
    body = {
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": f'Hi [sim reply="{REPLY}"]'}]}],
        "generation_config": {"max_output_tokens": 50, "stop_sequences": ["zzz"]},
    }
    for model in (GPT, CLAUDE):
        response = post(gw, f"/v1beta/models/{model}:generateContent", body)
        assert response.status_code == 200, response.text
        assert gtypes.GenerateContentResponse.model_validate_json(response.content).text == REPLY
    sent = upstreams.last_body("anthropic")
    assert (sent["system"], sent["max_tokens"], sent["stop_sequences"]) == ("Be brief.", 50, ["zzz"])


# --- auth ---------------------------------------------------------------------------------------------------


def test_key_as_header_query_or_bearer(gw: GatewayHarness) -> None:
    key = gw.keys["all"]
    path = f"/v1beta/models/{GEMINI}:generateContent"
    for options in (
        {"headers": {"x-goog-api-key": key}},
        {"headers": {}, "params": {"key": key}},
        {"headers": {"Authorization": f"Bearer {key}"}},
    ):
        response = post(gw, path, SAY, **options)
        assert response.status_code == 200, options


@pytest.mark.parametrize("headers", [{}, {"x-goog-api-key": "AIza-not-a-key"}])
def test_missing_or_wrong_key_in_google_shape(gw: GatewayHarness, headers: dict[str, str]) -> None:
    response = post(gw, f"/v1beta/models/{GEMINI}:generateContent", SAY, headers=headers)
    assert response.status_code == 401
    assert google_error(response)["status"] == "UNAUTHENTICATED"
    with pytest.raises(gerrors.ClientError) as caught:
        client(gw, key="AIza-not-a-key").models.generate_content(model=GEMINI, contents="hi")
    assert caught.value.code == 401 and caught.value.status == "UNAUTHENTICATED"


# --- countTokens, embeddings, models ------------------------------------------------------------------------


def test_count_tokens_is_exact_from_a_gemini_channel(gw: GatewayHarness) -> None:
    sdk = client(gw)
    counted = sdk.models.count_tokens(model=GEMINI, contents="How many tokens is this sentence?")
    answer = sdk.models.generate_content(model=GEMINI, contents="How many tokens is this sentence?")
    assert answer.usage_metadata is not None
    assert counted.total_tokens == answer.usage_metadata.prompt_token_count
    assert counted.total_tokens is not None and counted.total_tokens > 0


@pytest.mark.parametrize("model", [GPT, CLAUDE])
def test_count_tokens_is_estimated_offline_for_other_channels(
    gw: GatewayHarness, upstreams: Upstreams, model: str
) -> None:
    short = client(gw).models.count_tokens(model=model, contents="Hi")
    long = client(gw).models.count_tokens(model=model, contents="Tell me a long story about a fox. " * 20)
    assert short.total_tokens is not None and long.total_tokens is not None
    assert 0 < short.total_tokens < long.total_tokens
    assert upstreams.requests("openai") == [] and upstreams.requests("anthropic") == []


def test_embed_content(gw: GatewayHarness) -> None:
    result = client(gw).models.embed_content(model=EMBEDDING, contents=["first text", "second text"])
    assert result.embeddings is not None and len(result.embeddings) == 2
    assert all(e.values and len(e.values) == 768 for e in result.embeddings)
    single = post(gw, f"/v1beta/models/{EMBEDDING}:embedContent", {"content": {"parts": [{"text": "hello"}]}})
    assert len(single.json()["embedding"]["values"]) == 768


def test_embed_content_for_a_chat_only_channel_is_a_clear_error(gw: GatewayHarness) -> None:
    response = post(gw, f"/v1beta/models/{GPT}:embedContent", {"content": {"parts": [{"text": "hello"}]}})
    assert response.status_code == 501
    error = google_error(response)
    assert error["status"] == "UNIMPLEMENTED" and "embed" in error["message"]


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_models_list_and_get(gw: GatewayHarness, version: str) -> None:
    sdk = client(gw, version)
    names = {m.name for m in sdk.models.list()}
    assert names >= {f"models/{m}" for m in [*ALL, EMBEDDING]}
    model = sdk.models.get(model=GEMINI)
    assert model.name == f"models/{GEMINI}"
    assert model.supported_actions and "generateContent" in model.supported_actions


# --- errors -------------------------------------------------------------------------------------------------


def test_unknown_model_and_method_are_not_found(gw: GatewayHarness) -> None:
    with pytest.raises(gerrors.ClientError) as caught:
        client(gw).models.generate_content(model="gemini-nonexistent", contents="hi")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")
    response = post(gw, f"/v1beta/models/{GEMINI}:explodeContent", SAY)
    assert response.status_code == 404 and google_error(response)["status"] == "NOT_FOUND"


def test_empty_contents_is_invalid_argument(gw: GatewayHarness) -> None:
    response = post(gw, f"/v1beta/models/{GEMINI}:generateContent", {"contents": []})
    assert response.status_code == 400
    error = google_error(response)
    assert error["status"] == "INVALID_ARGUMENT" and "contents" in error["message"]


@pytest.mark.parametrize("model", ALL)
@pytest.mark.parametrize(
    ("fault", "status", "google_status"),
    [("429", 429, "RESOURCE_EXHAUSTED"), ("500", 502, "UNAVAILABLE"), ("400", 400, "INVALID_ARGUMENT")],
)
def test_upstream_errors_in_google_shape(
    gw: GatewayHarness, model: str, fault: str, status: int, google_status: str
) -> None:
    contents = f"Hi [sim fault={fault}]"
    error_type = gerrors.ClientError if status < 500 else gerrors.ServerError
    with pytest.raises(error_type) as caught:
        client(gw).models.generate_content(model=model, contents=contents)
    assert (caught.value.code, caught.value.status) == (status, google_status)


@pytest.mark.parametrize(("model", "fault"), [(CLAUDE, "529"), (GPT, "503"), (GEMINI, "503")])
def test_overloaded_upstream_is_503_unavailable(gw: GatewayHarness, model: str, fault: str) -> None:
    """Anthropic's 529 is its own; Google says overloaded with 503 UNAVAILABLE."""
    with pytest.raises(gerrors.ServerError) as caught:
        client(gw).models.generate_content(model=model, contents=f"Hi [sim fault={fault}]")
    assert (caught.value.code, caught.value.status) == (503, "UNAVAILABLE")


# --- vendor tools and untranslatable fields -----------------------------------------------------------------

VENDOR_TOOLS: list[tuple[str, dict[str, Any]]] = [
    ("googleSearch", {"googleSearch": {}}),
    ("codeExecution", {"codeExecution": {}}),
]


@pytest.mark.parametrize(("name", "tool"), VENDOR_TOOLS)
def test_google_tools_pass_through_to_a_gemini_channel(
    gw: GatewayHarness, upstreams: Upstreams, name: str, tool: dict[str, Any]
) -> None:
    response = post(gw, f"/v1beta/models/{GEMINI}:generateContent", {**SAY, "tools": [tool]})
    assert response.status_code == 200
    assert upstreams.last_body("gemini")["tools"] == [tool]


@pytest.mark.parametrize("model", [GPT, CLAUDE])
@pytest.mark.parametrize(("name", "tool"), VENDOR_TOOLS)
def test_google_tools_elsewhere_are_400_naming_them(
    gw: GatewayHarness, upstreams: Upstreams, model: str, name: str, tool: dict[str, Any]
) -> None:
    config = gtypes.GenerateContentConfig(tools=[gtypes.Tool.model_validate(tool)])
    with pytest.raises(gerrors.ClientError) as caught:
        client(gw).models.generate_content(model=model, contents="Search the web", config=config)
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert f"tools[0].{name}" in (caught.value.message or "")
    assert upstreams.requests("openai") == [] and upstreams.requests("anthropic") == []


@pytest.mark.parametrize(
    ("model", "config", "field"),
    [
        (CLAUDE, {"candidateCount": 2}, "generationConfig.candidateCount"),
        (CLAUDE, {"seed": 3, "presencePenalty": 0.5}, "generationConfig.presencePenalty"),
        (GPT, {"topK": 5}, "generationConfig.topK"),
    ],
)
def test_generation_config_a_target_cannot_take_is_400_naming_it(
    gw: GatewayHarness, model: str, config: dict[str, Any], field: str
) -> None:
    response = post(gw, f"/v1beta/models/{model}:generateContent", {**SAY, "generationConfig": config})
    assert response.status_code == 400
    error = google_error(response)
    assert error["status"] == "INVALID_ARGUMENT" and f"'{field}'" in error["message"]
