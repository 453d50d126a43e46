"""OpenAI's media endpoints: images (generations, edits, variations), audio (transcriptions, translations, speech)
and moderations.

Each handler reads just what routing and billing need and hands the body on untouched: JSON bodies through the
relay's usual model rewrite, multipart uploads as the bytes received (rebuilt around the same parts only when the
channel maps the model to another name). Billing is by unit, through a meter per call (``billing.meters``): images
returned, seconds of the uploaded audio as measured here (``formats.audio_probe``), characters to speak.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.api.common import bearer_token, client_ip, read_json_body
from omnirelay.api.errors import error_response
from omnirelay.api.relay import Call, Relay
from omnirelay.billing.meters import CallMeter, CharsMeter, ImageMeter, Meter, SecondsMeter
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.formats.audio_probe import audio_seconds, estimated_seconds
from omnirelay.formats.multipart import Multipart, MultipartError, Part, parse_multipart, replace_field
from omnirelay.gateway import Gateway

# The values OpenAI accepts, per parameter: anything else is a 400 naming the parameter, before any upstream call.
IMAGE_RESPONSE_FORMATS = ("url", "b64_json")
IMAGE_OUTPUT_FORMATS = ("png", "jpeg", "webp")
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
SPEECH_STREAM_FORMATS = ("audio", "sse")
TIMESTAMP_GRANULARITIES = ("word", "segment")
SPEECH_MAX_CHARS = 4096
MAX_IMAGES = 10

# OpenAI's defaults when the client names no model.
DEFAULT_MODELS = {
    "images_generations": "dall-e-2",
    "images_edits": "dall-e-2",
    "images_variations": "dall-e-2",
    "moderations": "omni-moderation-latest",
}

# Image containers an edit or variation accepts, by their first bytes (the filename and declared type are not
# trusted: a renamed text file must not reach the upstream, nor be billed).
_IMAGE_MAGIC: tuple[tuple[bytes, int], ...] = ((b"\x89PNG\r\n\x1a\n", 0), (b"\xff\xd8\xff", 0), (b"WEBP", 8))


def is_image(data: bytes) -> bool:
    for magic, offset in _IMAGE_MAGIC:
        if data[offset : offset + len(magic)] == magic and (offset == 0 or data[:4] == b"RIFF"):
            return True
    return False


def _invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(ErrorCode.invalid_request, message, param=param)


def _choice(value: object, allowed: tuple[str, ...], param: str) -> None:
    if value is not None and value not in allowed:
        raise _invalid(
            f"Invalid value for '{param}': {value!r}. Supported values are: {', '.join(repr(a) for a in allowed)}.",
            param,
        )


def _count(value: object, param: str = "n", upper: int = MAX_IMAGES) -> int:
    if value is None:
        return 1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
        raise _invalid(f"Invalid value for '{param}': it must be an integer from 1 to {upper}.", param)
    return value


def _text(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise _invalid(f"Missing required parameter: '{name}'.", name)
        return None
    if not isinstance(value, str):
        raise _invalid(f"'{name}' must be a string.", name)
    return value


async def read_upload(request: Request, limit: int, what: str) -> bytes:
    """The whole body, refusing (413) past ``limit`` as soon as the declared or received size says so."""
    declared = request.headers.get("content-length")
    too_large = GatewayError(
        ErrorCode.request_too_large,
        f"The {what} upload is larger than the {limit // (1024 * 1024)} MB this endpoint accepts.",
        param="file" if what == "audio" else "image",
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _multipart(raw: bytes, request: Request) -> Multipart:
    try:
        return parse_multipart(raw, request.headers.get("content-type"))
    except MultipartError as exc:
        raise _invalid(f"Malformed multipart/form-data body: {exc}.") from None


def _rebuilder(raw: bytes, form: Multipart, model: str) -> Callable[[str], bytes]:
    def rebuild(upstream_model: str) -> bytes:
        return raw if upstream_model == model else replace_field(raw, form, "model", upstream_model)

    return rebuild


class MediaSurface:
    def __init__(self, gateway: Gateway, relay: Relay) -> None:
        self.gateway = gateway
        self.relay = relay

    def routes(self) -> list[Route]:
        endpoints: dict[str, Callable[[Request], Awaitable[Call]]] = {
            "/v1/images/generations": self._images_generations,
            "/v1/images/edits": self._images_upload("images_edits"),
            "/v1/images/variations": self._images_upload("images_variations"),
            "/v1/audio/transcriptions": self._audio_upload("audio_transcriptions"),
            "/v1/audio/translations": self._audio_upload("audio_translations"),
            "/v1/audio/speech": self._speech,
            "/v1/moderations": self._moderations,
        }
        return [Route(path, self._handler(parse), methods=["POST"]) for path, parse in endpoints.items()]

    def _handler(self, parse: Callable[[Request], Awaitable[Call]]) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                return await self.relay.handle(await parse(request))
            except GatewayError as err:
                return error_response("openai", err)

        return handle

    def _call(
        self,
        request: Request,
        endpoint: str,
        model: str,
        body: dict[str, Any],
        raw: bytes,
        meter: Meter,
        **extra: Any,
    ) -> Call:
        key = self.gateway.authenticate(bearer_token(request), client_ip(request))
        self.gateway.check_model(key, model)
        call = Call(
            surface="openai",
            endpoint=endpoint,
            key=key,
            model=model,
            stream=False,
            body=body,
            raw=raw,
            client_ip=client_ip(request),
            meter=meter,
            **extra,
        )
        call.prompt_tokens = 0  # unit-priced: no token window to fill, nothing to count
        return call

    async def _json(self, request: Request) -> tuple[bytes, dict[str, Any]]:
        # Authenticate before reading: a stranger's body is not worth parsing.
        self.gateway.authenticate(bearer_token(request), client_ip(request))
        return await read_json_body(request, self.gateway.settings.max_body_bytes)

    async def _images_generations(self, request: Request) -> Call:
        raw, body = await self._json(request)
        prompt = _text(body, "prompt", required=True) or ""
        model = _text(body, "model", required=False) or DEFAULT_MODELS["images_generations"]
        _choice(body.get("response_format"), IMAGE_RESPONSE_FORMATS, "response_format")
        _choice(body.get("output_format"), IMAGE_OUTPUT_FORMATS, "output_format")
        n = _count(body.get("n"))
        meter = ImageMeter(n, _opt_str(body.get("size")), _opt_str(body.get("quality")), prompt_chars=len(prompt))
        return self._call(request, "images_generations", model, body, raw, meter)

    def _images_upload(self, endpoint: str) -> Callable[[Request], Awaitable[Call]]:
        async def parse(request: Request) -> Call:
            self.gateway.authenticate(bearer_token(request), client_ip(request))
            raw = await read_upload(request, self.gateway.settings.image_upload_max_bytes, "image")
            form = _multipart(raw, request)
            images = form.files("image", "image[]")
            if not images:
                raise _invalid("Missing required parameter: 'image'.", "image")
            if endpoint == "images_variations" and len(images) > 1:
                raise _invalid("A variation takes exactly one image.", "image")
            _check_images(images, "image")
            _check_images(form.files("mask"), "mask")
            prompt = form.field("prompt")
            if endpoint == "images_edits" and not prompt:
                raise _invalid("Missing required parameter: 'prompt'.", "prompt")
            _choice(form.field("response_format"), IMAGE_RESPONSE_FORMATS, "response_format")
            _choice(form.field("output_format"), IMAGE_OUTPUT_FORMATS, "output_format")
            model = form.field("model") or DEFAULT_MODELS[endpoint]
            n = _count(form.field("n"))
            meter = ImageMeter(
                n, form.field("size"), form.field("quality"), prompt_chars=len(prompt or ""), inputs=len(images)
            )
            return self._upload_call(request, endpoint, model, form, raw, meter)

        return parse

    def _audio_upload(self, endpoint: str) -> Callable[[Request], Awaitable[Call]]:
        async def parse(request: Request) -> Call:
            self.gateway.authenticate(bearer_token(request), client_ip(request))
            raw = await read_upload(request, self.gateway.settings.audio_upload_max_bytes, "audio")
            form = _multipart(raw, request)
            files = form.files("file")
            if len(files) != 1:
                raise _invalid("Missing required parameter: 'file'." if not files else "Send one 'file'.", "file")
            model = form.field("model")
            if not model:
                raise _invalid("Missing required parameter: 'model'.", "model")
            _choice(form.field("response_format"), TRANSCRIPT_FORMATS, "response_format")
            for granularity in form.fields("timestamp_granularities[]") + form.fields("timestamp_granularities"):
                _choice(granularity, TIMESTAMP_GRANULARITIES, "timestamp_granularities")
            # Only transcriptions stream (gpt-4o models); a translation's stream flag goes on and is ignored upstream.
            stream = endpoint == "audio_transcriptions" and (form.field("stream") or "").lower() == "true"
            data = files[0].data
            if not data:
                raise _invalid("The audio file is empty.", "file")
            # The clock billing trusts is the file's own; a container it cannot read is billed by size (see
            # audio_probe.FALLBACK_BYTES_PER_SECOND), never by anything the client claims.
            # Walking a large MP3's frames takes a while: off the event loop, so other calls keep flowing.
            seconds = audio_seconds(data) if len(data) < 1 << 20 else await asyncio.to_thread(audio_seconds, data)
            meter = SecondsMeter(seconds if seconds is not None else estimated_seconds(len(data)))
            call = self._upload_call(request, endpoint, model, form, raw, meter)
            if stream:  # SSE transcript events, relayed as they come; usage is read from the last one
                call.stream = call.raw_stream = True
            return call

        return parse

    def _upload_call(
        self, request: Request, endpoint: str, model: str, form: Multipart, raw: bytes, meter: Meter
    ) -> Call:
        fields = {p.name: p.text() for p in form.parts if not p.is_file}
        content_type = request.headers.get("content-type", "")
        call = self._call(
            request,
            endpoint,
            model,
            fields,
            raw,
            meter,
            rebuild=_rebuilder(raw, form, model),
            forward_headers={"Content-Type": content_type},
        )
        return call

    async def _speech(self, request: Request) -> Call:
        raw, body = await self._json(request)
        model = _text(body, "model", required=True) or ""
        text = _text(body, "input", required=True) or ""
        _text(body, "voice", required=True)
        if len(text) > SPEECH_MAX_CHARS:
            raise _invalid(f"'input' is longer than the {SPEECH_MAX_CHARS} characters speech accepts.", "input")
        _choice(body.get("response_format"), SPEECH_FORMATS, "response_format")
        _choice(body.get("stream_format"), SPEECH_STREAM_FORMATS, "stream_format")
        call = self._call(request, "audio_speech", model, body, raw, CharsMeter(len(text)), raw_stream=True)
        call.stream = True  # relayed chunk by chunk as the audio arrives
        return call

    async def _moderations(self, request: Request) -> Call:
        raw, body = await self._json(request)
        if body.get("input") in (None, "", []):
            raise _invalid("Missing required parameter: 'input'.", "input")
        model = _text(body, "model", required=False) or DEFAULT_MODELS["moderations"]
        return self._call(request, "moderations", model, body, raw, CallMeter())


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _check_images(parts: list[Part], param: str) -> None:
    for part in parts:
        if not is_image(part.data):
            raise _invalid(
                f"Invalid file for '{param}': '{part.filename}' is not a PNG, JPEG or WEBP image.",
                param,
            )
