"""Image vendors' own synchronous APIs, under their path prefixes: Ideogram 3.0 and Recraft.

Each route is a row of :data:`ROUTES`: the vendor (which is also the channel type and the wire format of its
answers and errors), the relay operation (``providers.wire.PATHS`` has the upstream path), the model it is sold
as, the fields it needs. One handler reads a row: it checks what the vendor would refuse (a missing prompt or
file, a file that is not an image, a mask of another size, too many images) and answers that in the vendor's
error shape before anything is sent or billed; then the body goes upstream as received (an upload part by part
from the spools it was read into, ``api.media.read_form``) and the answer comes back as it is, except that its
result URLs are kept by the gateway when it keeps task results (``tasks.store_results``; ``api.media.ResultHost``).
``GET /recraft/v1/styles`` (the custom styles of the channel's Recraft account) is relayed as it is, unbilled.

Billing, per ``prices.json``: images returned times the price of the route's model for the option the request
chose (Ideogram's ``rendering_speed``, Recraft's raster or vector output), or a flat ``per_request`` fee for
calls that return one result (describe, vectorize, background removal, upscales, styles). The worst case is
reserved before the call; a failed call costs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.api.common import bearer_token, client_ip, read_json_body
from omnirelay.api.errors import error_response
from omnirelay.api.media import ResultHost, Upload, UploadPart, close_upload, read_form
from omnirelay.api.relay import Call, Relay
from omnirelay.billing.meters import CallMeter, ImageMeter, Meter
from omnirelay.errors import Blame, ErrorCode, GatewayError
from omnirelay.formats.image_probe import image_kind, image_size
from omnirelay.gateway import Gateway
from omnirelay.providers.kinds import WireFormat
from omnirelay.providers.upstream import classify_answer, open_upstream, read_answer, read_error_body

Fields = dict[str, Any]

IDEOGRAM_SPEEDS = {"FLASH": "flash", "TURBO": "turbo", "DEFAULT": "balanced", "QUALITY": "quality"}
"""Ideogram ``rendering_speed`` → the ``per_image`` key of ``ideogram-v3`` (a missing key costs ``default``)."""
RECRAFT_VECTOR_STYLES = frozenset({"vector_illustration", "icon"})
"""Recraft styles whose images are SVG (sold at the vector price)."""
FILE_LIMITS: dict[str, int] = {"ideogram": 10 * 1024 * 1024, "recraft": 5 * 1024 * 1024}
"""Largest single image each vendor takes (Ideogram: 10 MB; Recraft: 5 MB)."""
RECRAFT_PROMPT_BYTES = 1000
STYLES_MODEL = "recraft-style"
"""Recraft's custom styles are sold (created) and listed as this model."""


def _invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(ErrorCode.invalid_request, message, param=param)


def _ideogram_speed(fields: Fields) -> str | None:
    speed = fields.get("rendering_speed") or "DEFAULT"
    if not isinstance(speed, str) or speed.upper() not in IDEOGRAM_SPEEDS:
        raise _invalid(f"Invalid rendering_speed {speed!r}: one of {', '.join(IDEOGRAM_SPEEDS)}.", "rendering_speed")
    return IDEOGRAM_SPEEDS[speed.upper()]


def _recraft_output(fields: Fields) -> str | None:
    style, model = fields.get("style"), fields.get("model")
    vector = style in RECRAFT_VECTOR_STYLES or (isinstance(model, str) and model.endswith("_vector"))
    return "vector" if vector else None


def _upscale_count(fields: Fields) -> object:
    """Ideogram's upscale takes its options as one JSON field, ``image_request``."""
    raw = fields.get("image_request")
    if raw in (None, ""):
        return None
    try:
        request = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        raise _invalid("'image_request' must be a JSON object.", "image_request") from None
    if not isinstance(request, dict):
        raise _invalid("'image_request' must be a JSON object.", "image_request")
    return request.get("num_images")


@dataclass(frozen=True, slots=True)
class VendorRoute:
    vendor: WireFormat
    path: str
    endpoint: str
    """Relay operation; ``providers.wire.PATHS[(vendor, endpoint, False)]`` is the upstream path."""
    model: str | None = None
    """The model the route is sold as; None: the body's ``model`` (else ``default_model``)."""
    default_model: str | None = None
    files: tuple[str, ...] = ()
    """File fields the vendor requires (each one image)."""
    prompt: bool = False
    count: Callable[[Fields], object] | None = None
    """How many images the request asks for (None: one)."""
    max_count: int = 1
    option: Callable[[Fields], str | None] = field(default=lambda fields: None)
    """The ``per_image`` key the request is priced by."""
    per_call: bool = False
    """Priced by a flat ``per_request`` fee instead of per image."""
    mask: str | None = None
    """A file that must have the pixel size of the first of ``files``."""
    json: bool = False
    """Takes JSON bodies (``multipart`` too unless ``json_only``)."""
    json_only: bool = False
    max_files: dict[str, int] = field(default_factory=dict)


