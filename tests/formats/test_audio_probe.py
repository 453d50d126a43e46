"""The audio clock billing trusts: durations read from real files (made by a real encoder, PyAV/ffmpeg), exact for
WAV, FLAC, Ogg Opus and M4A, never short for MP3, ``None`` (not a guess) for what it cannot read, never an exception."""

from __future__ import annotations

import array
import io
import math
from fractions import Fraction

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.formats.audio_probe import FALLBACK_BYTES_PER_SECOND, audio_seconds, estimated_seconds
from omnirelay.simulators import media

TONE = array.array("h", (int(3000 * math.sin(i / 9)) for i in range(1024))).tobytes()
"""One frame of 1,024 16-bit samples of a tone (computed once: a minute of audio is almost 3,000 frames)."""


def encode(container: str, codec: str, seconds: float, rate: int = 48000, **muxer: str) -> bytes:
    """``seconds`` of a tone encoded by ffmpeg, as a client's recorder would produce it."""
    buffer = io.BytesIO()
    output = av.open(buffer, mode="w", format=container, options=muxer)
    stream = output.add_stream(codec, rate=rate)
    stream.layout = "mono"
    total, pts = round(seconds * rate), 0
    for start in range(0, total, 1024):
        count = min(1024, total - start)
        frame = av.AudioFrame(format="s16", layout="mono", samples=count)
        frame.planes[0].update(TONE[: 2 * count])
        frame.sample_rate, frame.pts = rate, pts
        pts += count
        for packet in stream.encode(frame):
            output.mux(packet)
    for packet in stream.encode(None):
        output.mux(packet)
    output.close()
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("container", "codec"), [("wav", "pcm_s16le"), ("flac", "flac"), ("ogg", "libopus"), ("ipod", "aac")]
)
@pytest.mark.parametrize("seconds", [0.5, 3.25, 61.0])
def test_exact_for_real_encodes(container: str, codec: str, seconds: float) -> None:
    assert audio_seconds(encode(container, codec, seconds)) == Fraction(seconds)


@pytest.mark.parametrize("seconds", [0.5, 3.25, 20.0])
def test_mp3_from_lame_is_never_short(seconds: float) -> None:
    """LAME adds an info frame and encoder padding: a few hundredths of a second more, never less."""
    measured = audio_seconds(encode("mp3", "libmp3lame", seconds))
    assert measured is not None and seconds <= measured <= seconds + 0.1


@pytest.mark.parametrize("seconds", [0.5, 3.25, 61.0])
def test_webm_and_matroska_by_their_duration_element(seconds: float) -> None:
    """Opus in WebM: the muxer's Duration includes the codec's pre-skip, a few milliseconds more, never less."""
    webm = audio_seconds(encode("webm", "libopus", seconds))
    assert webm is not None and seconds <= webm <= seconds + 0.02
    assert audio_seconds(encode("matroska", "flac", seconds)) == Fraction(seconds)


def test_live_webm_without_duration_falls_back_to_size() -> None:
    """A live recording (a browser's MediaRecorder) has no Duration: not guessed, billed by size, erring long."""
    data = encode("webm", "libopus", 2.0, live="1")
    assert audio_seconds(data) is None
    estimate = estimated_seconds(len(data))
    assert estimate == Fraction(len(data), FALLBACK_BYTES_PER_SECOND)
    assert estimate > 2  # Opus speech is well above 16 kbit/s


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=20 * 24000), st.sampled_from([8000, 16000, 24000, 44100]))
def test_simulator_wav_exact(samples: int, rate: int) -> None:
    seconds = Fraction(samples, rate)
    assert audio_seconds(media.wav(float(seconds), "x", sample_rate=rate)) == Fraction(
        round(float(seconds) * rate), rate
    )


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0.01, max_value=30.0))
def test_simulator_mp3_whole_frames(seconds: float) -> None:
    data = media.mp3(seconds, "y")
    frames = math.ceil(seconds * 44100 / 1152 - 1e-9)
    assert audio_seconds(data) == Fraction(max(frames, 1) * 1152, 44100)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise(data: bytes) -> None:
    result = audio_seconds(data)
    assert result is None or result >= 0


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2000))
def test_truncated_files_never_raise_nor_grow(cut: int) -> None:
    for whole in (media.wav(1.0, "t"), media.mp3(1.0, "t")):
        full = audio_seconds(whole)
        part = audio_seconds(whole[: len(whole) - cut])
        assert full is not None and (part is None or part <= full)


def test_text_is_not_audio() -> None:
    assert audio_seconds(b"RIFF....WAVEthis is not audio at all") is None
    assert audio_seconds(b"hello world " * 100) is None


def test_ogg_vorbis_within_a_block() -> None:
    """ffmpeg's own Vorbis encoder (experimental, stereo float): the last granule may overshoot by part of a block."""
    buffer = io.BytesIO()
    output = av.open(buffer, mode="w", format="ogg")
    stream = output.add_stream("vorbis", rate=44100, options={"strict": "experimental"})
    stream.layout = "stereo"
    total, pts = round(3.25 * 44100), 0
    for start in range(0, total, 1024):
        count = min(1024, total - start)
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=count)
        for plane in frame.planes:
            plane.update(array.array("f", (0.1 * math.sin(i / 9) for i in range(count))).tobytes())
        frame.sample_rate, frame.pts = 44100, pts
        pts += count
        for packet in stream.encode(frame):
            output.mux(packet)
    for packet in stream.encode(None):
        output.mux(packet)
    output.close()
    measured = audio_seconds(buffer.getvalue())
    assert measured is not None and 3.25 <= measured <= 3.25 + 2048 / 44100
