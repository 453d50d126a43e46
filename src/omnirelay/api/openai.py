"""The OpenAI-compatible surface: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/models``.

Handlers parse only what routing and billing need (model, stream); the body itself goes on as bytes.
"""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.api.anthropic import anthropic_key, anthropic_model, anthropic_model_list
from omnirelay.api.common import bearer_token, client_ip, read_json_body
from omnirelay.api.errors import error_response
from omnirelay.api.gemini import GeminiSurface, is_gemini_request
from omnirelay.api.media import MediaSurface
from omnirelay.api.relay import Call, Relay
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.formats.ir import InvalidRequest
from omnirelay.formats.rerank import check_rerank_request
from omnirelay.gateway import Gateway

# Fields without which the endpoint cannot work, named in the 400 as OpenAI names them.
REQUIRED_FIELDS = {
    "chat": ("model", "messages"),
    "completions": ("model", "prompt"),
    "embeddings": ("model", "input"),
    "responses": ("model", "input"),
    "rerank": ("model", "query", "documents"),
}


class OpenAISurface:
    def __init__(self, gateway: Gateway, relay: Relay, gemini: GeminiSurface) -> None:
        self.gateway = gateway
        self.relay = relay
        self.gemini = gemini
        self.media = MediaSurface(gateway, relay)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self._endpoint("chat"), methods=["POST"]),
            Route("/v1/completions", self._endpoint("completions"), methods=["POST"]),
            Route("/v1/embeddings", self._endpoint("embeddings"), methods=["POST"]),
            Route("/v1/responses", self._endpoint("responses"), methods=["POST"]),
            Route("/v1/rerank", self._endpoint("rerank"), methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{target:path}", self.get_model, methods=["GET"]),
            *self.media.routes(),
        ]

    def _endpoint(self, endpoint: str):  # type: ignore[no-untyped-def]
        async def handle(request: Request) -> Response:
            try:
                return await self._relay(request, endpoint)
            except GatewayError as err:
                return error_response("openai", err)

        return handle

    async def _relay(self, request: Request, endpoint: str) -> Response:
        ip = client_ip(request)
        key = self.gateway.authenticate(bearer_token(request), ip)
        raw, body = await read_json_body(request, self.gateway.settings.max_body_bytes)
        for name in REQUIRED_FIELDS[endpoint]:
            if body.get(name) in (None, "", []):
                raise GatewayError(ErrorCode.invalid_request, f"Missing required parameter: '{name}'.", param=name)
        model = body["model"]
        if not isinstance(model, str):
            raise GatewayError(ErrorCode.invalid_request, "'model' must be a string.", param="model")
        if endpoint == "chat" and not isinstance(body["messages"], list):
            raise GatewayError(ErrorCode.invalid_request, "'messages' must be an array.", param="messages")
        if endpoint == "rerank":
            try:
                check_rerank_request(body)
            except InvalidRequest as exc:
                raise GatewayError(ErrorCode.invalid_request, exc.message, param=exc.param) from None
        self.gateway.check_model(key, model)
        call = Call(
            surface="openai",
            endpoint=endpoint,
            key=key,
            model=model,
            stream=body.get("stream") is True,
            body=body,
            raw=raw,
            client_ip=ip,
        )
        return await self.relay.handle(call)

    def _visible_models(self, request: Request) -> list[str]:
        key = self.gateway.authenticate(bearer_token(request), client_ip(request))
        return [m for m in self.gateway.registry.models() if key.allows_model(m)]

    async def list_models(self, request: Request) -> Response:
        """Anthropic and Gemini SDKs read the same path; their headers say which shape they expect."""
        if is_gemini_request(request):
            return await self.gemini.list_models(request)
        try:
            if "anthropic-version" in request.headers:
                key = self.gateway.authenticate(anthropic_key(request), client_ip(request))
                return anthropic_model_list(self.gateway, key)
            models = self._visible_models(request)
        except GatewayError as err:
            return error_response("anthropic" if "anthropic-version" in request.headers else "openai", err)
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "omnirelay"} for m in models]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")

    async def get_model(self, request: Request) -> Response:
        if is_gemini_request(request):
            return await self.gemini.get_model(request)
        if "anthropic-version" in request.headers:
            try:
                key = self.gateway.authenticate(anthropic_key(request), client_ip(request))
                return anthropic_model(self.gateway, key, request.path_params["target"])
            except GatewayError as err:
                return error_response("anthropic", err)
        model = request.path_params["target"]
        try:
            if model not in self._visible_models(request):
                raise GatewayError(ErrorCode.not_found, f"The model '{model}' does not exist", param="model")
        except GatewayError as err:
            return error_response("openai", err)
        payload = {"id": model, "object": "model", "created": int(time.time()), "owned_by": "omnirelay"}
        return Response(orjson.dumps(payload), media_type="application/json")
