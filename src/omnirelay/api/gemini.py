"""The Gemini surface: ``/v1beta/models/{model}:generateContent``, ``:streamGenerateContent`` (``alt=sse`` or the
JSON-array stream), ``:countTokens``, ``:embedContent``, ``:batchEmbedContents`` and the model list; the same
routes under ``/v1/`` because google-genai uses that version by default with a custom base URL.

The key comes as ``x-goog-api-key``, ``?key=`` or a bearer token.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.api.common import bearer_token, client_ip, header, read_json_body
from omnirelay.api.errors import error_response
from omnirelay.api.relay import Call, Relay
from omnirelay.billing import tokens
from omnirelay.billing.vendor_meters import PredictionsMeter
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.gateway import Gateway
from omnirelay.providers.kinds import CHANNEL_KINDS
from omnirelay.store.snapshot import KeyRecord

# Gemini method -> (relay operation, stream)
METHODS: dict[str, tuple[str, bool]] = {
    "generateContent": ("chat", False),
    "streamGenerateContent": ("chat", True),
    "countTokens": ("count_tokens", False),
    "embedContent": ("embed", False),
    "batchEmbedContents": ("batch_embed", False),
    "predict": ("predict", False),
}
IMAGEN_MAX_SAMPLES = 4
GENERATION_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]


def gemini_key(request: Request) -> str | None:
    return header(request, b"x-goog-api-key") or request.query_params.get("key") or bearer_token(request)


def is_gemini_request(request: Request) -> bool:
    """Model-list routes are shared with the OpenAI surface; a Google key header or ``?key=`` tells them apart."""
    return "x-goog-api-key" in request.headers or "key" in request.query_params


class GeminiSurface:
    def __init__(self, gateway: Gateway, relay: Relay) -> None:
        self.gateway = gateway
        self.relay = relay

    def routes(self) -> list[Route]:
        """GET ``/v1/models[/{id}]`` belongs to the OpenAI surface, which hands Gemini clients back here."""
        return [
            Route("/v1beta/models/{target:path}", self.call_method, methods=["POST"]),
            Route("/v1/models/{target:path}", self.call_method, methods=["POST"]),
            Route("/v1beta/models", self.list_models, methods=["GET"]),
            Route("/v1beta/models/{target:path}", self.get_model, methods=["GET"]),
        ]

    async def call_method(self, request: Request) -> Response:
        try:
            model, _, method = request.path_params["target"].rpartition(":")
            if method not in METHODS or not model:
                raise GatewayError(ErrorCode.not_found, f"Method '{method}' is not found for '{model}'.")
            operation, stream = METHODS[method]
            ip = client_ip(request)
            key = self.gateway.authenticate(gemini_key(request), ip)
            raw, body = await read_json_body(request, self.gateway.settings.max_body_bytes)
            model = model.removeprefix("models/")
            self.gateway.check_model(key, model)
            if operation == "chat" and not body.get("contents"):
                raise GatewayError(ErrorCode.invalid_request, "* contents: must not be empty", param="contents")
            meter = imagen_meter(body) if operation == "predict" else None
            call = Call(
                surface="gemini",
                endpoint=operation,
                key=key,
                model=model,
                stream=stream,
                body=body,
                raw=raw,
                client_ip=ip,
                gemini_sse=request.query_params.get("alt") == "sse",
                meter=meter,
            )
            if meter is not None:
                call.prompt_tokens = 0  # priced per image: no token window to fill
            if operation == "count_tokens" and not self._served_natively(model):
                count = tokens.count_gemini_prompt(model, body.get("generateContentRequest", body))
                return Response(orjson.dumps({"totalTokens": count}), media_type="application/json")
            return await self.relay.handle(call)
        except GatewayError as err:
            return error_response("gemini", err)

    def _served_natively(self, model: str) -> bool:
        candidates = self.gateway.registry.candidates(model)
        kind = CHANNEL_KINDS.get(candidates[0].channel.type) if candidates else None  # None: a task vendor
        return kind is not None and kind.wire_format == "gemini"

    async def list_models(self, request: Request) -> Response:
        try:
            key = self.gateway.authenticate(gemini_key(request), client_ip(request))
        except GatewayError as err:
            return error_response("gemini", err)
        return gemini_model_list(self.gateway, key)

    async def get_model(self, request: Request) -> Response:
        model = request.path_params["target"].removeprefix("models/")
        try:
            key = self.gateway.authenticate(gemini_key(request), client_ip(request))
            if not key.allows_model(model) or not self.gateway.registry.serves(model):
                raise GatewayError(ErrorCode.not_found, f"models/{model} is not found for API version v1beta")
        except GatewayError as err:
            return error_response("gemini", err)
        return Response(orjson.dumps(gemini_model(model)), media_type="application/json")


def gemini_model(model: str) -> dict[str, object]:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model,
        "description": f"{model} via omnirelay",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": GENERATION_METHODS,
    }


def gemini_model_list(gateway: Gateway, key: KeyRecord) -> Response:
    models = [gemini_model(m) for m in gateway.registry.models() if key.allows_model(m)]
    return Response(orjson.dumps({"models": models}), media_type="application/json")


def imagen_meter(body: dict[str, Any]) -> PredictionsMeter:
    """Imagen's ``:predict`` (``{"instances": [{"prompt"}], "parameters": {"sampleCount", ...}}``), checked as
    Google checks it; billed per image returned."""
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise GatewayError(ErrorCode.invalid_request, "* instances: must not be empty", param="instances")
    for instance in instances:
        prompt = instance.get("prompt") if isinstance(instance, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise GatewayError(ErrorCode.invalid_request, "* instances[0].prompt: is required", param="prompt")
    parameters = body.get("parameters") or {}
    count = parameters.get("sampleCount", 1) if isinstance(parameters, dict) else None
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= IMAGEN_MAX_SAMPLES:
        raise GatewayError(
            ErrorCode.invalid_request,
            f"* parameters.sampleCount: must be an integer from 1 to {IMAGEN_MAX_SAMPLES}",
            param="sampleCount",
        )
    return PredictionsMeter(count * len(instances), None, None)
