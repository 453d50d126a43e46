"""Simulated Ideogram and Recraft: their synchronous image APIs, answering real images of the asked size.

Ideogram (``create_ideogram_simulator``, base URL as ``https://api.ideogram.ai``; key in ``Api-Key``):
``POST /v1/ideogram-v3/generate`` (multipart or JSON), ``/edit`` (image + mask of the same size), ``/remix``,
``/upscale`` (``image_file`` + ``image_request`` JSON), ``/describe``. Answers ``{"created", "data": [{"url",
"prompt", "resolution", "is_image_safe", "seed", "style_type"}]}``; errors ``{"error": "..."}``.

Recraft (``create_recraft_simulator``, base URL as ``https://external.api.recraft.ai/v1``; bearer key):
``POST /v1/images/generations`` (JSON; vector styles and ``*_vector`` models answer SVG),
``/v1/images/vectorize`` (SVG), ``/removeBackground``, ``/clarityUpscale``, ``/generativeUpscale`` (PNG),
``POST /v1/styles`` (a custom style from up to five images, kept per API key) and ``GET /v1/styles`` (the key's
own styles: ``{"styles": [{"id", "style", "is_private", "creation_time"}]}``). Answers ``{"created", "credits",
"data": [{"image_id", "url"}]}`` or ``{..., "image": {...}}``; errors ``{"code", "message"}``.

Images are PNG (SVG for vectors) made on the fly (``simulators.media``), served from ``GET /_sim/files/{name}``.
Knobs and faults as everywhere (``simulators.common``): ``x-sim-*`` headers, ``[sim ...]`` in the prompt, queued
faults; status faults answer in the vendor's error shape.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.formats.image_probe import image_kind, image_size
from omnirelay.formats.multipart import MultipartError, Part, parse_multipart
from omnirelay.simulators import media
from omnirelay.simulators.common import STATUS_FAULTS, SimKnobs, SimulatorState, control_routes, strip_directives

STORED_FILES = 128
MAX_SIDE = 4096


class Refused(Exception):
    def __init__(self, status: int, message: str, code: str = "invalid_parameter") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class _Form:
    """A request's fields and files, from multipart or JSON alike."""

    def __init__(self, fields: dict[str, Any], files: list[Part]) -> None:
        self.fields = fields
        self.files = files

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return None if value is None or value == "" else str(value)

    def file(self, name: str) -> Part:
        for part in self.files:
            if part.name == name:
                if image_kind(part.data) is None:
                    raise Refused(400, f"'{name}' must be a JPEG, PNG or WebP image.")
                return part
        raise Refused(400, f"'{name}' is required.")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.fields.get(name, default)
        if value in (None, ""):
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise Refused(400, f"'{name}' must be an integer.") from None
        if not low <= number <= high:
            raise Refused(400, f"'{name}' must be between {low} and {high}.")
        return number


Handler = Callable[[Request, _Form], Awaitable[dict[str, Any]]]


