"""Every client SDK to every channel type, through the gateway over real sockets.

{openai, anthropic, google-genai} x {openai, anthropic, gemini channel} x {stream, non-stream} x
{plain text, tool-call round trip, image input}. Each cell reads the answer the way a user would, through the
official SDK, and checks what the SDK reports: the text the simulator generated, tool-call arguments valid for
the schema, the finish reason in the client's vocabulary, usage figures. Image cells also check, in the
simulator's request log, that the image reached the upstream inline in the upstream's own format.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import anthropic
import httpx
import openai
import orjson
import pytest
from google import genai
from google.genai import types as gtypes

from omnirelay.config import ChannelConfig, Settings
from omnirelay.simulators.anthropic import create_anthropic_simulator
from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.gemini import create_gemini_simulator
from omnirelay.simulators.openai import create_openai_simulator
from tests.conftest import UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread

Vendor = Literal["openai", "anthropic", "gemini"]
VENDORS: tuple[Vendor, ...] = ("openai", "anthropic", "gemini")
MODELS: dict[Vendor, str] = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
"""The model each channel serves: the channel type a call reaches follows from its model name."""

REPLY = "the quick brown fox jumps over the lazy dog"
REPLY_TOKENS = 9
"""Each word of REPLY is one token for every simulator's tokenizer (cl100k and o200k)."""
TOOL_RESULT = "sunny and 21 degrees"
TOOL_ECHO: dict[Vendor, str] = {
    "openai": "The result is: ",
    "anthropic": "The tool returned: ",
    "gemini": "The tool returned: ",
}
"""How each simulator answers a turn that returns tool results, which it recognizes only in its own format."""
IMAGE_TOKENS_AT_LEAST = 85
"""What the cheapest simulator charges for an image (OpenAI's low-detail price; Gemini 258, Anthropic 1600)."""
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}


# --- servers ------------------------------------------------------------------------------------------------


@dataclass
class Upstreams:
    sims: dict[Vendor, ServerThread]
    http: httpx.Client = field(default_factory=httpx.Client)

    def requests(self, vendor: Vendor) -> list[dict[str, Any]]:
        """The simulator's request log (what the gateway sent upstream), oldest first."""
        log: list[dict[str, Any]] = self.http.get(self.sims[vendor].url + "/_sim/requests").json()["requests"]
        return log

    def last_body(self, vendor: Vendor) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(self.requests(vendor)[-1]["body"])
        return body

    def reset(self) -> None:
        for sim in self.sims.values():
            self.http.post(sim.url + "/_sim/reset")

    def stop(self) -> None:
        self.http.close()
        for sim in self.sims.values():
            sim.stop()


SIMULATORS: dict[Vendor, Callable[[SimulatorState], Any]] = {
    "openai": create_openai_simulator,
    "anthropic": create_anthropic_simulator,
    "gemini": create_gemini_simulator,
}


def start_upstreams() -> Upstreams:
    sims: dict[Vendor, ServerThread] = {}
    for vendor, factory in SIMULATORS.items():
        state = SimulatorState(api_keys=frozenset({UPSTREAM_KEY}))
        sims[vendor] = ServerThread(factory(state)).start()
    return Upstreams(sims)


def channel_url(vendor: Vendor, sim: ServerThread) -> str:
    """As each vendor's SDK takes its base URL: OpenAI's with ``/v1``, the others the bare host."""
    return sim.url + "/v1" if vendor == "openai" else sim.url


def three_channel_settings(
    tmp: Path, upstreams: Upstreams, extra_models: dict[Vendor, list[str]] | None = None, **overrides: Any
) -> Settings:
    """SQLite in ``tmp``; one channel per simulator, serving the model of its vendor and any ``extra_models``.
    Also used by the Anthropic and Gemini surface tests."""
    extra = extra_models or {}
    channels = [
        ChannelConfig(
            name=f"{vendor}-sim",
            type=vendor,
            base_url=channel_url(vendor, upstreams.sims[vendor]),
            api_keys=[UPSTREAM_KEY],
            models=[MODELS[vendor], *extra.get(vendor, [])],
        )
        for vendor in VENDORS
    ]
    return Settings(database_url=f"sqlite:///{tmp / 'omnirelay.db'}", channels=channels, **overrides)


