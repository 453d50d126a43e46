"""OpenAI's media endpoints: images (generations, edits, variations), audio (transcriptions, translations, speech)
and moderations.

Each handler reads just what routing and billing need and hands the body on untouched: JSON bodies through the
relay's usual model rewrite, multipart uploads spooled as they arrive and streamed upstream as the same parts under
the same boundary (with the model field rewritten only when the channel maps it to another name). Image answers'
URLs are kept by the gateway or passed through, by the tasks' ``store_results`` (:class:`ResultHost`).
Billing is by unit, through a meter per call (``billing.meters``): images returned, seconds of the uploaded audio
as measured here (``formats.audio_probe``), characters to speak.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import aiohttp.payload
import orjson
import structlog
from aiohttp.abc import AbstractStreamWriter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from omnirelay.api.common import bearer_token, client_ip, read_json_body
from omnirelay.api.errors import error_response
from omnirelay.api.relay import Call, Relay
from omnirelay.billing.meters import CallMeter, CharsMeter, ImageMeter, Meter, SecondsMeter
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.formats.audio_probe import audio_seconds, estimated_seconds
from omnirelay.formats.multipart import MultipartError, MultipartReader, PartData, PartHead, boundary_of
from omnirelay.gateway import Gateway
from omnirelay.providers.media import FetchRefused, fetch_url
from omnirelay.tasks.storage import LocalStore

log = structlog.get_logger(__name__)

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


# --- uploads ------------------------------------------------------------------------------------------------------
# A multipart upload is read as it arrives: plain fields into memory, each file into a Spool (memory up to
# SPOOL_THRESHOLD, then an anonymous temporary file), and sent upstream from there as a streaming payload of the
# same parts under the same boundary. So the gateway holds at most a threshold's worth of any file, never the body
# whole (before: the body joined from its chunks, then each file sliced out of it, then a rebuilt copy).

SPOOL_THRESHOLD = 1024 * 1024
"""A file part up to this size stays in memory; a larger one goes to a temporary file as it arrives."""
PROBE_BYTES = 512 * 1024
"""The start of a file kept in memory for checks that read headers only (image kind and size)."""
_IO_CHUNK = 1024 * 1024
"""Disk writes and reads of a spool, each off the event loop, in pieces of this size."""


class Spool:
    """One file part's bytes as they arrive: in memory while small, else in a temporary file."""

    def __init__(self) -> None:
        self.size = 0
        self.head = b""
        """The first :data:`PROBE_BYTES` (all of a small file)."""
        self._pending = bytearray()
        self._file: BinaryIO | None = None

    async def write(self, data: bytes) -> None:
        if len(self.head) < PROBE_BYTES:
            self.head += data[: PROBE_BYTES - len(self.head)]
        self.size += len(data)
        self._pending += data
        if len(self._pending) > (_IO_CHUNK if self._file is not None else SPOOL_THRESHOLD):
            await self._flush()

    async def _flush(self) -> None:
        if self._file is None:
            self._file = await asyncio.to_thread(tempfile.TemporaryFile)
        await asyncio.to_thread(self._file.write, self._pending)
        self._pending.clear()

    async def finish(self) -> None:
        """Every byte written: the file (if any) holds them all."""
        if self._file is not None and self._pending:
            await self._flush()
        if self._file is not None:
            await asyncio.to_thread(self._file.flush)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes from the start, again on every call (a retried or failed-over upload sends them anew)."""
        if self._file is None:
            yield bytes(self._pending)
            return
        descriptor, offset = self._file.fileno(), 0
        while offset < self.size:
            chunk = await asyncio.to_thread(os.pread, descriptor, min(_IO_CHUNK, self.size - offset), offset)
            if not chunk:
                raise OSError("an upload spool is shorter than what was written to it")
            offset += len(chunk)
            yield chunk

    @contextlib.contextmanager
    def whole(self) -> Iterator[bytes | mmap.mmap]:
        """All the bytes for a reader that walks the whole file (an audio file's frames): the memory itself, or
        the temporary file mapped read-only (the page cache holds it, not the heap)."""
        if self._file is None:
            yield bytes(self._pending)
            return
        with mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@dataclass(slots=True)
class UploadPart:
    head: PartHead
    value: bytearray | Spool
    """A plain field's bytes; a file's spool."""

    @property
    def name(self) -> str:
        return self.head.name

    @property
    def filename(self) -> str | None:
        return self.head.filename

    @property
    def is_file(self) -> bool:
        return isinstance(self.value, Spool)

    @property
    def size(self) -> int:
        return self.value.size if isinstance(self.value, Spool) else len(self.value)

    @property
    def spool(self) -> Spool:
        assert isinstance(self.value, Spool), "a plain field has no spool"
        return self.value

    @property
    def probe(self) -> bytes:
        """The start of a file (its headers), or a field's bytes."""
        return self.value.head if isinstance(self.value, Spool) else bytes(self.value)

    def text(self) -> str:
        return self.probe.decode("utf-8", errors="replace")


@dataclass(slots=True)
class Upload:
    """A multipart body as read: its parts in order, files spooled. ``close`` when the call is over."""

    boundary: bytes
    parts: list[UploadPart]

    def field(self, name: str) -> str | None:
        """The first plain (non-file) field called ``name``."""
        return next((p.text() for p in self.parts if p.name == name and not p.is_file), None)

    def fields(self, name: str) -> list[str]:
        return [p.text() for p in self.parts if p.name == name and not p.is_file]

    def plain(self) -> dict[str, str]:
        return {p.name: p.text() for p in self.parts if not p.is_file}

    def files(self, *names: str) -> list[UploadPart]:
        return [p for p in self.parts if p.is_file and (not names or p.name in names)]

    def payload(self, replace: dict[str, str] | None = None) -> UploadPayload:
        """The body for the upstream: every part as the client sent it (headers included) under the same boundary,
        with plain fields in ``replace`` set to new values (one not sent is added first)."""
        replace = dict(replace or {})
        delimiter = b"--" + self.boundary
        segments: list[bytes | Spool] = []
        for name in [n for n in replace if self.field(n) is None]:
            head = f'Content-Disposition: form-data; name="{name}"'.encode()
            segments.append(delimiter + b"\r\n" + head + b"\r\n\r\n" + replace.pop(name).encode() + b"\r\n")
        for part in self.parts:
            segments.append(delimiter + b"\r\n" + part.head.raw + b"\r\n\r\n")
            if isinstance(part.value, Spool):
                segments.append(part.value)
            elif part.name in replace:
                segments.append(replace.pop(part.name).encode())
            else:
                segments.append(bytes(part.value))
            segments.append(b"\r\n")
        segments.append(delimiter + b"--\r\n")
        return UploadPayload(segments)

    def close(self) -> None:
        for part in self.parts:
            if isinstance(part.value, Spool):
                part.value.close()


class UploadPayload(aiohttp.payload.Payload):
    """A rebuilt multipart body written to the upstream piece by piece, files streamed from their spools; its
    size is known, so it goes with a Content-Length rather than chunked."""

    _autoclose = True  # the spools belong to the Upload, which the route closes

    def __init__(self, segments: list[bytes | Spool]) -> None:
        super().__init__(segments, content_type=None)
        self._segments = segments
        self._size = sum(s.size if isinstance(s, Spool) else len(s) for s in segments)

    async def write(self, writer: AbstractStreamWriter) -> None:
        for segment in self._segments:
            if isinstance(segment, Spool):
                async for chunk in segment.chunks():
                    await writer.write(chunk)
            else:
                await writer.write(segment)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streamed upload is sent, never decoded to text")


async def read_form(
    request: Request, limit: int, what: str, *, part_limit: int | None = None, accepted_by: str = "this endpoint"
) -> Upload:
    """The multipart body as it arrives, refusing (413) past ``limit`` (and a file past ``part_limit``) as soon as
    the declared or received size says so, and (400) anything that is not the multipart its Content-Type says.
    The caller closes the upload (:func:`close_upload`) once the call is over."""
    declared = request.headers.get("content-length")
    too_large = GatewayError(
        ErrorCode.request_too_large,
        f"The {what} upload is larger than the {limit // (1024 * 1024)} MB this endpoint accepts.",
        param="file" if what == "audio" else "image",
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    try:
        reader = MultipartReader(boundary_of(request.headers.get("content-type")))
    except MultipartError as exc:
        raise _invalid(f"Malformed multipart/form-data body: {exc}.") from None
    upload = Upload(reader.boundary, [])
    request.state.upload = upload
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        try:
            events = reader.feed(chunk)
        except MultipartError as exc:
            raise _invalid(f"Malformed multipart/form-data body: {exc}.") from None
        for event in events:
            if isinstance(event, PartHead):
                upload.parts.append(UploadPart(event, Spool() if event.is_file else bytearray()))
                continue
            if isinstance(event, PartData):
                part = upload.parts[-1]
                if isinstance(part.value, Spool):
                    await part.value.write(event.data)
                    if part_limit is not None and part.value.size > part_limit:
                        raise GatewayError(
                            ErrorCode.request_too_large,
                            f"'{part.name}' is larger than the {part_limit // (1024 * 1024)} MB {accepted_by} accepts.",
                            param=part.name,
                        )
                else:
                    part.value += event.data
    try:
        reader.close()
    except MultipartError as exc:
        raise _invalid(f"Malformed multipart/form-data body: {exc}.") from None
    for part in upload.files():
        await part.spool.finish()
    return upload


def close_upload(request: Request) -> None:
    """Drop the request's spooled upload, if it had one (its temporary files go with it)."""
    upload = getattr(request.state, "upload", None)
    if isinstance(upload, Upload):
        del request.state.upload
        upload.close()


class MediaSurface:
    def __init__(self, gateway: Gateway, relay: Relay) -> None:
        self.gateway = gateway
        self.relay = relay
        self.results = ResultHost(gateway)

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
        return [
            Route(path, self._handler(parse, images=path.startswith("/v1/images/")), methods=["POST"])
            for path, parse in endpoints.items()
        ]

    def _handler(
        self, parse: Callable[[Request], Awaitable[Call]], *, images: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                response = await self.relay.handle(await parse(request))
                return await self.results.rewrite(request, response) if images else response
            except GatewayError as err:
                return error_response("openai", err)
            finally:
                close_upload(request)

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
            form = await read_form(request, self.gateway.settings.image_upload_max_bytes, "image")
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
            return self._upload_call(request, endpoint, model, form, meter)

        return parse

    def _audio_upload(self, endpoint: str) -> Callable[[Request], Awaitable[Call]]:
        async def parse(request: Request) -> Call:
            self.gateway.authenticate(bearer_token(request), client_ip(request))
            form = await read_form(request, self.gateway.settings.audio_upload_max_bytes, "audio")
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
            audio = files[0].spool
            if not audio.size:
                raise _invalid("The audio file is empty.", "file")
            # The clock billing trusts is the file's own; a container it cannot read is billed by size (see
            # audio_probe.FALLBACK_BYTES_PER_SECOND), never by anything the client claims.
            # Walking a large MP3's frames takes a while: off the event loop, so other calls keep flowing.
            with audio.whole() as data:
                small = audio.size < 1 << 20
                seconds = audio_seconds(data) if small else await asyncio.to_thread(audio_seconds, data)
            meter = SecondsMeter(seconds if seconds is not None else estimated_seconds(audio.size))
            call = self._upload_call(request, endpoint, model, form, meter)
            if stream:  # SSE transcript events, relayed as they come; usage is read from the last one
                call.stream = call.raw_stream = True
            return call

        return parse

    def _upload_call(self, request: Request, endpoint: str, model: str, form: Upload, meter: Meter) -> Call:
        def rebuild(upstream_model: str) -> Any:  # an aiohttp payload, which the relay sends as it sends bytes
            return form.payload({} if upstream_model == model else {"model": upstream_model})

        content_type = request.headers.get("content-type", "")
        return self._call(
            request,
            endpoint,
            model,
            form.plain(),
            b"",  # the body goes upstream from the spooled form (``rebuild``), never from one buffer
            meter,
            rebuild=rebuild,
            forward_headers={"Content-Type": content_type},
        )

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


def _check_images(parts: list[UploadPart], param: str) -> None:
    for part in parts:
        if not is_image(part.probe):
            raise _invalid(
                f"Invalid file for '{param}': '{part.filename}' is not a PNG, JPEG or WEBP image.",
                param,
            )


# --- results ------------------------------------------------------------------------------------------------------


class ResultHost:
    """Image results given as URLs, kept or passed through by the tasks' setting (``tasks.store_results``).

    Vendors' URLs expire (Ideogram's and Recraft's within hours), so when the gateway keeps task results it keeps
    these too: each ``url`` of the answer's ``data`` list (OpenAI's, Ideogram's and Recraft's shape) and of its
    ``image`` (Recraft's single-result operations) is fetched through the safe fetcher (no private address unless
    ``media_fetch_allow_private``, within ``media_fetch_max_bytes`` and ``media_fetch_timeout_s``), stored beside
    the task results and replaced by the gateway's own URL. A result that cannot be fetched keeps the vendor's
    URL: the call was made and billed, and a link that works for a while beats an error. Off: passed through.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        tasks = gateway.settings.tasks
        self.store = LocalStore(tasks.storage_dir, max_bytes=tasks.result_max_bytes) if tasks.store_results else None

    async def rewrite(self, request: Request, response: Response) -> Response:
        if self.store is None or response.status_code != 200 or isinstance(response, StreamingResponse):
            return response
        try:
            answer = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            return response
        holders = _url_holders(answer)
        if not holders:
            return response
        public_id = "img_" + secrets.token_hex(12)
        kept = await asyncio.gather(*(self._keep(public_id, i, h["url"]) for i, h in enumerate(holders)))
        base = (self.gateway.settings.tasks.public_base_url or str(request.base_url)).rstrip("/")
        for holder, path in zip(holders, kept, strict=True):
            if path is not None:
                holder["url"] = base + path
        response.body = orjson.dumps(answer)
        response.headers["content-length"] = str(len(response.body))
        return response

    async def _keep(self, public_id: str, index: int, url: str) -> str | None:
        assert self.store is not None
        settings = self.gateway.settings
        try:
            content_type, data = await fetch_url(
                self.gateway.http,
                url,
                max_bytes=settings.media_fetch_max_bytes,
                timeout_s=settings.media_fetch_timeout_s,
                allow_private=settings.media_fetch_allow_private,
            )
        except FetchRefused as refused:
            log.warning("result_not_kept", reason=str(refused), file=public_id)
            return None
        return await self.store.put(public_id, f"image-{index}", data, content_type)


def _url_holders(answer: object) -> list[dict[str, Any]]:
    """The objects of an image answer that carry a result ``url``: each of ``data`` and the one ``image``."""
    if not isinstance(answer, dict):
        return []
    items = answer.get("data")
    candidates = [*(items if isinstance(items, list) else ()), answer.get("image")]
    return [c for c in candidates if isinstance(c, dict) and isinstance(c.get("url"), str) and c["url"]]
