"""The OpenAI simulator's media routes over a real socket with the official SDK: real media that a real decoder
(PyAV/ffmpeg) reads, deterministic content, faithful shapes and the usual fault knobs."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator

import av
import httpx
import openai
import pytest

from omnirelay.simulators import media
from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.openai import create_openai_simulator
from tests.harness import ServerThread

KEY = "sk-sim-media-0123456789"


@pytest.fixture(scope="module")
def sim() -> Iterator[ServerThread]:
    server = ServerThread(create_openai_simulator(SimulatorState(api_keys=frozenset({KEY})))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(sim: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.url + "/v1", api_key=KEY, max_retries=0)


def decoded(data: bytes) -> tuple[str, float | tuple[int, int]]:
    """(stream type, seconds of audio or (width, height) of the picture) as ffmpeg decodes it."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams[0]
        frames = list(container.decode(stream))
        if stream.type == "audio":
            return "audio", sum(f.samples for f in frames) / frames[0].sample_rate
        return "video", (frames[0].width, frames[0].height)


def rgb_at(data: bytes, x: int, y: int) -> tuple[int, int, int]:
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(container.streams[0])).reformat(format="rgb24")
        plane = frame.planes[0]
        offset = y * plane.line_size + x * 3
        r, g, b = bytes(plane)[offset : offset + 3]
        return r, g, b


@pytest.mark.parametrize(("width", "height"), [(1, 1), (7, 13), (256, 256), (1792, 1024)])
def test_images_decode_at_their_size(width: int, height: int) -> None:
    assert decoded(media.png(width, height, "seed")) == ("video", (width, height))
    assert decoded(media.jpeg(width, height, "seed")) == ("video", (width, height))
    assert decoded(media.webp(width, height, "seed")) == ("video", (width, height))


def all_rgb(data: bytes) -> bytes:
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(container.streams[0])).reformat(format="rgb24")
        plane, row = bytes(frame.planes[0]), frame.planes[0].line_size
        return b"".join(plane[y * row : y * row + frame.width * 3] for y in range(frame.height))


@pytest.mark.parametrize(("width", "height"), [(1, 1), (9, 8), (300, 7), (5000, 3), (1024, 1024)])
def test_lossless_webp_is_the_png_picture(width: int, height: int) -> None:
    for seed in ("a", "b"):
        assert all_rgb(media.webp(width, height, seed)) == all_rgb(media.png(width, height, seed))


def test_images_are_deterministic_and_follow_the_seed() -> None:
    assert media.png(64, 64, "a") == media.png(64, 64, "a")
    assert media.png(64, 64, "a") != media.png(64, 64, "b")
    assert media.jpeg(64, 64, "a") != media.jpeg(64, 64, "b")
    # JPEG and PNG of one seed show the same picture (up to colour conversion rounding).
    png_pixel, jpeg_pixel = rgb_at(media.png(64, 64, "a"), 3, 3), rgb_at(media.jpeg(64, 64, "a"), 3, 3)
    assert all(abs(p - j) <= 3 for p, j in zip(png_pixel, jpeg_pixel, strict=True))


@pytest.mark.parametrize("seconds", [0.2, 1.0, 4.5])
def test_audio_decodes_to_its_length(seconds: float) -> None:
    kind, wav_length = decoded(media.wav(seconds, "tone"))
    assert kind == "audio" and wav_length == pytest.approx(seconds, abs=1 / 24000)
    kind, mp3_length = decoded(media.mp3(seconds, "tone"))
    frames = math.ceil(seconds * 44100 / 1152)
    assert kind == "audio" and mp3_length == pytest.approx(frames * 1152 / 44100, abs=0.03)