class _ImageVendorSimulator:
    def __init__(self, state: SimulatorState, error_body: Callable[[int, str, str], dict[str, Any]]) -> None:
        self.state = state
        self.error_body = error_body
        self.files: OrderedDict[str, tuple[bytes, str]] = OrderedDict()

    def store(self, request: Request, data: bytes, extension: str, content_type: str) -> str:
        name = hashlib.sha256(data).hexdigest()[:24] + "." + extension
        self.files[name] = (data, content_type)
        self.files.move_to_end(name)
        while len(self.files) > STORED_FILES:
            self.files.popitem(last=False)
        return str(request.base_url).rstrip("/") + "/_sim/files/" + name

    async def file(self, request: Request) -> Response:
        stored = self.files.get(request.path_params["name"])
        if stored is None:
            return Response(b"Not found", 404, media_type="text/plain")
        return Response(stored[0], media_type=stored[1])

    def error(self, status: int, message: str, code: str = "invalid_parameter") -> Response:
        return Response(orjson.dumps(self.error_body(status, message, code)), status, media_type="application/json")

    def route(
        self, path: str, handler: Handler, key_of: Callable[[Request], str | None], method: str = "POST"
    ) -> Route:
        async def run(request: Request) -> Response:
            raw = await request.body()
            recorded = self.state.record(request, raw)
            if not self.state.key_ok(key_of(request)):
                return self.error(401, "Invalid API key.", "unauthorized")
            try:
                form = _read_form(raw, request.headers.get("content-type", ""))
                knobs = self.state.knobs_for(request, str(form.fields.get("prompt") or ""))
                if knobs.latency_ms:
                    await asyncio.sleep(knobs.latency_ms / 1000)
                if knobs.fault == "hang":
                    while (await request.receive())["type"] != "http.disconnect":
                        pass
                    recorded.mark_disconnected()
                    return Response(status_code=499)
                if knobs.fault in STATUS_FAULTS:
                    return self._fault(knobs)
                answer = await handler(request, form)
            except Refused as refused:
                return self.error(refused.status, refused.message, refused.code)
            return Response(orjson.dumps(answer), media_type="application/json")

        return Route(path, run, methods=[method])

    def _fault(self, knobs: SimKnobs) -> Response:
        status = int(knobs.fault or 500)
        messages = {429: "Too many requests.", 401: "Invalid API key.", 402: "Not enough credits."}
        codes = {429: "too_many_requests", 401: "unauthorized", 402: "not_enough_credits"}
        response = self.error(status, messages.get(status, f"Simulated error {status}."), codes.get(status, "error"))
        if knobs.retry_after is not None:
            response.headers["retry-after"] = str(knobs.retry_after)
        return response

    def app(self, routes: list[Route]) -> Starlette:
        routes = [*routes, Route("/_sim/files/{name}", self.file, methods=["GET"]), *control_routes(self.state)]
        return Starlette(routes=routes)


def _read_form(raw: bytes, content_type: str) -> _Form:
    if content_type.lower().startswith("multipart/form-data"):
        try:
            form = parse_multipart(raw, content_type)
        except MultipartError as exc:
            raise Refused(400, f"Malformed multipart body: {exc}.") from None
        fields = {p.name: p.text() for p in form.parts if not p.is_file}
        return _Form(fields, [p for p in form.parts if p.is_file])
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise Refused(400, "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise Refused(400, "The body must be a JSON object.")
    return _Form(body, [])


def _dimensions(size: str | None, default: tuple[int, int] = (1024, 1024)) -> tuple[int, int]:
    if not size:
        return default
    width, sep, height = size.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise Refused(400, f"Invalid size '{size}': expected WIDTHxHEIGHT.")
    w, h = int(width), int(height)
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise Refused(400, f"Invalid size '{size}'.")
    return w, h


def _ratio_size(ratio: str) -> tuple[int, int]:
    """Ideogram's ``aspect_ratio`` (``16x9``) as a resolution of about a megapixel, sides multiples of 64."""
    a, sep, b = ratio.partition("x")
    if not sep or not a.isdigit() or not b.isdigit() or not int(a) or not int(b):
        raise Refused(400, f"Invalid aspect_ratio '{ratio}'.")
    width = round(math.sqrt(1024 * 1024 * int(a) / int(b)) / 64) * 64
    height = round(math.sqrt(1024 * 1024 * int(b) / int(a)) / 64) * 64
    return width, height


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()[:4], "big") >> 1


# ---------------------------------------------------------------------------------------------------- Ideogram


def _ideogram_error(status: int, message: str, code: str) -> dict[str, Any]:
    return {"error": message}


