"""Spoken answers of the fake OpenAI chat endpoint (gpt-4o-audio-preview: ``modalities: ["text", "audio"]``).

What the real API does and the simulator copies:
- the request names a voice and a format in ``audio``; without it, or with ``audio`` in ``modalities`` missing, a 400;
- the answer's text becomes ``message.audio.transcript`` (``content`` is null) and the sound ``message.audio.data``:
  base64 of a real WAV or MP3 (``pcm16``: raw 24 kHz 16-bit mono PCM), with an ``id`` and ``expires_at``;
- a stream must ask for ``pcm16``; its deltas carry ``audio.transcript`` pieces (the first with the ``id``), then
  ``audio.data`` pieces, then ``audio.expires_at``;
- usage splits audio from text: ``prompt_tokens_details.audio_tokens`` for ``input_audio`` parts,
  ``completion_tokens_details.audio_tokens`` (and ``text_tokens``) for the answer.
The sound is a tone (``media.wav``) lasting :data:`SECONDS_PER_WORD` per word of the transcript.
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass
from typing import Any

from omnirelay.simulators.media import mp3, wav
from omnirelay.simulators.openai_content import AUDIO_TOKENS, InvalidRequest, JSONObject

SECONDS_PER_WORD = 0.4
AUDIO_TOKENS_PER_SECOND = 10
"""The simulator's rate of audio tokens in an answer (its own round figure)."""
SAMPLE_RATE = 24000
PCM_CHUNK_BYTES = SAMPLE_RATE * 2 // 10
"""Streamed ``audio.data`` pieces: 100 ms of pcm16 each."""
EXPIRES_AFTER_S = 3600
VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"})
ENCODERS = {"wav": lambda seconds, seed: wav(seconds, seed), "mp3": mp3, "pcm16": lambda s, seed: wav(s, seed)[44:]}
"""Formats the simulator can produce (``flac``, ``opus`` and ``aac`` it cannot, and says so)."""


@dataclass(frozen=True, slots=True)
class AudioRequest:
    voice: str
    format: str


@dataclass(frozen=True, slots=True)
class ChatAudio:
    id: str
    data: bytes
    transcript: str
    expires_at: int
    tokens: int
    """Audio tokens of the answer."""

    def message_field(self) -> JSONObject:
        return {
            "id": self.id,
            "data": base64.b64encode(self.data).decode(),
            "expires_at": self.expires_at,
            "transcript": self.transcript,
        }

    def deltas(self, transcript_pieces: list[str]) -> list[tuple[JSONObject, bool]]:
        """The ``delta.audio`` objects of a stream, and whether each carries a token (transcript pieces do)."""
        out: list[tuple[JSONObject, bool]] = []
        for i, piece in enumerate(transcript_pieces):
            out.append(({"id": self.id, "transcript": piece} if i == 0 else {"transcript": piece}, True))
        for start in range(0, len(self.data), PCM_CHUNK_BYTES):
            chunk = self.data[start : start + PCM_CHUNK_BYTES]
            out.append(({"data": base64.b64encode(chunk).decode()}, False))
        out.append(({"expires_at": self.expires_at}, False))
        return out


def audio_request(body: JSONObject) -> AudioRequest | None:
    """The spoken answer asked for, or None for text only. Raises InvalidRequest as the real API would."""
    modalities = body.get("modalities")
    if not isinstance(modalities, list) or "audio" not in modalities:
        return None
    audio = body.get("audio")
    if not isinstance(audio, dict):
        raise InvalidRequest(
            "Missing required parameter: 'audio'. When 'modalities' includes 'audio', 'audio' is required.", "audio"
        )
    voice, fmt = audio.get("voice"), audio.get("format")
    if voice not in VOICES:
        raise InvalidRequest(f"Invalid value for 'audio.voice': {voice!r}.", "audio.voice")
    if fmt not in ("wav", "mp3", "flac", "opus", "pcm16", "aac"):
        raise InvalidRequest(f"Invalid value for 'audio.format': {fmt!r}.", "audio.format")
    if body.get("stream") is True and fmt != "pcm16":
        raise InvalidRequest("Audio output with stream=true requires format 'pcm16'.", "audio.format")
    if fmt not in ENCODERS:
        raise InvalidRequest(f"The simulator cannot encode '{fmt}' audio; use wav, mp3 or pcm16.", "audio.format")
    return AudioRequest(str(voice), str(fmt))


def spoken_answer(request: AudioRequest, transcript: str, seed: str, audio_id: str) -> ChatAudio:
    seconds = max(0.5, SECONDS_PER_WORD * len(transcript.split()))
    data = ENCODERS[request.format](seconds, f"{request.voice}\x00{seed}")
    tokens = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
    return ChatAudio(audio_id, data, transcript, int(time.time()) + EXPIRES_AFTER_S, tokens)


def input_audio_tokens(messages: Any) -> int:
    """Prompt tokens that are audio: each ``input_audio`` part costs :data:`AUDIO_TOKENS`."""
    count = 0
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(1 for p in content if isinstance(p, dict) and p.get("type") == "input_audio")
    return count * AUDIO_TOKENS
