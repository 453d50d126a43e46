"""Images, audio and moderations through the gateway with the official ``openai`` SDK, billed to the micro-dollar.

Real sockets, the OpenAI simulator as upstream, SQLite (the database only stores the computed costs). Expected costs
are worked out here from the price table's list prices and from what the SDK got back (images returned, usage
reported, the audio's own length), never read back from the gateway's meters.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import wave
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select

from omnirelay.config import ChannelConfig, Settings
from omnirelay.simulators import media
from omnirelay.store.models import UsageLog
from tests.conftest import SQLITE_ONLY, UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread

pytestmark = SQLITE_ONLY

MODELS = [
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1",
    "whisper-1",
    "gpt-4o-transcribe",
    "tts-1",
    "tts-1-hd",
    "gpt-4o-mini-tts",
    "omni-moderation-latest",
    "gpt-4o-mini",
]
AUDIO_LIMIT = 400_000


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url,
        audio_upload_max_bytes=AUDIO_LIMIT,
        image_upload_max_bytes=2_000_000,
        channels=[
            ChannelConfig(name="main", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=MODELS),
            ChannelConfig(
                name="mapped",
                base_url=openai_sim.url + "/v1",
                api_keys=[UPSTREAM_KEY],
                models=["house-whisper", "house-tts"],
                model_map={"house-whisper": "whisper-1", "house-tts": "tts-1"},
            ),
        ],
    )
    harness = start_gateway(settings)
    yield harness
    harness.server.stop()


@pytest.fixture(scope="module")
def client(gw: GatewayHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.create_key("media"), max_retries=0)


def usage_row(gw: GatewayHarness, request_id: str) -> UsageLog:
    gw.flush_usage()

    async def read() -> UsageLog:
        async with gw.gateway.sessions() as session:
            row = await session.scalar(select(UsageLog).where(UsageLog.request_id == request_id))
            assert row is not None, f"no usage row for {request_id}"
            return row

    return gw.run(read())  # type: ignore[no-any-return]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:3] == b"\xff\xd8\xff"
    pos = 2
    while pos < len(data):
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker == 0xC0:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    raise AssertionError("no SOF0 segment")


def micros(usd: str) -> int:
    return int(Fraction(usd) * 1_000_000)


# ------------------------------------------------------------------------------------------------ images


def test_generate_url_is_served_png_of_requested_size_and_billed_per_image(
    gw: GatewayHarness, client: openai.OpenAI
) -> None:
    raw = client.images.with_raw_response.generate(
        model="dall-e-3", prompt="a lighthouse at dusk", size="1792x1024", quality="hd", response_format="url"
    )
    result = raw.parse()
    assert len(result.data) == 1
    assert result.data[0].revised_prompt
    url = result.data[0].url
    assert url is not None
    image = httpx.get(url).content
    assert png_size(image) == (1792, 1024)
    row = usage_row(gw, raw.headers["x-request-id"])
    assert row.status_code == 200 and row.endpoint == "openai.images_generations"
    assert row.cost_micros == micros("0.120")  # dall-e-3 1792x1024 hd list price


def test_generate_b64_several_images_differ_by_prompt(gw: GatewayHarness, client: openai.OpenAI) -> None:
    raw = client.images.with_raw_response.generate(
        model="dall-e-2", prompt="red fox", n=3, size="256x256", response_format="b64_json"
    )
    result = raw.parse()
    images = [base64.b64decode(item.b64_json or "") for item in result.data]
    assert [png_size(i) for i in images] == [(256, 256)] * 3
    other = client.images.generate(model="dall-e-2", prompt="blue whale", size="256x256", response_format="b64_json")
    assert base64.b64decode(other.data[0].b64_json or "") not in images
    assert usage_row(gw, raw.headers["x-request-id"]).cost_micros == 3 * micros("0.016")


def test_gpt_image_jpeg_billed_by_reported_tokens(gw: GatewayHarness, client: openai.OpenAI) -> None:
    raw = client.images.with_raw_response.generate(
        model="gpt-image-1", prompt="a paper boat", size="1024x1536", quality="low", output_format="jpeg"
    )
    result = raw.parse()
    assert jpeg_size(base64.b64decode(result.data[0].b64_json or "")) == (1024, 1536)
    assert result.usage is not None
    expected = math.ceil(
        Fraction(result.usage.input_tokens * 5_000_000 + result.usage.output_tokens * 40_000_000, 1_000_000)
    )
    row = usage_row(gw, raw.headers["x-request-id"])
    assert (row.prompt_tokens, row.completion_tokens) == (result.usage.input_tokens, result.usage.output_tokens)
    assert row.cost_micros == expected


def test_webp_output_through_the_gateway(client: openai.OpenAI) -> None:
    import av

    result = client.images.generate(model="gpt-image-1", prompt="a kite", size="1024x1024", output_format="webp")
    data = base64.b64decode(result.data[0].b64_json or "")
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(container.streams[0]))
        assert (frame.width, frame.height) == (1024, 1024)


def test_edit_with_mask_and_variation(gw: GatewayHarness, client: openai.OpenAI, tmp_path: Path) -> None:
    source = tmp_path / "source.png"
    source.write_bytes(media.png(512, 512, "source"))
    mask = tmp_path / "mask.png"
    mask.write_bytes(media.png(512, 512, "mask"))
    with source.open("rb") as image, mask.open("rb") as mask_file:
        raw = client.images.with_raw_response.edit(
            model="dall-e-2",
            image=image,
            mask=mask_file,
            prompt="add a moon",
            size="512x512",
            response_format="b64_json",
        )
    edited = raw.parse()
    assert png_size(base64.b64decode(edited.data[0].b64_json or "")) == (512, 512)
    assert usage_row(gw, raw.headers["x-request-id"]).cost_micros == micros("0.018")
    # dall-e-2 variations are deprecated in the SDK (it warns) but still part of OpenAI's API.
    with source.open("rb") as image, pytest.warns(DeprecationWarning):
        varied = client.images.with_raw_response.create_variation(
            image=image, n=2, size="256x256", response_format="url"
        )
    urls = [item.url for item in varied.parse().data]
    assert len(urls) == 2 and all(png_size(httpx.get(str(u)).content) == (256, 256) for u in urls)
    assert usage_row(gw, varied.headers["x-request-id"]).cost_micros == 2 * micros("0.016")


def test_edit_several_images_gpt_image(gw: GatewayHarness, client: openai.OpenAI) -> None:
    images = [("a.png", media.png(64, 64, "a"), "image/png"), ("b.jpg", media.jpeg(64, 64, "b"), "image/jpeg")]
    result = client.images.edit(model="gpt-image-1", image=images, prompt="combine them", quality="medium")
    assert png_size(base64.b64decode(result.data[0].b64_json or "")) == (1024, 1024)
    assert result.usage is not None and result.usage.input_tokens_details.image_tokens > 0


# ------------------------------------------------------------------------------------------------- audio


def wav_seconds(data: bytes) -> Fraction:
    with wave.open(io.BytesIO(data)) as reader:
        return Fraction(reader.getnframes(), reader.getframerate())


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "verbose_json", "vtt"])
def test_transcription_formats(gw: GatewayHarness, client: openai.OpenAI, response_format: str) -> None:
    audio = media.wav(7.5, "speech sample")
    raw = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1",
        file=("sample.wav", audio, "audio/wav"),
        response_format=response_format,  # type: ignore[arg-type]
        timestamp_granularities=["word", "segment"] if response_format == "verbose_json" else openai.omit,
    )
    result = raw.parse()
    if response_format == "json":
        assert result.text.endswith(".")  # type: ignore[union-attr]
    elif response_format == "text":
        assert isinstance(result, str) and len(result.split()) >= 10
    elif response_format == "srt":
        assert isinstance(result, str) and result.startswith("1\n00:00:00,000 --> 00:00:")
    elif response_format == "vtt":
        assert isinstance(result, str) and result.startswith("WEBVTT\n\n00:00:00.000 --> ")
    else:
        assert result.duration == pytest.approx(7.5)  # type: ignore[union-attr]
        assert result.segments and result.words  # type: ignore[union-attr]
        assert result.words[-1].end == pytest.approx(7.5)  # type: ignore[union-attr]
    row = usage_row(gw, raw.headers["x-request-id"])
    assert row.cost_micros == math.ceil(wav_seconds(audio) * 100)  # whisper-1: $0.0001 a second


def test_transcription_of_mp3_billed_by_its_frames_and_model_mapped(
    gw: GatewayHarness, client: openai.OpenAI, openai_sim: ServerThread
) -> None:
    audio = media.mp3(2.0, "mp3 sample")
    frames = len(audio) // 208  # 64 kbit/s, 44.1 kHz MPEG-1 Layer III frames
    raw = client.audio.transcriptions.with_raw_response.create(
        model="house-whisper", file=("clip.mp3", audio, "audio/mpeg")
    )
    assert raw.parse().text
    row = usage_row(gw, raw.headers["x-request-id"])
    assert row.upstream_model == "whisper-1"
    assert row.cost_micros == math.ceil(Fraction(frames * 1152, 44100) * 100)
    # The upstream got the mapped name and every file byte unchanged.
    sim_request = openai_sim.state.requests[-1]  # type: ignore[attr-defined]
    assert b'name="model"\r\n\r\nwhisper-1\r\n' in sim_request.body
    assert audio in sim_request.body


def test_gpt4o_transcribe_billed_by_tokens(gw: GatewayHarness, client: openai.OpenAI) -> None:
    raw = client.audio.transcriptions.with_raw_response.create(
        model="gpt-4o-transcribe", file=("a.wav", media.wav(4.0, "tokens"), "audio/wav")
    )
    usage = raw.parse().usage
    assert usage is not None and usage.type == "tokens"
    details = usage.input_token_details
    assert details is not None and details.audio_tokens and details.audio_tokens <= usage.input_tokens
    # Audio input at $6/M, the rest of the input (text) at $2.50/M, output at $10/M.
    text = usage.input_tokens - details.audio_tokens
    scaled = details.audio_tokens * 6_000_000 + text * 2_500_000 + usage.output_tokens * 10_000_000
    assert usage_row(gw, raw.headers["x-request-id"]).cost_micros == math.ceil(Fraction(scaled, 1_000_000))


def test_translation(gw: GatewayHarness, client: openai.OpenAI) -> None:
    audio = media.wav(3.0, "bonjour")
    with pytest.warns(DeprecationWarning):  # the SDK marks translations deprecated; the API still serves them
        raw = client.audio.translations.with_raw_response.create(
            model="whisper-1", file=("fr.wav", audio, "audio/wav"), response_format="verbose_json"
        )
    result = raw.parse()
    assert result.text and result.duration == pytest.approx(3.0)  # type: ignore[union-attr]
    assert usage_row(gw, raw.headers["x-request-id"]).endpoint == "openai.audio_translations"
    assert usage_row(gw, raw.headers["x-request-id"]).cost_micros == 300


@pytest.mark.parametrize("response_format", ["wav", "mp3"])
def test_speech_streams_to_file_with_length_following_text(
    gw: GatewayHarness, client: openai.OpenAI, tmp_path: Path, response_format: str
) -> None:
    text = "The quick brown fox jumps over the lazy dog, twice over and once more for luck."
    target = tmp_path / f"speech.{response_format}"
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input=text,
        response_format=response_format,  # type: ignore[arg-type]
    ) as response:
        assert response.headers["content-type"].startswith("audio/")
        request_id = response.headers["x-request-id"]
        response.stream_to_file(target)
    data = target.read_bytes()
    expected_seconds = len(text) / 15
    if response_format == "wav":
        assert float(wav_seconds(data)) == pytest.approx(expected_seconds, abs=0.01)
    else:
        assert data[:2] == b"\xff\xfb"
        assert (len(data) // 208) * 1152 / 44100 == pytest.approx(expected_seconds, abs=0.03)
    assert usage_row(gw, request_id).cost_micros == math.ceil(Fraction(len(text) * 15_000, 1000))


def test_speech_as_sse_billed_by_reported_tokens(gw: GatewayHarness, client: openai.OpenAI) -> None:
    import json

    text = "Tokens, not characters, when the stream says how many."
    audio, done = b"", None
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts",
        voice="coral",
        input=text,
        instructions="Speak calmly.",
        response_format="wav",
        stream_format="sse",
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "speech.audio.delta":
                    audio += base64.b64decode(event["audio"])
                else:
                    done = event
    assert float(wav_seconds(audio)) == pytest.approx(len(text) / 15, abs=0.01)
    assert done is not None and done["type"] == "speech.audio.done"
    usage = done["usage"]
    expected = math.ceil(Fraction(usage["input_tokens"] * 600_000 + usage["output_tokens"] * 12_000_000, 1_000_000))
    row = usage_row(gw, request_id)
    assert (row.prompt_tokens, row.completion_tokens) == (usage["input_tokens"], usage["output_tokens"])
    assert row.cost_micros == expected


def test_speech_arrives_chunk_by_chunk(gw: GatewayHarness, client: openai.OpenAI) -> None:
    """Paced upstream: the first chunks reach the client long before the last one is produced."""
    import time

    # 60 characters: 4 s of 24 kHz speech, ~47 chunks of 4 KiB, paced at 40 a second: ~1.2 s
    text = "[sim tokens_per_second=40] " + "word " * 12
    started = time.perf_counter()
    arrivals: list[float] = []
    with client.audio.speech.with_streaming_response.create(
        model="house-tts", voice="nova", input=text, response_format="wav"
    ) as response:
        for _ in response.iter_bytes(4096):
            arrivals.append(time.perf_counter() - started)
    assert len(arrivals) > 10
    assert arrivals[0] < arrivals[-1] / 3


def test_moderations(gw: GatewayHarness, client: openai.OpenAI) -> None:
    raw = client.moderations.with_raw_response.create(input=["a sunny day", "I will kill the process"])
    result = raw.parse()
    assert [r.flagged for r in result.results] == [False, True]
    assert result.results[1].categories.violence is True
    row = usage_row(gw, raw.headers["x-request-id"])
    assert row.model == "omni-moderation-latest" and row.cost_micros == 0


# ------------------------------------------------------------------------------------------------ errors


def test_malformed_multipart_is_400(gw: GatewayHarness, client: openai.OpenAI) -> None:
    response = httpx.post(
        gw.base_url + "/audio/transcriptions",
        headers={"authorization": f"Bearer {client.api_key}", "content-type": "multipart/form-data; boundary=XYZ"},
        content=b'--XYZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--XY',
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "multipart" in error["message"]


def test_unsupported_response_format_is_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(
            model="whisper-1",
            file=("a.wav", media.wav(1.0), "audio/wav"),
            response_format="xml",  # type: ignore[arg-type]
        )
    assert caught.value.param == "response_format"
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-1", voice="alloy", input="hi", response_format="ogg")  # type: ignore[arg-type]
    assert caught.value.param == "response_format"


def test_oversize_upload_is_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("long.wav", media.wav(10.0), "audio/wav"))
    assert caught.value.status_code == 413
    assert caught.value.code == "request_too_large"


def test_oversize_image_upload_is_413_even_without_a_declared_length(gw: GatewayHarness, client: openai.OpenAI) -> None:
    big = b"\x89PNG\r\n\x1a\n" + bytes(2_100_000)
    with pytest.raises(openai.APIStatusError) as caught:
        client.images.edit(model="dall-e-2", image=("big.png", big, "image/png"), prompt="x")
    assert caught.value.status_code == 413 and caught.value.param == "image"  # type: ignore[attr-defined]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold while the body streams in
        yield b'--B\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(40):
            yield bytes(64 * 1024)
        yield b"\r\n--B--\r\n"

    response = httpx.post(
        gw.base_url + "/images/variations",
        headers={"authorization": f"Bearer {client.api_key}", "content-type": "multipart/form-data; boundary=B"},
        content=chunked(),
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_non_image_upload_is_400(client: openai.OpenAI, openai_sim: ServerThread) -> None:
    before = openai_sim.state.request_count  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(
            model="dall-e-2", image=("photo.png", b"this is plain text, not a PNG", "image/png"), prompt="x"
        )
    assert caught.value.param == "image"
    assert openai_sim.state.request_count == before  # type: ignore[attr-defined]  # refused before the upstream


def test_balance_too_low_for_worst_case_is_refused_before_upstream(gw: GatewayHarness) -> None:
    from omnirelay.store import repo

    async def account() -> None:
        async with gw.gateway.sessions.begin() as session:
            created = await repo.ensure_account(session, "poor")
            await repo.post_entry(session, created.id, 50_000, kind="topup", reason="test")

    gw.run(account())
    gw.run(gw.gateway.reload())
    poor = openai.OpenAI(base_url=gw.base_url, api_key=gw.create_key("poor", account="poor"), max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:  # worst case of an unspecified quality: $0.12 > $0.05
        poor.images.generate(model="dall-e-3", prompt="x", size="1024x1792")
    assert caught.value.code == "insufficient_quota"
    assert poor.images.generate(model="dall-e-2", prompt="x", size="256x256").data


def test_upstream_failure_is_not_billed_and_keeps_openai_shape(gw: GatewayHarness, client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.images.generate(model="dall-e-3", prompt="[sim fault=500] x")
    assert caught.value.status_code == 502
    assert caught.value.type == "server_error" or caught.value.code == "upstream_error"
    assert UPSTREAM_KEY not in caught.value.response.text
    gw.flush_usage()

    async def failed_rows() -> list[tuple[int, int]]:
        async with gw.gateway.sessions() as session:
            rows = await session.execute(
                select(UsageLog.status_code, UsageLog.cost_micros).where(
                    UsageLog.endpoint == "openai.images_generations", UsageLog.status_code >= 500
                )
            )
            return [tuple(r) for r in rows]

    assert gw.run(failed_rows()) == [(502, 0)]


def test_empty_speech_input_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-1", voice="alloy", input="")
    assert caught.value.param == "input"


def test_streamed_transcription_relays_events_and_bills_reported_tokens(
    gw: GatewayHarness, client: openai.OpenAI
) -> None:
    raw = client.audio.transcriptions.with_raw_response.create(
        model="gpt-4o-transcribe", file=("a.wav", media.wav(5.0, "streamed"), "audio/wav"), stream=True
    )
    deltas, done = [], None
    for event in raw.parse():
        if event.type == "transcript.text.delta":
            deltas.append(event.delta)
        else:
            done = event
    assert done is not None and done.type == "transcript.text.done"
    assert "".join(deltas) == done.text and len(deltas) > 5
    usage = done.usage
    assert usage is not None and usage.input_token_details is not None
    audio = usage.input_token_details.audio_tokens or 0
    assert 0 < audio <= usage.input_tokens
    scaled = audio * 6_000_000 + (usage.input_tokens - audio) * 2_500_000 + usage.output_tokens * 10_000_000
    row = usage_row(gw, raw.headers["x-request-id"])
    assert row.stream and row.cost_micros == math.ceil(Fraction(scaled, 1_000_000))


def test_model_without_a_price_for_the_unit_is_refused(client: openai.OpenAI, openai_sim: ServerThread) -> None:
    """A chat model priced by tokens only cannot be billed per character: refused before the upstream is asked."""
    before = openai_sim.state.request_count  # type: ignore[attr-defined]
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.audio.speech.create(model="gpt-4o-mini", voice="alloy", input="hello")
    assert caught.value.code == "model_not_priced"
    assert openai_sim.state.request_count == before  # type: ignore[attr-defined]