def create_ideogram_simulator(state: SimulatorState | None = None) -> Starlette:
    state = state or SimulatorState()
    sim = _ImageVendorSimulator(state, _ideogram_error)

    def key_of(request: Request) -> str | None:
        return request.headers.get("api-key")

    def images(request: Request, form: _Form, size: tuple[int, int], kind: str, upscaled: bool = False) -> dict:
        prompt = strip_directives(form.text("prompt") or "")
        count = form.integer("num_images", 1, 1, 8)
        speed = (form.text("rendering_speed") or "DEFAULT").upper()
        if speed not in ("FLASH", "TURBO", "DEFAULT", "QUALITY"):
            raise Refused(400, f"Invalid rendering_speed '{speed}'.")
        data = []
        for index in range(count):
            seed = int(form.text("seed") or _seed(kind, prompt, index))
            image = media.png(*size, f"ideogram\x00{kind}\x00{prompt}\x00{seed}\x00{index}")
            item: dict[str, Any] = {
                "url": sim.store(request, image, "png", "image/png"),
                "prompt": prompt,
                "resolution": f"{size[0]}x{size[1]}",
                "is_image_safe": True,
                "seed": seed,
                "style_type": form.text("style_type") or "GENERAL",
            }
            if upscaled:
                item["upscaled_resolution"] = item.pop("resolution")
                item["resolution"] = f"{size[0] // 2}x{size[1] // 2}"
            data.append(item)
        return {"created": datetime.now(UTC).isoformat(), "data": data}

    def asked_size(form: _Form, default: tuple[int, int] = (1024, 1024)) -> tuple[int, int]:
        resolution, ratio = form.text("resolution"), form.text("aspect_ratio")
        if resolution and ratio:
            raise Refused(400, "Only one of resolution and aspect_ratio may be given.")
        if resolution:
            return _dimensions(resolution)
        return _ratio_size(ratio) if ratio else default

    def need_prompt(form: _Form) -> None:
        if not form.text("prompt"):
            raise Refused(400, "prompt is required.")

    async def generate(request: Request, form: _Form) -> dict[str, Any]:
        need_prompt(form)
        return images(request, form, asked_size(form), "generate")

    async def edit(request: Request, form: _Form) -> dict[str, Any]:
        image, mask = form.file("image"), form.file("mask")
        need_prompt(form)
        size = image_size(image.data)
        if size is None or size != image_size(mask.data):
            raise Refused(400, "The mask must be the same size as the image.")
        return images(request, form, size, "edit")

    async def remix(request: Request, form: _Form) -> dict[str, Any]:
        image = form.file("image")
        need_prompt(form)
        return images(request, form, asked_size(form, image_size(image.data) or (1024, 1024)), "remix")

    async def upscale(request: Request, form: _Form) -> dict[str, Any]:
        image = form.file("image_file")
        options = orjson.loads(form.text("image_request") or "{}")
        inner = _Form(options if isinstance(options, dict) else {}, [])
        width, height = image_size(image.data) or (512, 512)
        size = (min(width * 2, MAX_SIDE), min(height * 2, MAX_SIDE))
        return images(request, inner, size, "upscale:" + hashlib.sha256(image.data).hexdigest(), upscaled=True)

    async def describe(request: Request, form: _Form) -> dict[str, Any]:
        image = form.file("image_file")
        width, height = image_size(image.data) or (0, 0)
        digest = hashlib.sha256(image.data).hexdigest()[:8]
        text = f"A {width}x{height} image of flat coloured tiles arranged in a grid (pattern {digest})."
        return {"descriptions": [{"text": text}]}

    routes = [
        sim.route("/v1/ideogram-v3/generate", generate, key_of),
        sim.route("/v1/ideogram-v3/edit", edit, key_of),
        sim.route("/v1/ideogram-v3/remix", remix, key_of),
        sim.route("/upscale", upscale, key_of),
        sim.route("/describe", describe, key_of),
    ]
    return sim.app(routes)


# ----------------------------------------------------------------------------------------------------- Recraft

RECRAFT_VECTOR_STYLES = frozenset({"vector_illustration", "icon"})
RECRAFT_MODELS = frozenset({"recraftv3", "recraftv2", "recraftv3_vector", "recraftv2_vector"})
# API units (1,000 a dollar) each operation costs, as the answer's ``credits`` reports them.
RECRAFT_CREDITS = {"raster": 40, "vector": 80, "vectorize": 10, "removeBackground": 10, "clarityUpscale": 4}
RECRAFT_CREDITS |= {"generativeUpscale": 250, "styles": 40}


