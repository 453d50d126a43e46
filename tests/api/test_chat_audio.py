"""Chat with audio in and out (gpt-4o-audio-preview) through the gateway with the ``openai`` SDK: the request
reaches an OpenAI channel byte for byte, the spoken answer comes back as a real WAV (or pcm16 deltas when streamed),
and audio tokens are billed at the model's audio rates (on SQLite: the database only stores the computed cost)."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from omnirelay.config import ChannelConfig
from omnirelay.simulators.media import wav
from tests.api.keyed_gateway import client, keyed_gateway, usage_rows, with_claude
from tests.conftest import SQLITE_ONLY, UPSTREAM_KEY, GatewayHarness
from tests.harness import ServerThread

pytestmark = SQLITE_ONLY

MODEL = "gpt-4o-audio-preview"
REPLY = "golden retrievers are friendly dogs"
QUESTION_WAV = base64.b64encode(wav(1.0, "question")).decode()
AUDIO_IN_TOKENS = 100
"""What the simulator counts for one ``input_audio`` part."""

# USD per million tokens of gpt-4o-audio-preview, as micro-USD: text in, text out, audio in, audio out.
TEXT_IN, TEXT_OUT, AUDIO_IN, AUDIO_OUT = 2_500_000, 10_000_000, 40_000_000, 80_000_000


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    channel = ChannelConfig(
        name="openai", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=[MODEL, "gpt-4o-mini"]
    )
    yield from keyed_gateway(with_claude(database_url, channel))


@pytest.fixture(autouse=True)
def _reset(openai_sim: ServerThread) -> None:
    httpx.post(openai_sim.url + "/_sim/reset")


def messages() -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f'Answer the recording [sim reply="{REPLY}"]'},
                {"type": "input_audio", "input_audio": {"data": QUESTION_WAV, "format": "wav"}},
            ],
        }
    ]


def expected_cost(prompt: int, prompt_audio: int, completion: int, completion_audio: int) -> int:
    scaled = (
        (prompt - prompt_audio) * TEXT_IN
        + prompt_audio * AUDIO_IN
        + (completion - completion_audio) * TEXT_OUT
        + completion_audio * AUDIO_OUT
    )
    return -(-scaled // 1_000_000)


def test_spoken_answer_is_a_valid_wav_and_audio_tokens_are_billed(gw: GatewayHarness, openai_sim: ServerThread) -> None:
    before = len(usage_rows(gw))
    body = {
        "model": MODEL,
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "messages": messages(),
    }
    raw = orjson.dumps(body)
    completion = client(gw).chat.completions.create(**body)  # type: ignore[call-overload]
    sent = httpx.get(openai_sim.url + "/_sim/requests").json()["requests"][-1]
    assert orjson.loads(sent["body"]) == orjson.loads(raw)  # the audio bytes reach the upstream untouched
    message = completion.choices[0].message
    assert message.content is None and message.audio is not None
    assert message.audio.transcript == REPLY and message.audio.id.startswith("audio_")
    assert message.audio.expires_at > 0
    with wave.open(io.BytesIO(base64.b64decode(message.audio.data))) as sound:
        assert (sound.getnchannels(), sound.getsampwidth(), sound.getframerate()) == (1, 2, 24000)
        assert sound.getnframes() > 24000  # longer than a second for a five-word answer
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    prompt_audio = usage.prompt_tokens_details.audio_tokens or 0
    completion_audio = usage.completion_tokens_details.audio_tokens or 0
    assert prompt_audio == AUDIO_IN_TOKENS and completion_audio > 0
    rows = usage_rows(gw)[before:]
    assert len(rows) == 1
    row = rows[0]
    assert (row.prompt_tokens, row.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    cost = expected_cost(usage.prompt_tokens, prompt_audio, usage.completion_tokens, completion_audio)
    assert row.cost_micros == cost
    # Audio rates matter: the same tokens as text would cost far less.
    assert cost > expected_cost(usage.prompt_tokens, 0, usage.completion_tokens, 0) * 3


def test_streamed_audio_arrives_as_pcm16_deltas(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    stream = client(gw).chat.completions.create(
        model=MODEL,
        modalities=["text", "audio"],
        audio={"voice": "verse", "format": "pcm16"},
        messages=messages(),  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    transcript: list[str] = []
    pcm = bytearray()
    ids: set[str] = set()
    expires: list[int] = []
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            audio = choice.delta.audio  # typed by the SDK as ChoiceDeltaAudio: every field optional
            if audio is not None:
                transcript.append(audio.transcript or "")
                pcm += base64.b64decode(audio.data or "")
                if audio.id:
                    ids.add(audio.id)
                if audio.expires_at:
                    expires.append(audio.expires_at)
    assert "".join(transcript) == REPLY
    assert len(ids) == 1 and len(expires) == 1
    assert len(pcm) > 24000 * 2 and len(pcm) % 2 == 0  # over a second of 16-bit samples
    assert usage is not None and usage.completion_tokens_details is not None
    completion_audio = usage.completion_tokens_details.audio_tokens or 0
    assert completion_audio > 0
    row = usage_rows(gw)[before:][0]
    assert (row.stream, row.completion_tokens, row.usage_estimated) == (True, usage.completion_tokens, False)
    assert row.cost_micros == expected_cost(
        usage.prompt_tokens, AUDIO_IN_TOKENS, usage.completion_tokens, completion_audio
    )


def test_streaming_wav_is_refused_by_the_upstream_as_openai_does(gw: GatewayHarness) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw).chat.completions.create(
            model=MODEL,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    assert "pcm16" in caught.value.message


def test_audio_output_to_another_vendor_is_a_400_naming_the_field(gw: GatewayHarness) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw).chat.completions.create(
            model="claude-x",
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
            messages=[{"role": "user", "content": "hi"}],
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] in ("modalities", "audio")
