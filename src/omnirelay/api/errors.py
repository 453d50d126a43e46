"""Rendering a ``GatewayError`` in the shape of the client's API."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from omnirelay.errors import GatewayError
from omnirelay.formats.errors import error_object
from omnirelay.providers.kinds import WireFormat


def error_payload(surface: WireFormat, err: GatewayError) -> bytes:
    spec = err.code.spec
    payload = error_object(surface, err.status, spec.family, err.message, err.param)
    if surface == "openai":
        detail = payload["error"]
        assert isinstance(detail, dict)
        detail["code"] = spec.openai_code
        if err.type_override:
            detail["type"] = err.type_override
    return orjson.dumps(payload)


def error_response(surface: WireFormat, err: GatewayError, request_id: str | None = None) -> Response:
    headers = dict(err.headers)
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
    if request_id:
        headers["x-request-id"] = request_id
    if not err.retryable:
        # The official SDKs retry 408/409/429/5xx on their own; this tells them a retry cannot help.
        headers["x-should-retry"] = "false"
    return Response(error_payload(surface, err), status_code=err.status, headers=headers, media_type="application/json")