def test_generation_shapes(client: openai.OpenAI, sim: ServerThread) -> None:
    dalle = client.images.generate(model="dall-e-3", prompt="a red kite", size="1024x1792")
    assert dalle.data[0].revised_prompt and dalle.usage is None
    assert decoded(httpx.get(str(dalle.data[0].url)).content) == ("video", (1024, 1792))
    webp = client.images.generate(model="gpt-image-1", prompt="a red kite", size="1536x1024", output_format="webp")
    assert webp.output_format == "webp"
    assert decoded(base64.b64decode(webp.data[0].b64_json or "")) == ("video", (1536, 1024))
    gpt = client.images.generate(model="gpt-image-1", prompt="a red kite", quality="medium", background="transparent")
    assert gpt.data[0].url is None and gpt.size == "1024x1024" and gpt.quality == "medium"
    assert gpt.background == "transparent" and gpt.output_format == "png"
    assert gpt.usage is not None and gpt.usage.output_tokens == 1056
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="gpt-image-1", prompt="x", response_format="url")
    assert caught.value.param == "response_format"
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="dall-e-3", prompt="x", size="512x512")
    assert caught.value.param == "size"
    assert httpx.get(sim.url + "/_sim/files/nope.png").status_code == 404


def test_same_prompt_same_image(client: openai.OpenAI) -> None:
    first = client.images.generate(model="dall-e-2", prompt="cat", size="256x256", response_format="b64_json")
    again = client.images.generate(model="dall-e-2", prompt="cat", size="256x256", response_format="b64_json")
    other = client.images.generate(model="dall-e-2", prompt="dog", size="256x256", response_format="b64_json")
    assert first.data[0].b64_json == again.data[0].b64_json != other.data[0].b64_json
    assert decoded(base64.b64decode(first.data[0].b64_json or ""))[1] == (256, 256)


def test_transcripts_follow_the_audio(client: openai.OpenAI) -> None:
    one, two = media.wav(6.0, "one"), media.wav(6.0, "two")
    first = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", one, "audio/wav"))
    assert first.text == client.audio.transcriptions.create(model="whisper-1", file=("b.wav", one, "audio/wav")).text
    assert first.text != client.audio.transcriptions.create(model="whisper-1", file=("a.wav", two, "audio/wav")).text
    assert first.usage is not None and first.usage.type == "duration" and first.usage.seconds == 6
    words = client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", one, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert words.words and words.segments is None and words.words[-1].end == pytest.approx(6.0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("a.txt", b"plain text", "text/plain"))
    assert caught.value.param == "file"
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(
            model="gpt-4o-transcribe", file=("a.wav", one, "audio/wav"), response_format="srt"
        )


def test_speech_length_follows_text(client: openai.OpenAI) -> None:
    text = ("Hi there. " * 30).strip()
    short = client.audio.speech.create(model="tts-1", voice="alloy", input="Hi there.", response_format="wav")
    long = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav")
    assert decoded(short.content)[1] < decoded(long.content)[1]
    assert decoded(long.content)[1] == pytest.approx(len(text) / 15, abs=0.001)
    pcm = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="pcm")
    assert len(pcm.content) == 2 * round(len(text) / 15 * 24000)


def test_fault_knobs(client: openai.OpenAI, sim: ServerThread) -> None:
    with pytest.raises(openai.InternalServerError):
        client.images.generate(model="dall-e-2", prompt="x", extra_headers={"x-sim-fault": "500"})
    with pytest.raises(openai.RateLimitError):
        client.moderations.create(input="[sim fault=429] hello")
    httpx.post(sim.url + "/_sim/faults", json={"faults": ["503"]})
    with pytest.raises(openai.InternalServerError):
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", media.wav(1.0), "audio/wav"))
    assert client.audio.transcriptions.create(model="whisper-1", file=("a.wav", media.wav(1.0), "audio/wav")).text
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=sim.url + "/v1", api_key="sk-wrong-key-000000", max_retries=0).images.generate(
            model="dall-e-2", prompt="x"
        )
    with pytest.raises((openai.APIConnectionError, httpx.HTTPError)):  # a reset mid-body drops the connection
        client.audio.speech.create(
            model="tts-1", voice="alloy", input="[sim fault=reset fault_after=2] " + "words " * 200
        ).read()


def test_moderation_shape(client: openai.OpenAI) -> None:
    result = client.moderations.create(
        model="omni-moderation-latest",
        input=[{"type": "text", "text": "a calm lake"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
    )
    (only,) = result.results
    assert only.flagged is False
    assert only.category_applied_input_types is not None
    assert only.category_applied_input_types.violence == ["image", "text"]
