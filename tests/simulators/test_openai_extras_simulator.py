"""The OpenAI simulator's Responses, rerank and spoken-chat endpoints, straight from the ``openai`` SDK (no
gateway): what the gateway's tests rely on the simulator to do like the real API."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import openai
import pytest

from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.openai import create_openai_simulator
from omnirelay.simulators.openai_rerank import relevance
from tests.harness import ServerThread

KEY = "sk-sim-extras-0123456789"
TOOL = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {"term": {"type": "string"}}, "required": ["term"]},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[ServerThread]:
    server = ServerThread(create_openai_simulator(SimulatorState(api_keys=frozenset({KEY})))).start()
    yield server
    server.stop()


def client(sim: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.url + "/v1", api_key=KEY, max_retries=0)


# --- responses ----------------------------------------------------------------------------------------------


def test_response_is_deterministic_and_counts_usage(sim: ServerThread) -> None:
    first = client(sim).responses.create(model="gpt-4o-mini", input="tell me something")
    second = client(sim).responses.create(model="gpt-4o-mini", input="tell me something")
    assert first.output_text == second.output_text and first.id != second.id
    assert first.usage is not None and first.usage.output_tokens == 16
    assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens


def test_stream_matches_the_whole_answer(sim: ServerThread) -> None:
    with client(sim).responses.stream(model="gpt-4o-mini", input="tell me something") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    whole = client(sim).responses.create(model="gpt-4o-mini", input="tell me something")
    assert "".join(deltas) == final.output_text == whole.output_text


def test_tool_call_then_result_echo(sim: ServerThread) -> None:
    sdk = client(sim)
    first = sdk.responses.create(model="gpt-4o-mini", input="look it up", tools=[TOOL])  # type: ignore[list-item]
    call = first.output[0]
    assert call.type == "function_call" and call.name == "lookup"
    second = sdk.responses.create(
        model="gpt-4o-mini",
        input=[
            {"role": "user", "content": "look it up"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "found it"},
        ],
        tools=[TOOL],  # type: ignore[list-item]
    )
    assert second.output_text == "The result is: found it"


def test_previous_response_id_continues_and_unknown_ids_are_a_400(sim: ServerThread) -> None:
    sdk = client(sim)
    first = sdk.responses.create(model="gpt-4o-mini", input='hi [sim reply="hello"]')
    second = sdk.responses.create(model="gpt-4o-mini", input="again", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="gpt-4o-mini", input="x", previous_response_id="resp_nope")
    assert caught.value.code == "previous_response_not_found"


def test_faults_apply_to_responses(sim: ServerThread) -> None:
    with pytest.raises(openai.RateLimitError):
        client(sim).responses.create(model="gpt-4o-mini", input="x [sim fault=429]")
    events = list(
        client(sim).responses.create(model="gpt-4o-mini", input="x [sim fault=error fault_after=3]", stream=True)
    )
    assert [e.type for e in events][-1] == "error" and len(events) == 4


def test_stream_has_no_done_marker(sim: ServerThread) -> None:
    response = httpx.post(
        sim.url + "/v1/responses",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "gpt-4o-mini", "input": "hi", "stream": True},
    )
    assert "[DONE]" not in response.text
    assert response.text.rstrip().split("\n")[-2] == "event: response.completed"


# --- rerank -------------------------------------------------------------------------------------------------


def test_rerank_scores_relevant_documents_higher(sim: ServerThread) -> None:
    assert relevance("capital of France", "Paris is the capital of France") > relevance("capital of France", "bananas")
    response = httpx.post(
        sim.url + "/v1/rerank",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "rerank-2", "query": "capital of France", "documents": ["bananas", "Paris capital France"]},
    )
    body = response.json()
    assert [r["index"] for r in body["results"]] == [1, 0]
    assert body["usage"]["total_tokens"] > 0


# --- chat audio ---------------------------------------------------------------------------------------------


def test_chat_audio_needs_the_audio_parameter(sim: ServerThread) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(sim).chat.completions.create(
            model="gpt-4o-audio-preview", modalities=["text", "audio"], messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.param == "audio"


def test_chat_audio_mp3(sim: ServerThread) -> None:
    reply = client(sim).chat.completions.create(
        model="gpt-4o-audio-preview",
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "mp3"},
        messages=[{"role": "user", "content": "hi"}],
    )
    audio = reply.choices[0].message.audio
    assert audio is not None and base64.b64decode(audio.data)[:2] == b"\xff\xfb"  # an MPEG-1 Layer III frame
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.audio_tokens
