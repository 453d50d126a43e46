"""The Anthropic surface through the official ``anthropic`` SDK: auth, headers, count_tokens, model list,
errors in Anthropic's shape and statuses (529 included), vendor tools, and the 400s for what a target cannot
express. One gateway on SQLite with a channel per simulator (see test_matrix)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.api.test_matrix import MODELS, REPLY, Upstreams, start_upstreams, three_channel_settings
from tests.conftest import GatewayHarness, start_gateway

CLAUDE = MODELS["anthropic"]
GPT = MODELS["openai"]
GEMINI = MODELS["gemini"]
WEB_SEARCH: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    servers = start_upstreams()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams) -> Iterator[GatewayHarness]:
    harness = start_gateway(three_channel_settings(tmp_path_factory.mktemp("anthropic-surface"), upstreams))
    harness.keys["all"] = harness.create_key("all")
    yield harness
    harness.server.stop()


@pytest.fixture(autouse=True)
def _fresh_logs(upstreams: Upstreams) -> None:
    upstreams.reset()


def client(gw: GatewayHarness, **options: Any) -> anthropic.Anthropic:
    if "auth_token" not in options:
        options.setdefault("api_key", gw.keys["all"])
    return anthropic.Anthropic(base_url=gw.server.url, max_retries=0, **options)


def say(model: str, text: str = f'Hello [sim reply="{REPLY}"]', **options: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}], **options}


def error_of(exc: anthropic.APIStatusError) -> dict[str, Any]:
    """The body in Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``."""
    body = exc.body
    assert isinstance(body, dict) and body["type"] == "error", body
    error: dict[str, Any] = body["error"]
    assert set(error) >= {"type", "message"}
    return error


# --- auth ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["api_key", "auth_token"])
def test_key_as_x_api_key_or_bearer(gw: GatewayHarness, auth: str) -> None:
    sdk = client(gw, **{auth: gw.keys["all"]})
    for model in (CLAUDE, GPT):
        message = sdk.messages.create(**say(model))
        assert message.content[0].type == "text" and message.content[0].text == REPLY


@pytest.mark.parametrize("key", [None, "sk-not-a-key"])
def test_missing_or_wrong_key_is_anthropic_401(gw: GatewayHarness, key: str | None) -> None:
    headers = {"x-api-key": key} if key else {}
    response = httpx.post(
        gw.server.url + "/v1/messages", headers={"anthropic-version": "2023-06-01", **headers}, json=say(CLAUDE)
    )
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        client(gw, api_key="sk-not-a-key").messages.create(**say(CLAUDE))


# --- headers ------------------------------------------------------------------------------------------------


def test_version_and_beta_headers_reach_an_anthropic_channel(gw: GatewayHarness, upstreams: Upstreams) -> None:
    beta = "interleaved-thinking-2025-05-14,token-efficient-tools-2025-02-19"
    raw = client(gw).messages.with_raw_response.create(**say(CLAUDE), extra_headers={"anthropic-beta": beta})
    version = raw.http_request.headers["anthropic-version"]
    sent = upstreams.requests("anthropic")[-1]["headers"]
    assert sent["anthropic-version"] == version
    assert sent["anthropic-beta"] == beta
    assert sent["x-api-key"] != gw.keys["all"], "the channel's own key goes upstream"


def test_beta_header_stays_home_when_the_channel_is_not_anthropic(gw: GatewayHarness, upstreams: Upstreams) -> None:
    message = client(gw).messages.create(**say(GPT), extra_headers={"anthropic-beta": "some-beta-2025-01-01"})
    assert message.content[0].type == "text" and message.content[0].text == REPLY
    sent = upstreams.requests("openai")[-1]["headers"]
    assert "anthropic-beta" not in sent and "anthropic-version" not in sent


# --- count_tokens and models --------------------------------------------------------------------------------


def test_count_tokens_is_exact_from_an_anthropic_channel(gw: GatewayHarness, upstreams: Upstreams) -> None:
    sdk = client(gw)
    request: dict[str, Any] = {
        "model": CLAUDE,
        "messages": [{"role": "user", "content": "How many tokens is this sentence?"}],
    }
    counted = sdk.messages.count_tokens(**request, system="Be brief.")
    message = sdk.messages.create(**request, system="Be brief.", max_tokens=20)
    assert counted.input_tokens == message.usage.input_tokens > 0
    assert [r["path"] for r in upstreams.requests("anthropic")] == ["/v1/messages/count_tokens", "/v1/messages"]


@pytest.mark.parametrize("model", [GPT, GEMINI])
def test_count_tokens_is_estimated_offline_for_other_channels(
    gw: GatewayHarness, upstreams: Upstreams, model: str
) -> None:
    short = client(gw).messages.count_tokens(model=model, messages=[{"role": "user", "content": "Hi"}])
    long = client(gw).messages.count_tokens(
        model=model, messages=[{"role": "user", "content": "Hi, please tell me a long story about a fox. " * 20}]
    )
    assert 0 < short.input_tokens < long.input_tokens
    assert upstreams.requests("openai") == [] and upstreams.requests("gemini") == []


def test_models_list_in_anthropic_shape(gw: GatewayHarness) -> None:
    models = list(client(gw).models.list())
    assert {m.id for m in models} >= {CLAUDE, GPT, GEMINI}
    assert all(m.type == "model" for m in models)


def test_model_retrieve_in_anthropic_shape(gw: GatewayHarness) -> None:
    model = client(gw).models.retrieve(CLAUDE)
    assert (model.id, model.type, model.display_name) == (CLAUDE, "model", CLAUDE)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client(gw).models.retrieve("claude-nonexistent-9")
    assert error_of(caught.value)["type"] == "not_found_error"


# --- errors -------------------------------------------------------------------------------------------------


def test_missing_field_is_invalid_request_naming_it(gw: GatewayHarness) -> None:
    body = say(CLAUDE)
    del body["max_tokens"]
    response = httpx.post(
        gw.server.url + "/v1/messages",
        headers={"x-api-key": gw.keys["all"], "anthropic-version": "2023-06-01"},
        json=body,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "max_tokens" in error["message"]


def test_unknown_model_is_not_found(gw: GatewayHarness) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client(gw).messages.create(**say("claude-nonexistent-9"))
    assert error_of(caught.value)["type"] == "not_found_error"


@pytest.mark.parametrize("model", [CLAUDE, GPT, GEMINI])
@pytest.mark.parametrize(
    ("fault", "status", "error_type", "exception"),
    [
        ("429", 429, "rate_limit_error", anthropic.RateLimitError),
        ("500", 502, "api_error", anthropic.InternalServerError),
        ("400", 400, "invalid_request_error", anthropic.BadRequestError),
    ],
)
def test_upstream_errors_in_anthropic_shape(
    gw: GatewayHarness,
    model: str,
    fault: str,
    status: int,
    error_type: str,
    exception: type[anthropic.APIStatusError],
) -> None:
    with pytest.raises(exception) as caught:
        client(gw).messages.create(**say(model, f"Hi [sim fault={fault}]"))
    assert caught.value.status_code == status
    assert error_of(caught.value)["type"] == error_type


@pytest.mark.parametrize(("model", "fault"), [(CLAUDE, "529"), (GPT, "503"), (GEMINI, "503")])
def test_overloaded_upstream_is_529_overloaded_error(gw: GatewayHarness, model: str, fault: str) -> None:
    """Anthropic says "overloaded" with 529; an overloaded upstream of any vendor reads the same to its SDK."""
    with pytest.raises(anthropic.OverloadedError) as caught:
        client(gw).messages.create(**say(model, f"Hi [sim fault={fault}]"))
    assert caught.value.status_code == 529
    assert error_of(caught.value)["type"] == "overloaded_error"


def test_529_stays_with_anthropic_clients(gw: GatewayHarness) -> None:
    """An OpenAI client of an overloaded Anthropic channel gets OpenAI's 503, not Anthropic's 529."""
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=gw.keys["all"], max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "Hi [sim fault=529]"}])
    assert caught.value.status_code == 503


def test_error_event_mid_stream_raises_in_the_sdk(gw: GatewayHarness) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client(gw).messages.stream(**say(CLAUDE, "Hi [sim fault=error fault_after=4]")) as stream:
            stream.get_final_message()
    assert error_of(caught.value)["type"] == "overloaded_error"


# --- vendor tools and untranslatable fields -----------------------------------------------------------------


def test_web_search_server_tool_passes_through_to_an_anthropic_channel(
    gw: GatewayHarness, upstreams: Upstreams
) -> None:
    message = client(gw).messages.create(**say(CLAUDE), tools=[WEB_SEARCH])
    assert message.content[0].type == "text" and message.content[0].text == REPLY
    assert upstreams.last_body("anthropic")["tools"] == [WEB_SEARCH]


@pytest.mark.parametrize("model", [GPT, GEMINI])
def test_web_search_server_tool_elsewhere_is_400_naming_it(
    gw: GatewayHarness, upstreams: Upstreams, model: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(gw).messages.create(**say(model), tools=[WEB_SEARCH])
    error = error_of(caught.value)
    assert error["type"] == "invalid_request_error"
    assert "tools[0]" in error["message"]
    assert upstreams.requests("openai") == [] and upstreams.requests("gemini") == []


def test_top_k_to_an_openai_channel_is_400_naming_it(gw: GatewayHarness, upstreams: Upstreams) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(gw).messages.create(**say(GPT), extra_body={"top_k": 5})
    assert "'top_k'" in error_of(caught.value)["message"]
    assert upstreams.requests("openai") == []


@pytest.mark.parametrize(("field", "value"), [("n", 2), ("presence_penalty", 0.5), ("logprobs", True)])
def test_openai_fields_anthropic_cannot_take_are_400_naming_them(
    gw: GatewayHarness, upstreams: Upstreams, field: str, value: object
) -> None:
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=gw.keys["all"], max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        options: dict[str, Any] = {field: value}
        sdk.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "Hi"}], **options)
    assert caught.value.param == field
    assert f"'{field}'" in caught.value.message
    assert upstreams.requests("anthropic") == []
