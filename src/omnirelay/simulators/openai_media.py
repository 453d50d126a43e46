"""The OpenAI simulator's media routes: images (generations, edits, variations), audio (transcriptions,
translations, speech) and moderations.

Everything returned is real media made on the fly (``simulators.media``): a PNG, JPEG or WEBP of the requested size
whose colours follow the prompt, a WAV or MP3 whose length follows the text to speak, a transcript that follows
the uploaded audio's bytes and lasts as long as the file plays. Image URLs point at this simulator
(``GET /_sim/files/{name}``), which keeps the last :data:`STORED_FILES` files. Knobs and faults work as on chat:
``x-sim-*`` headers, ``[sim ...]`` directives in the prompt / input / transcription prompt, queued faults.

Shapes follow OpenAI's API reference: gpt-image models answer ``b64_json`` only (and refuse ``response_format``),
report token ``usage`` and echo ``size``/``quality``/``output_format``; dall-e-3 adds ``revised_prompt``; whisper-1
reports ``usage`` in seconds, gpt-4o transcribe models in tokens (and answer ``json`` only). Encodings the simulator
cannot produce (opus/aac/flac speech) are refused with a 400 naming the parameter.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.formats.audio_probe import audio_seconds
from omnirelay.formats.multipart import Multipart, MultipartError, parse_multipart
from omnirelay.formats.sse import encode_data
from omnirelay.simulators import media
from omnirelay.simulators.common import generated_words, strip_directives
from omnirelay.simulators.openai_content import InvalidRequest, JSONObject, count_tokens

if TYPE_CHECKING:
    from omnirelay.simulators.openai import _Call, _OpenAISimulator

STORED_FILES = 128
SPEECH_CHUNK = 4096
"""Bytes per streamed speech chunk (each one is paced like a token by ``tokens_per_second``)."""
CHARS_PER_SECOND = 15
"""Speaking rate of the simulated voice (about 150 words a minute)."""
WORDS_PER_SECOND = Fraction(5, 2)
"""Words heard per second of uploaded audio."""

# Sizes each image model takes (``None``: any WxH up to 4096, as OpenAI-compatible image vendors vary).
_SIZES: dict[str, tuple[str, ...]] = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "gpt-image": ("1024x1024", "1536x1024", "1024x1536", "auto"),
}
# gpt-image output tokens per image by size and quality (OpenAI's published table).
_GPT_IMAGE_TOKENS = {
    "1024x1024": {"low": 272, "medium": 1056, "high": 4160},
    "1024x1536": {"low": 408, "medium": 1584, "high": 6240},
    "1536x1024": {"low": 400, "medium": 1568, "high": 6208},
}
_INPUT_IMAGE_TOKENS = 323
"""Input tokens of one uploaded image at low input fidelity."""
_SPEECH_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "pcm": "audio/pcm"}
_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# Words that make the simulated moderator flag a category (deterministic, so tests can ask for a flag).
_TRIGGERS = {"kill": "violence", "hate": "hate", "blood": "violence/graphic", "bomb": "illicit/violent"}


def _family(model: str) -> str:
    if model.startswith("gpt-image"):
        return "gpt-image"
    return model if model in _SIZES else ""


def _dimensions(model: str, size: str | None) -> tuple[int, int]:
    family = _family(model)
    default = "1024x1024"
    size = size or default
    allowed = _SIZES.get(family)
    if allowed is not None and size not in allowed:
        raise InvalidRequest(
            f"Invalid size '{size}'. Supported sizes are {', '.join(allowed)}.", "size", "invalid_size"
        )
    if size == "auto":
        size = default
    width, sep, height = size.partition("x")
    if (
        not sep
        or not width.isdigit()
        or not height.isdigit()
        or not (0 < int(width) <= 4096 and 0 < int(height) <= 4096)
    ):
        raise InvalidRequest(f"Invalid size '{size}': expected WIDTHxHEIGHT.", "size", "invalid_size")
    return int(width), int(height)


def _seconds_text(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


class MediaEndpoints:
    def __init__(self, sim: _OpenAISimulator) -> None:
        self.sim = sim
        self._files: OrderedDict[str, tuple[bytes, str]] = OrderedDict()

    def routes(self) -> list[Route]:
        sim = self.sim
        return [
            Route("/v1/images/generations", sim.endpoint(self.images_generations), methods=["POST"]),
            Route("/v1/images/edits", self._multipart(self.images_edits), methods=["POST"]),
            Route("/v1/images/variations", self._multipart(self.images_variations), methods=["POST"]),
            Route("/v1/audio/transcriptions", self._multipart(self.transcriptions), methods=["POST"]),
            Route("/v1/audio/translations", self._multipart(self.translations), methods=["POST"]),
            Route("/v1/audio/speech", sim.endpoint(self.speech), methods=["POST"]),
            Route("/v1/moderations", sim.endpoint(self.moderations), methods=["POST"]),
            Route("/_sim/files/{name}", self.file, methods=["GET"]),
        ]

    # ------------------------------------------------------------------------------------------ plumbing

    def _multipart(
        self, handler: Callable[[_Call, Multipart], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Like ``sim.endpoint`` for ``multipart/form-data`` routes: record, check the key, parse the form."""
        from omnirelay.simulators.openai import _bearer, _Call

        sim = self.sim

        async def run(request: Request) -> Response:
            call = _Call(request, time.perf_counter())
            raw = await request.body()
            call.recorded = sim.state.record(request, raw)
            key = _bearer(request)
            if not sim.state.key_ok(key):
                return sim._unauthorized(call, key)
            try:
                try:
                    form = parse_multipart(raw, request.headers.get("content-type"))
                except MultipartError as exc:
                    raise InvalidRequest(f"Could not parse multipart form: {exc}.", None) from None
                call.body = {p.name: p.text() for p in form.parts if not p.is_file}
                return await handler(call, form)
            except InvalidRequest as invalid:
                return sim.error(call, 400, (invalid.message, "invalid_request_error", invalid.param, invalid.code))

        return run

    def _store(self, request: Request, data: bytes, extension: str, content_type: str) -> str:
        name = hashlib.sha256(data).hexdigest()[:24] + "." + extension
        self._files[name] = (data, content_type)
        self._files.move_to_end(name)
        while len(self._files) > STORED_FILES:
            self._files.popitem(last=False)
        return str(request.base_url).rstrip("/") + "/_sim/files/" + name

    async def file(self, request: Request) -> Response:
        stored = self._files.get(request.path_params["name"])
        if stored is None:
            return Response(b"Not found", 404, media_type="text/plain")
        return Response(stored[0], media_type=stored[1])

    async def _early(self, call: _Call, text: str) -> tuple[Any, Response | None]:
        knobs = self.sim.state.knobs_for(call.request, text)
        return knobs, await self.sim._prelude(call, knobs)

    # -------------------------------------------------------------------------------------------- images

    def _images(self, call: _Call, model: str, prompt: str, inputs: int, *, variation: bool = False) -> JSONObject:
        body = call.body
        gpt_image = _family(model) == "gpt-image"
        response_format = body.get("response_format")
        if gpt_image and response_format is not None:
            raise InvalidRequest("Unknown parameter: 'response_format'.", "response_format", "unknown_parameter")
        if response_format not in (None, "url", "b64_json"):
            raise InvalidRequest(f"Invalid value: '{response_format}'.", "response_format", "invalid_value")
        output_format = body.get("output_format") or "png"
        if output_format not in ("png", "jpeg", "webp"):
            raise InvalidRequest(f"Invalid value: '{output_format}'.", "output_format", "invalid_value")
        count = body.get("n", 1)
        count = int(count) if isinstance(count, int | str) and str(count).isdigit() else 0
        if not 1 <= count <= (1 if model == "dall-e-3" else 10):
            raise InvalidRequest(f"Invalid 'n': {body.get('n')!r}.", "n", "invalid_value")
        size = body.get("size")
        width, height = _dimensions(model, size if isinstance(size, str) else None)
        quality = body.get("quality") or ("standard" if model == "dall-e-3" else "auto")
        encode = {"png": media.png, "jpeg": media.jpeg, "webp": media.webp}[output_format]
        data: list[JSONObject] = []
        clean = strip_directives(prompt)
        for index in range(count):
            image = encode(width, height, f"{model}\x00{clean}\x00{index}\x00{variation}")
            item: JSONObject = {}
            if gpt_image or response_format == "b64_json":
                item["b64_json"] = base64.b64encode(image).decode()
            else:
                item["url"] = self._store(call.request, image, output_format, f"image/{output_format}")
            if model == "dall-e-3":
                item["revised_prompt"] = f"A detailed illustration of {clean}".strip()
            data.append(item)
        answer: JSONObject = {"created": int(time.time()), "data": data}
        if gpt_image:
            shown_quality = "high" if quality == "auto" else quality
            per_image = _GPT_IMAGE_TOKENS.get(f"{width}x{height}", _GPT_IMAGE_TOKENS["1024x1024"])
            text_tokens = count_tokens(clean) if clean else 0
            image_tokens = inputs * _INPUT_IMAGE_TOKENS
            output_tokens = per_image.get(str(shown_quality), per_image["high"]) * count
            answer |= {
                "background": body.get("background") or "opaque",
                "output_format": output_format,
                "quality": shown_quality,
                "size": f"{width}x{height}",
                "usage": {
                    "input_tokens": text_tokens + image_tokens,
                    "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text_tokens},
                    "output_tokens": output_tokens,
                    "total_tokens": text_tokens + image_tokens + output_tokens,
                },
            }
        return answer

    async def images_generations(self, call: _Call) -> Response:
        body = call.body
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise InvalidRequest("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        model = str(body.get("model") or "dall-e-2")
        knobs, early = await self._early(call, prompt)
        if early is not None:
            return early
        return self.sim._json(call, knobs, self._images(call, model, prompt, 0))

    async def images_edits(self, call: _Call, form: Multipart) -> Response:
        images = form.files("image", "image[]")
        if not images:
            raise InvalidRequest("Missing required parameter: 'image'.", "image", "missing_required_parameter")
        prompt = form.field("prompt")
        if not prompt:
            raise InvalidRequest("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        model = form.field("model") or "dall-e-2"
        for part in [*images, *form.files("mask")]:
            if not (
                part.data.startswith(b"\x89PNG") or part.data.startswith(b"\xff\xd8\xff") or part.data[8:12] == b"WEBP"
            ):
                raise InvalidRequest(
                    "Invalid image file or mode for image 1, please check your image file.",
                    part.name,
                    "invalid_image_format",
                )
        knobs, early = await self._early(call, prompt)
        if early is not None:
            return early
        return self.sim._json(call, knobs, self._images(call, model, prompt, len(images)))

    async def images_variations(self, call: _Call, form: Multipart) -> Response:
        images = form.files("image")
        if len(images) != 1:
            raise InvalidRequest("Missing required parameter: 'image'.", "image", "missing_required_parameter")
        model = form.field("model") or "dall-e-2"
        if model != "dall-e-2":
            raise InvalidRequest("Only dall-e-2 makes image variations.", "model", "invalid_value")
        seed = hashlib.sha256(images[0].data).hexdigest()
        knobs, early = await self._early(call, "")
        if early is not None:
            return early
        return self.sim._json(call, knobs, self._images(call, model, seed, 1, variation=True))

    # --------------------------------------------------------------------------------------------- audio

    async def transcriptions(self, call: _Call, form: Multipart) -> Response:
        return await self._transcribe(call, form, "transcribe")

    async def translations(self, call: _Call, form: Multipart) -> Response:
        return await self._transcribe(call, form, "translate")

    async def _transcribe(self, call: _Call, form: Multipart, task: str) -> Response:
        files = form.files("file")
        if not files:
            raise InvalidRequest("Missing required parameter: 'file'.", "file", "missing_required_parameter")
        model = form.field("model")
        if not model:
            raise InvalidRequest("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        response_format = form.field("response_format") or "json"
        if response_format not in ("json", "text", "srt", "verbose_json", "vtt"):
            raise InvalidRequest(f"Invalid value: '{response_format}'.", "response_format", "invalid_value")
        gpt4o = model.startswith("gpt-4o")
        if gpt4o and response_format != "json" and not (response_format == "text"):
            raise InvalidRequest(
                f"response_format '{response_format}' is not compatible with model '{model}'.",
                "response_format",
                "unsupported_value",
            )
        data = files[0].data
        seconds = audio_seconds(data)
        if seconds is None:
            if not data.startswith(b"\x1a\x45\xdf\xa3"):  # WebM/Matroska plays, but its length is not read here
                raise InvalidRequest("Audio file might be corrupted or unsupported", "file", "invalid_value")
            seconds = Fraction(len(data), 4000)
        knobs, early = await self._early(call, form.field("prompt") or "")
        if early is not None:
            return early
        duration = float(seconds)
        count = max(1, math.floor(seconds * WORDS_PER_SECOND))
        words = [w.strip() for w in generated_words(hashlib.sha256(data).hexdigest(), count)]
        text = " ".join(words).capitalize() + "."
        granularities = set(form.fields("timestamp_granularities[]") + form.fields("timestamp_granularities"))
        segments = self._segments(words, duration)
        if response_format == "text":
            return self._plain(call, text + "\n")
        if response_format in ("srt", "vtt"):
            return self._plain(call, self._subtitles(segments, response_format))
        if gpt4o:
            audio_tokens = max(1, round(duration * 10))
            out = count_tokens(text)
            usage: JSONObject = {
                "type": "tokens",
                "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": out,
                "total_tokens": audio_tokens + out,
            }
        else:
            usage = {"type": "duration", "seconds": math.ceil(duration)}
        if gpt4o and task == "transcribe" and (form.field("stream") or "").lower() == "true":
            return self._transcript_stream(call, knobs, text, usage)  # whisper-1 ignores stream, as OpenAI's does
        answer: JSONObject
        if response_format == "verbose_json":
            answer = {"task": task, "language": "english", "duration": round(duration, 2), "text": text}
            if "word" in granularities:
                step = duration / len(words)
                answer["words"] = [
                    {"word": w, "start": round(i * step, 2), "end": round((i + 1) * step, 2)}
                    for i, w in enumerate(words)
                ]
            if not granularities or "segment" in granularities:
                answer["segments"] = [
                    {
                        "id": i,
                        "seek": 0,
                        "start": round(start, 2),
                        "end": round(end, 2),
                        "text": " " + seg,
                        "tokens": list(range(50364, 50364 + len(seg.split()))),
                        "temperature": 0.0,
                        "avg_logprob": -0.25,
                        "compression_ratio": 1.2,
                        "no_speech_prob": 0.01,
                    }
                    for i, (start, end, seg) in enumerate(segments)
                ]
            answer["usage"] = usage
        else:
            answer = {"text": text, "usage": usage}
        return self.sim._json(call, knobs, answer)

    def _transcript_stream(self, call: _Call, knobs: Any, text: str, usage: JSONObject) -> Response:
        """``transcript.text.delta`` per word, then ``transcript.text.done`` with the whole text and usage."""
        from omnirelay.simulators.openai import _FrameStream

        words = text.split(" ")
        frames = [
            (encode_data(orjson.dumps({"type": "transcript.text.delta", "delta": w if i == 0 else " " + w})), True)
            for i, w in enumerate(words)
        ]
        done = {"type": "transcript.text.done", "text": text, "usage": usage}
        frames.append((encode_data(orjson.dumps(done)), False))
        return _FrameStream(frames, knobs, self.sim.headers(call), "text/event-stream; charset=utf-8", call.recorded)

    @staticmethod
    def _segments(words: list[str], duration: float) -> list[tuple[float, float, str]]:
        """Ten words a segment, evenly spread over the audio."""
        step = duration / len(words)
        out = []
        for first in range(0, len(words), 10):
            chunk = words[first : first + 10]
            out.append((first * step, (first + len(chunk)) * step, " ".join(chunk)))
        return out

    @staticmethod
    def _subtitles(segments: list[tuple[float, float, str]], kind: str) -> str:
        if kind == "vtt":
            cues = [f"{_seconds_text(s, '.')} --> {_seconds_text(e, '.')}\n{t}\n" for s, e, t in segments]
            return "WEBVTT\n\n" + "\n".join(cues)
        cues = [
            f"{i + 1}\n{_seconds_text(s, ',')} --> {_seconds_text(e, ',')}\n{t}\n"
            for i, (s, e, t) in enumerate(segments)
        ]
        return "\n".join(cues)

    def _plain(self, call: _Call, text: str) -> Response:
        response = Response(text.encode(), media_type="text/plain; charset=utf-8")
        response.raw_headers += self.sim.headers(call)
        return response

    async def speech(self, call: _Call) -> Response:
        from omnirelay.simulators.openai import _FrameStream

        body = call.body
        for name in ("model", "input", "voice"):
            if not body.get(name):
                raise InvalidRequest(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
        text = str(body["input"])
        if len(text) > 4096:
            raise InvalidRequest("'input' is longer than 4096 characters.", "input", "string_above_max_length")
        response_format = body.get("response_format") or "mp3"
        if response_format in ("opus", "aac", "flac"):
            raise InvalidRequest(
                f"The simulator does not encode '{response_format}'.", "response_format", "invalid_value"
            )
        if response_format not in _SPEECH_TYPES:
            raise InvalidRequest(f"Invalid value: '{response_format}'.", "response_format", "invalid_value")
        stream_format = body.get("stream_format") or "audio"
        if stream_format not in ("audio", "sse"):
            raise InvalidRequest(f"Invalid value: '{stream_format}'.", "stream_format", "invalid_value")
        if stream_format == "sse" and str(body["model"]) in ("tts-1", "tts-1-hd"):
            raise InvalidRequest(
                f"stream_format 'sse' is not supported for model '{body['model']}'.", "stream_format", "invalid_value"
            )
        knobs, early = await self._early(call, text)
        if early is not None:
            return early
        clean = strip_directives(text)
        seconds = max(0.5, len(clean) / CHARS_PER_SECOND)
        seed = f"{body.get('voice')}\x00{clean}"
        if response_format == "mp3":
            audio = media.mp3(seconds, seed)
        else:
            audio = media.wav(seconds, seed)
            if response_format == "pcm":
                audio = audio[44:]  # raw 24 kHz 16-bit mono samples, as OpenAI's pcm
        chunks = [audio[i : i + SPEECH_CHUNK] for i in range(0, len(audio), SPEECH_CHUNK)]
        headers = self.sim.headers(call)
        if stream_format == "audio":
            return _FrameStream(
                [(c, True) for c in chunks], knobs, headers, _SPEECH_TYPES[response_format], call.recorded
            )
        # SSE: each chunk base64 in a speech.audio.delta event, then speech.audio.done with token usage.
        frames = [
            (encode_data(orjson.dumps({"type": "speech.audio.delta", "audio": base64.b64encode(c).decode()})), True)
            for c in chunks
        ]
        input_tokens = count_tokens(clean)
        output_tokens = math.ceil(seconds * 20)  # about 20 audio tokens a second
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        frames.append((encode_data(orjson.dumps({"type": "speech.audio.done", "usage": usage})), False))
        return _FrameStream(frames, knobs, headers, "text/event-stream; charset=utf-8", call.recorded)

    # ---------------------------------------------------------------------------------------- moderation

    async def moderations(self, call: _Call) -> Response:
        body = call.body
        if "input" not in body:
            raise InvalidRequest("Missing required parameter: 'input'.", "input", "missing_required_parameter")
        model = str(body.get("model") or "omni-moderation-latest")
        items = self._moderation_inputs(body["input"])
        knobs, early = await self._early(call, " ".join(t for t, _ in items))
        if early is not None:
            return early
        omni = model.startswith("omni-")
        results = [self._moderate(text, kinds, omni) for text, kinds in items]
        answer = {
            "id": "modr-" + hashlib.sha256(orjson.dumps(body)).hexdigest()[:29],
            "model": model,
            "results": results,
        }
        return self.sim._json(call, knobs, answer)

    @staticmethod
    def _moderation_inputs(value: Any) -> list[tuple[str, list[str]]]:
        if isinstance(value, str):
            return [(value, ["text"])]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return [(v, ["text"]) for v in value]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            # Multi-modal input is one item: its text parts and images are judged together.
            texts = [str(v.get("text", "")) for v in value if v.get("type") == "text"]
            kinds = sorted({"image" if v.get("type") == "image_url" else "text" for v in value})
            return [(" ".join(texts), kinds)]
        raise InvalidRequest("Invalid type for 'input'.", "input", "invalid_type")

    @staticmethod
    def _moderate(text: str, kinds: list[str], omni: bool) -> JSONObject:
        clean = strip_directives(text).lower()
        digest = hashlib.sha256(clean.encode()).digest()
        scores = {c: round(digest[i] / 255 * 0.001, 6) for i, c in enumerate(_MODERATION_CATEGORIES)}
        for word, category in _TRIGGERS.items():
            if word in clean:
                scores[category] = 0.92
        categories = {c: s >= 0.5 for c, s in scores.items()}
        result: JSONObject = {"flagged": any(categories.values()), "categories": categories, "category_scores": scores}
        if omni:
            result["category_applied_input_types"] = {c: kinds for c in _MODERATION_CATEGORIES}
        return result
