"""The Anthropic Messages surface: ``/v1/messages``, ``/v1/messages/count_tokens``, and the Anthropic-shaped
model list (``GET /v1/models`` with an ``anthropic-version`` header).

Claude Code and the ``anthropic`` SDK send the key as ``x-api-key``; some tools send a bearer token instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.api.common import bearer_token, client_ip, header, read_json_body
from omnirelay.api.errors import error_response
from omnirelay.api.relay import Call, Relay
from omnirelay.billing import tokens
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.gateway import Gateway
from omnirelay.providers.kinds import CHANNEL_KINDS
from omnirelay.store.snapshot import KeyRecord

REQUIRED_FIELDS = {"chat": ("model", "max_tokens", "messages"), "count_tokens": ("model", "messages")}
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
"""Passed on to an Anthropic channel (betas switch features on); other channels never see them."""


def anthropic_key(request: Request) -> str | None:
    return header(request, b"x-api-key") or bearer_token(request)


class AnthropicSurface:
    def __init__(self, gateway: Gateway, relay: Relay) -> None:
        self.gateway = gateway
        self.relay = relay

    def routes(self) -> list[Route]:
        return [
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
        ]

    async def _parse(self, request: Request, endpoint: str) -> Call:
        ip = client_ip(request)
        key = self.gateway.authenticate(anthropic_key(request), ip)
        raw, body = await read_json_body(request, self.gateway.settings.max_body_bytes)
        for name in REQUIRED_FIELDS[endpoint]:
            if body.get(name) is None:
                raise GatewayError(ErrorCode.invalid_request, f"{name}: Field required", param=name)
        model = body["model"]
        if not isinstance(model, str):
            raise GatewayError(ErrorCode.invalid_request, "model: Input should be a valid string", param="model")
        self.gateway.check_model(key, model)
        return Call(
            surface="anthropic",
            endpoint=endpoint,
            key=key,
            model=model,
            stream=body.get("stream") is True,
            body=body,
            raw=raw,
            client_ip=ip,
            forward_headers={name: value for name in FORWARDED_HEADERS if (value := header(request, name.encode()))},
        )

    async def messages(self, request: Request) -> Response:
        try:
            return await self.relay.handle(await self._parse(request, "chat"))
        except GatewayError as err:
            return error_response("anthropic", err)

    async def count_tokens(self, request: Request) -> Response:
        """Exact from an Anthropic channel when the model has one; otherwise counted offline (an estimate)."""
        try:
            call = await self._parse(request, "count_tokens")
            candidates = self.gateway.registry.candidates(call.model)
            kind = CHANNEL_KINDS.get(candidates[0].channel.type) if candidates else None
            if kind is not None and kind.wire_format == "anthropic":
                return await self.relay.handle(call)
            count = tokens.count_anthropic_prompt(call.model, call.body)
            return Response(orjson.dumps({"input_tokens": count}), media_type="application/json")
        except GatewayError as err:
            return error_response("anthropic", err)


def _model_info(model: str, created: str) -> dict[str, str]:
    return {"type": "model", "id": model, "display_name": model, "created_at": created}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def anthropic_model(gateway: Gateway, key: KeyRecord, model: str) -> Response:
    """``GET /v1/models/{id}`` for an Anthropic client (the route is shared: see the OpenAI surface)."""
    if not key.allows_model(model) or not gateway.registry.serves(model):
        raise GatewayError(ErrorCode.not_found, f"model: {model}", param="model")
    return Response(orjson.dumps(_model_info(model, _now())), media_type="application/json")


def anthropic_model_list(gateway: Gateway, key: KeyRecord) -> Response:
    created = _now()
    models = [m for m in gateway.registry.models() if key.allows_model(m)]
    data = [_model_info(m, created) for m in models]
    payload = {
        "data": data,
        "has_more": False,
        "first_id": models[0] if models else None,
        "last_id": models[-1] if models else None,
    }
    return Response(orjson.dumps(payload), media_type="application/json")