ROUTES: tuple[VendorRoute, ...] = (
    VendorRoute(
        "ideogram",
        "/ideogram/v1/ideogram-v3/generate",
        "ideogram_generate",
        model="ideogram-v3",
        prompt=True,
        count=lambda fields: fields.get("num_images"),
        max_count=8,
        option=_ideogram_speed,
        json=True,
    ),
    VendorRoute(
        "ideogram",
        "/ideogram/v1/ideogram-v3/edit",
        "ideogram_edit",
        model="ideogram-v3",
        files=("image", "mask"),
        prompt=True,
        count=lambda fields: fields.get("num_images"),
        max_count=8,
        option=_ideogram_speed,
        mask="mask",
    ),
    VendorRoute(
        "ideogram",
        "/ideogram/v1/ideogram-v3/remix",
        "ideogram_remix",
        model="ideogram-v3",
        files=("image",),
        prompt=True,
        count=lambda fields: fields.get("num_images"),
        max_count=8,
        option=_ideogram_speed,
    ),
    VendorRoute(
        "ideogram",
        "/ideogram/upscale",
        "ideogram_upscale",
        model="ideogram-upscale",
        files=("image_file",),
        count=_upscale_count,
        max_count=8,
    ),
    VendorRoute(
        "ideogram",
        "/ideogram/describe",
        "ideogram_describe",
        model="ideogram-describe",
        files=("image_file",),
        per_call=True,
    ),
    VendorRoute(
        "recraft",
        "/recraft/v1/images/generations",
        "recraft_generations",
        default_model="recraftv3",
        prompt=True,
        count=lambda fields: fields.get("n"),
        max_count=6,
        option=_recraft_output,
        json=True,
        json_only=True,
    ),
    *(
        VendorRoute("recraft", f"/recraft/v1/images/{name}", endpoint, model=model, files=("file",), per_call=True)
        for name, endpoint, model in (
            ("vectorize", "recraft_vectorize", "recraft-vectorize"),
            ("removeBackground", "recraft_remove_background", "recraft-remove-background"),
            ("clarityUpscale", "recraft_clarity_upscale", "recraft-clarity-upscale"),
            ("generativeUpscale", "recraft_generative_upscale", "recraft-generative-upscale"),
        )
    ),
    VendorRoute(
        "recraft",
        "/recraft/v1/styles",
        "recraft_styles",
        model=STYLES_MODEL,
        files=("files",),
        per_call=True,
        max_files={"files": 5},
    ),
)


def _as_sent(body: bytes | Upload) -> Callable[[str], Any]:
    """The upstream body for any upstream model name: the client's own (an upload rebuilt from its spools, an
    aiohttp payload the relay sends as it sends bytes)."""
    return lambda _model: body.payload() if isinstance(body, Upload) else body


def _count(value: object, upper: int, param: str) -> int:
    if value is None or value == "":
        return 1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
        raise _invalid(f"'{param}' must be an integer from 1 to {upper}.", param)
    return value