def _recraft_error(status: int, message: str, code: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def create_recraft_simulator(state: SimulatorState | None = None) -> Starlette:
    state = state or SimulatorState()
    sim = _ImageVendorSimulator(state, _recraft_error)

    def key_of(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        return header[7:].strip() if header.lower().startswith("bearer ") else None

    def result(request: Request, form: _Form, data: bytes, vector: bool) -> dict[str, Any]:
        if form.text("response_format") not in (None, "url", "b64_json"):
            raise Refused(400, "response_format must be url or b64_json.")
        image_id = str(uuid.UUID(bytes=hashlib.sha256(data).digest()[:16]))
        if form.text("response_format") == "b64_json":
            import base64

            return {"image_id": image_id, "b64_json": base64.b64encode(data).decode()}
        extension, content_type = ("svg", "image/svg+xml") if vector else ("png", "image/png")
        return {"image_id": image_id, "url": sim.store(request, data, extension, content_type)}

    async def generations(request: Request, form: _Form) -> dict[str, Any]:
        prompt = form.text("prompt")
        if not prompt:
            raise Refused(400, "prompt is required.")
        if len(prompt.encode()) > 1000:
            raise Refused(400, "prompt is longer than 1000 bytes.")
        model = form.text("model") or "recraftv3"
        if model not in RECRAFT_MODELS:
            raise Refused(400, f"Unknown model '{model}'.")
        style = form.text("style") or "realistic_image"
        vector = style in RECRAFT_VECTOR_STYLES or model.endswith("_vector")
        width, height = _dimensions(form.text("size"))
        count = form.integer("n", 1, 1, 6)
        clean = strip_directives(prompt)
        encode = media.svg if vector else media.png
        data = [
            result(request, form, encode(width, height, f"recraft\x00{model}\x00{style}\x00{clean}\x00{i}"), vector)
            for i in range(count)
        ]
        credits = RECRAFT_CREDITS["vector" if vector else "raster"] * count
        return {"created": int(time.time()), "credits": credits, "data": data}

    def transform(name: str, vector: bool = False, scale: int = 1) -> Handler:
        async def run(request: Request, form: _Form) -> dict[str, Any]:
            image = form.file("file")
            width, height = image_size(image.data) or (1024, 1024)
            size = (min(width * scale, MAX_SIDE), min(height * scale, MAX_SIDE))
            seed = f"recraft\x00{name}\x00{hashlib.sha256(image.data).hexdigest()}"
            data = media.svg(*size, seed) if vector else media.png(*size, seed)
            image_result = result(request, form, data, vector)
            return {"created": int(time.time()), "credits": RECRAFT_CREDITS[name], "image": image_result}

        return run

    # Custom styles by the API key that made them: Recraft lists an account's own styles only.
    custom_styles: dict[str, list[dict[str, Any]]] = {}

    async def create_style(request: Request, form: _Form) -> dict[str, Any]:
        style = form.text("style")
        if not style:
            raise Refused(400, "style is required.")
        files = [p for p in form.files if p.name == "files"]
        if not files or any(image_kind(p.data) is None for p in files):
            raise Refused(400, "files must be one to five PNG, JPEG or WebP images.")
        created = {
            "id": str(uuid.uuid4()),
            "style": style,
            "is_private": (form.text("private") or "true").lower() != "false",
            "creation_time": datetime.now(UTC).isoformat(),
        }
        custom_styles.setdefault(key_of(request) or "", []).append(created)
        return {**created, "credits": RECRAFT_CREDITS["styles"]}

    async def list_styles(request: Request, form: _Form) -> dict[str, Any]:
        return {"styles": list(custom_styles.get(key_of(request) or "", []))}

    routes = [
        sim.route("/v1/images/generations", generations, key_of),
        sim.route("/v1/images/vectorize", transform("vectorize", vector=True), key_of),
        sim.route("/v1/images/removeBackground", transform("removeBackground"), key_of),
        sim.route("/v1/images/clarityUpscale", transform("clarityUpscale", scale=2), key_of),
        sim.route("/v1/images/generativeUpscale", transform("generativeUpscale", scale=2), key_of),
        sim.route("/v1/styles", create_style, key_of),
        sim.route("/v1/styles", list_styles, key_of, method="GET"),
    ]
    return sim.app(routes)