@dataclass
class Env:
    gw: GatewayHarness
    upstreams: Upstreams
    key: str
    clients: dict[Vendor, Client] = field(default_factory=dict)

    def client(self, vendor: Vendor) -> Client:
        """One SDK client per format for the whole module: building one costs an SSL context."""
        if vendor not in self.clients:
            self.clients[vendor] = CLIENTS[vendor](self)
        return self.clients[vendor]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    upstreams = start_upstreams()
    gw = start_gateway(three_channel_settings(tmp_path_factory.mktemp("matrix"), upstreams))
    try:
        yield Env(gw, upstreams, gw.create_key("matrix"))
    finally:
        gw.server.stop()
        upstreams.stop()


# --- what an SDK reports, in one shape -----------------------------------------------------------------------


@dataclass
class Call:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Answer:
    text: str = ""
    calls: list[Call] = field(default_factory=list)
    finish: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int | None = None
    turn: Any = None
    """The assistant turn in the client's own shape, to send back with tool results."""


class Client(Protocol):
    """One official SDK: builds turns in its format, sends them, reads the answer back."""

    finish_stop: str
    finish_tool: str

    def user(self, text: str, image: str | None = None) -> Any: ...

    def tool_results(self, answer: Answer, result: str) -> list[Any]: ...

    def ask(self, model: str, turns: list[Any], *, stream: bool, tools: bool) -> Answer: ...


class OpenAIClient:
    finish_stop = "stop"
    finish_tool = "tool_calls"

    def __init__(self, env: Env) -> None:
        self.sdk = openai.OpenAI(base_url=env.gw.base_url, api_key=env.key, max_retries=0)

    def user(self, text: str, image: str | None = None) -> Any:
        if image is None:
            return {"role": "user", "content": text}
        url = f"data:image/png;base64,{image}"
        return {
            "role": "user",
            "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}],
        }

    def tool_results(self, answer: Answer, result: str) -> list[Any]:
        return [answer.turn] + [{"role": "tool", "tool_call_id": c.id, "content": result} for c in answer.calls]

    def ask(self, model: str, turns: list[Any], *, stream: bool, tools: bool) -> Answer:
        options: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": 200}
        if tools:
            options["tools"] = [{"type": "function", "function": WEATHER}]
        if stream:
            with self.sdk.chat.completions.stream(**options, stream_options={"include_usage": True}) as events:
                completion = events.get_final_completion()
        else:
            completion = self.sdk.chat.completions.create(**options)
        choice = completion.choices[0]
        message = choice.message
        answer = Answer(text=message.content or "", finish=choice.finish_reason)
        for call in message.tool_calls or []:
            assert call.type == "function"
            answer.calls.append(Call(call.id, call.function.name, orjson.loads(call.function.arguments)))
        assert completion.usage is not None
        answer.input_tokens = completion.usage.prompt_tokens
        answer.output_tokens = completion.usage.completion_tokens
        answer.total_tokens = completion.usage.total_tokens
        answer.turn = message.model_dump(include={"role", "content", "tool_calls"}, exclude_none=True)
        return answer


