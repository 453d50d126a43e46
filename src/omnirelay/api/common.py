"""What every inbound surface does the same way: find the key, read the body once, parse it with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from omnirelay.errors import ErrorCode, GatewayError


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def read_json_body(request: Request, limit: int) -> tuple[bytes, dict[str, Any]]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(ErrorCode.request_too_large, f"Request body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GatewayError(ErrorCode.request_too_large, f"Request body is larger than {limit} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(ErrorCode.invalid_request, f"The request body is not valid JSON: {exc.msg}.") from None
    if not isinstance(body, dict):
        raise GatewayError(ErrorCode.invalid_request, "The request body must be a JSON object.")
    return raw, body