class ImageVendorSurface:
    def __init__(self, gateway: Gateway, relay: Relay) -> None:
        self.gateway = gateway
        self.relay = relay
        self.results = ResultHost(gateway)

    def routes(self) -> list[Route]:
        return [
            *(Route(route.path, self._handler(route), methods=["POST"]) for route in ROUTES),
            Route("/recraft/v1/styles", self._list_styles, methods=["GET"]),
        ]

    async def _list_styles(self, request: Request) -> Response:
        """Recraft's ``GET /v1/styles``: the custom styles of the channel's Recraft account, as Recraft lists them.
        Free (Recraft charges nothing for it), so no reservation and no usage row; routed as the model that creates
        styles, which a key must be allowed."""
        try:
            key = self.gateway.authenticate(bearer_token(request), client_ip(request))
            self.gateway.check_model(key, STYLES_MODEL)
            return await self._get_upstream(STYLES_MODEL, "/styles")
        except GatewayError as err:
            return error_response("recraft", err)

    async def _get_upstream(self, model: str, path: str) -> Response:
        """A GET relayed as it is, in the plan's order, failing over as the relay does before an answer."""
        router = self.gateway.router
        plan = router.plan(model)
        last: GatewayError | None = None
        blame: Blame | None = None
        for _ in range(router.policy.max_attempts):
            candidate = plan.next(blame)
            if candidate is None:
                break
            sent = asyncio.get_running_loop().time()
            try:
                response = await open_upstream(self.gateway.upstreams, candidate, path, b"", method="GET")
                if response.status >= 400:
                    raw = await read_error_body(response, candidate.channel)
                    code, _, retry_after = classify_answer("recraft", response.status, response.headers, raw)
                    raise GatewayError(
                        code,
                        f"Upstream channel '{candidate.channel.name}' answered HTTP {response.status}.",
                        status=response.status if 400 <= response.status < 500 else None,
                        retry_after=retry_after,
                        upstream_status=response.status,
                    )
                payload = await read_answer(response, candidate.channel, sent)
            except GatewayError as err:
                router.failed(candidate, err)
                last, blame = err, err.code.spec.blame
                if not err.retryable:
                    break
                continue
            router.succeeded(candidate)
            return Response(payload, media_type="application/json")
        raise last or plan.unavailable()

    def _handler(self, route: VendorRoute) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                return await self.results.rewrite(request, await self.relay.handle(await self._parse(route, request)))
            except GatewayError as err:
                return error_response(route.vendor, err)
            finally:
                close_upload(request)

        return handle

    async def _read(self, route: VendorRoute, request: Request) -> tuple[bytes | Upload, Fields]:
        """A JSON body as bytes and its fields, or a multipart upload (files spooled as they arrive) and its
        plain fields."""
        content_type = request.headers.get("content-type", "")
        settings = self.gateway.settings
        if content_type.lower().startswith("multipart/form-data") and not route.json_only:
            limit = FILE_LIMITS.get(route.vendor, 10 * 1024 * 1024)
            form = await read_form(
                request, settings.image_upload_max_bytes, "image", part_limit=limit, accepted_by=route.vendor
            )
            return form, form.plain()
        if route.json:
            raw, body = await read_json_body(request, settings.max_body_bytes)
            return raw, body
        raise _invalid("The request must be multipart/form-data.")

    def _check_files(self, route: VendorRoute, files: list[UploadPart]) -> None:
        for name in route.files:
            found = [p for p in files if p.name == name]
            if not found:
                raise _invalid(f"Missing required parameter: '{name}'.", name)
            most = route.max_files.get(name)
            if most is not None and len(found) > most:
                raise _invalid(f"At most {most} files are accepted in '{name}'.", name)
        for part in files:
            if image_kind(part.probe) is None:
                raise _invalid(
                    f"Invalid file for '{part.name}': '{part.filename}' is not a PNG, JPEG or WEBP image.", part.name
                )
        if route.mask is not None:
            image = next(p for p in files if p.name == route.files[0])
            mask = next(p for p in files if p.name == route.mask)
            image_px, mask_px = image_size(image.probe), image_size(mask.probe)
            if image_px is None or mask_px is None or image_px != mask_px:
                shown = "x".join(map(str, mask_px or ("?", "?"))), "x".join(map(str, image_px or ("?", "?")))
                raise _invalid(
                    f"The mask must be the same size as the image (mask {shown[0]}, image {shown[1]}).", route.mask
                )

    async def _parse(self, route: VendorRoute, request: Request) -> Call:
        ip = client_ip(request)
        # Authenticate before reading: a stranger's upload is not worth parsing.
        key = self.gateway.authenticate(bearer_token(request), ip)
        body, fields = await self._read(route, request)
        files = body.files() if isinstance(body, Upload) else []
        prompt = fields.get("prompt")
        if route.prompt:
            if not isinstance(prompt, str) or not prompt.strip():
                raise _invalid("Missing required parameter: 'prompt'.", "prompt")
            if route.vendor == "recraft" and len(prompt.encode()) > RECRAFT_PROMPT_BYTES:
                raise _invalid(f"'prompt' is longer than {RECRAFT_PROMPT_BYTES} bytes.", "prompt")
        self._check_files(route, files)
        model = route.model or fields.get("model") or route.default_model
        if not isinstance(model, str) or not model:
            raise _invalid("'model' must be a string.", "model")
        count_param = "n" if route.vendor == "recraft" else "num_images"
        count = _count(route.count(fields) if route.count else None, route.max_count, count_param)
        meter: Meter = CallMeter() if route.per_call else ImageMeter(count, None, route.option(fields))
        self.gateway.check_model(key, model)
        content_type = request.headers.get("content-type", "application/json")
        # Only Recraft's JSON generations name the model in the body; everything else goes on byte for byte (an
        # upload part by part from its spools, under the client's boundary).
        named_in_body = route.model is None and isinstance(body, bytes) and route.json
        keep = None if named_in_body else _as_sent(body)
        call = Call(
            surface=route.vendor,
            endpoint=route.endpoint,
            key=key,
            model=model,
            stream=False,
            body=fields,
            raw=body if isinstance(body, bytes) else b"",
            client_ip=ip,
            meter=meter,
            rebuild=keep,
            forward_headers={"Content-Type": content_type},
        )
        call.prompt_tokens = 0  # unit-priced: no token window to fill, nothing to count
        return call