class AnthropicClient:
    finish_stop = "end_turn"
    finish_tool = "tool_use"

    def __init__(self, env: Env) -> None:
        self.sdk = anthropic.Anthropic(base_url=env.gw.server.url, api_key=env.key, max_retries=0)

    def user(self, text: str, image: str | None = None) -> Any:
        if image is None:
            return {"role": "user", "content": text}
        source = {"type": "base64", "media_type": "image/png", "data": image}
        return {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image", "source": source}]}

    def tool_results(self, answer: Answer, result: str) -> list[Any]:
        blocks = [{"type": "tool_result", "tool_use_id": c.id, "content": result} for c in answer.calls]
        return [answer.turn, {"role": "user", "content": blocks}]

    def ask(self, model: str, turns: list[Any], *, stream: bool, tools: bool) -> Answer:
        options: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": 200}
        if tools:
            options["tools"] = [
                {"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}
            ]
        if stream:
            with self.sdk.messages.stream(**options) as events:
                message = events.get_final_message()
        else:
            message = self.sdk.messages.create(**options)
        answer = Answer(finish=message.stop_reason)
        for block in message.content:
            if block.type == "text":
                answer.text += block.text
            elif block.type == "tool_use":
                assert isinstance(block.input, dict)
                answer.calls.append(Call(block.id, block.name, block.input))
        answer.input_tokens = message.usage.input_tokens
        answer.output_tokens = message.usage.output_tokens
        content = [b.model_dump(include={"type", "text", "id", "name", "input"}) for b in message.content]
        answer.turn = {"role": "assistant", "content": content}
        return answer


class GeminiClient:
    finish_stop = "STOP"
    finish_tool = "STOP"
    """Gemini reports function calls with finishReason STOP."""

    def __init__(self, env: Env) -> None:
        options = gtypes.HttpOptions(base_url=env.gw.server.url, api_version="v1beta")
        self.sdk = genai.Client(api_key=env.key, http_options=options)

    def user(self, text: str, image: str | None = None) -> Any:
        parts = [gtypes.Part.from_text(text=text)]
        if image is not None:
            parts.append(gtypes.Part(inline_data=gtypes.Blob(mime_type="image/png", data=base64.b64decode(image))))
        return gtypes.Content(role="user", parts=parts)

    def tool_results(self, answer: Answer, result: str) -> list[Any]:
        # No ids, as Gemini users write results (the Developer API gives calls none): matched to calls by name.
        parts = [gtypes.Part.from_function_response(name=c.name, response={"result": result}) for c in answer.calls]
        return [answer.turn, gtypes.Content(role="user", parts=parts)]

    def ask(self, model: str, turns: list[Any], *, stream: bool, tools: bool) -> Answer:
        config = gtypes.GenerateContentConfig(
            max_output_tokens=200,
            tools=[gtypes.Tool(function_declarations=[gtypes.FunctionDeclaration(**WEATHER)])] if tools else None,
            automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True),
        )
        if stream:
            responses = list(self.sdk.models.generate_content_stream(model=model, contents=turns, config=config))
        else:
            responses = [self.sdk.models.generate_content(model=model, contents=turns, config=config)]
        answer = Answer()
        parts: list[gtypes.Part] = []
        for response in responses:
            for candidate in response.candidates or []:
                for part in candidate.content.parts or [] if candidate.content else []:
                    parts.append(part)
                    if part.function_call is not None:
                        call = part.function_call
                        answer.calls.append(Call(call.id or "", call.name or "", dict(call.args or {})))
                    elif part.text is not None and not part.thought:
                        answer.text += part.text
                if candidate.finish_reason is not None:
                    answer.finish = candidate.finish_reason.value
            if response.usage_metadata is not None:
                usage = response.usage_metadata
                answer.input_tokens = usage.prompt_token_count or 0
                answer.output_tokens = usage.candidates_token_count or 0
                answer.total_tokens = usage.total_token_count
        answer.turn = gtypes.Content(role="model", parts=parts)
        return answer


CLIENTS: dict[Vendor, Callable[[Env], Client]] = {
    "openai": OpenAIClient,
    "anthropic": AnthropicClient,
    "gemini": GeminiClient,
}


# --- the cells ----------------------------------------------------------------------------------------------

Scenario = Literal["text", "tool", "image"]
SCENARIOS: tuple[Scenario, ...] = ("text", "tool", "image")
CELLS = [
    pytest.param(
        client, upstream, stream, scenario, id=f"{client}-to-{upstream}-{'stream' if stream else 'whole'}-{scenario}"
    )
    for client, upstream, stream, scenario in itertools.product(VENDORS, VENDORS, (False, True), SCENARIOS)
]


@pytest.fixture(autouse=True)
def _fresh_logs(env: Env) -> None:
    env.upstreams.reset()


def assert_usage(answer: Answer) -> None:
    assert answer.input_tokens > 0
    assert answer.output_tokens > 0
    if answer.total_tokens is not None:
        assert answer.total_tokens == answer.input_tokens + answer.output_tokens


def assert_weather_call(call: Call) -> None:
    assert call.name == "get_weather"
    assert isinstance(call.arguments.get("city"), str)
    assert call.arguments.get("unit") in ("celsius", "fahrenheit")
    assert set(call.arguments) <= {"city", "unit"}


def image_upstream(vendor: Vendor, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(media type, base64 data) of every inline image in an upstream request body, read in its format."""
    found: list[tuple[str, str]] = []
    if vendor == "openai":
        for message in body["messages"]:
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part["type"] == "image_url":
                    head, _, data = part["image_url"]["url"].partition(",")
                    found.append((head.removeprefix("data:").removesuffix(";base64"), data))
    elif vendor == "anthropic":
        for message in body["messages"]:
            for block in message["content"] if isinstance(message["content"], list) else []:
                if block["type"] == "image" and block["source"]["type"] == "base64":
                    found.append((block["source"]["media_type"], block["source"]["data"]))
    else:
        for content in body["contents"]:
            for part in content["parts"]:
                if "inlineData" in part:  # Gemini takes snake_case too, as google-genai sends it
                    blob = part["inlineData"]
                    found.append((blob.get("mimeType") or blob["mime_type"], blob["data"]))
    return found


def image_bytes(data: str) -> bytes:
    """Gemini's bytes fields may be URL-safe base64 (google-genai's choice); the others use the standard one."""
    return base64.b64decode(data) if "-" not in data and "_" not in data else base64.urlsafe_b64decode(data)


@pytest.mark.parametrize(("client_format", "upstream", "stream", "scenario"), CELLS)
def test_cell(env: Env, client_format: Vendor, upstream: Vendor, stream: bool, scenario: Scenario) -> None:
    client = env.client(client_format)
    model = MODELS[upstream]

    if scenario == "text":
        answer = client.ask(model, [client.user(f'Say something [sim reply="{REPLY}"]')], stream=stream, tools=False)
        assert answer.text == REPLY
        assert answer.calls == []
        assert answer.finish == client.finish_stop
        assert_usage(answer)
        assert answer.output_tokens == REPLY_TOKENS

    elif scenario == "image":
        turn = client.user(f'What is in this picture? [sim reply="{REPLY}"]', image=PNG)
        answer = client.ask(model, [turn], stream=stream, tools=False)
        assert answer.text == REPLY
        assert answer.finish == client.finish_stop
        assert_usage(answer)
        assert answer.output_tokens == REPLY_TOKENS
        assert answer.input_tokens > IMAGE_TOKENS_AT_LEAST, "the upstream counted the image"
        images = image_upstream(upstream, env.upstreams.last_body(upstream))
        assert [(kind, image_bytes(data)) for kind, data in images] == [("image/png", base64.b64decode(PNG))]
        if upstream != "gemini":
            assert images == [("image/png", PNG)], "standard base64 for vendors that take nothing else"

    else:
        turns = [client.user("What is the weather in Paris?")]
        first = client.ask(model, turns, stream=stream, tools=True)
        assert len(first.calls) == 1, first
        assert_weather_call(first.calls[0])
        assert first.calls[0].id or client_format == "gemini", "an id to answer the call with"
        assert first.finish == client.finish_tool
        assert_usage(first)
        turns += client.tool_results(first, TOOL_RESULT)
        second = client.ask(model, turns, stream=stream, tools=True)
        assert second.calls == []
        assert second.text.startswith(TOOL_ECHO[upstream]) and TOOL_RESULT in second.text, second.text
        assert second.finish == client.finish_stop
        assert_usage(second)
        assert len(env.upstreams.requests(upstream)) == 2
