"""What every inbound surface does the same way: find the key, read the body once, parse it with orjson."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from omnirelay.errors import ErrorCode, GatewayError

RAW_HEADERS = "omnirelay.raw_headers"
"""Where the scope keeps its header lines as a dict (``raw_headers``)."""


def raw_headers(scope: MutableMapping[str, Any]) -> dict[bytes, bytes]:
    """The request's header lines as one dict of lower-case name to value (the first line of a repeated name),
    made once per request and kept in the scope. Starlette's ``Headers`` scans and lower-cases every line on each
    lookup; a relayed call looks up several."""
    headers = scope.get(RAW_HEADERS)
    if headers is None:
        headers = scope[RAW_HEADERS] = dict(reversed(scope["headers"]))
    return headers  # type: ignore[no-any-return]


def header(request: Request, name: bytes) -> str | None:
    """One request header by its lower-case name."""
    value = raw_headers(request.scope).get(name)
    return None if value is None else value.decode("latin-1")


def bearer_token(request: Request) -> str | None:
    value = header(request, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def client_ip(request: Request) -> str | None:
    client = request.scope.get("client")
    return client[0] if client else None


MAX_JSON_DEPTH = 64
"""Deepest nesting of objects and arrays a request body may have (tool schemas nest a dozen levels at most)."""
MAX_JSON_ITEMS = 50_000
"""Most entries one array or object of a request body may hold (messages, parts, embedding inputs...)."""


def check_json_shape(raw: bytes, body: object) -> None:
    """Refuse bodies nested deeper than ``MAX_JSON_DEPTH`` or with a container of more than ``MAX_JSON_ITEMS``
    entries, before any code walks them. A body with fewer brackets than the depth limit and fewer commas than the
    item limit cannot break either, which two C-speed counts tell: an ordinary call never walks its body here."""
    if raw.count(b"{") + raw.count(b"[") <= MAX_JSON_DEPTH and raw.count(b",") < MAX_JSON_ITEMS:
        return
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise GatewayError(
                ErrorCode.invalid_request, f"The request body nests deeper than {MAX_JSON_DEPTH} levels."
            )
        if len(children) > MAX_JSON_ITEMS:
            raise GatewayError(
                ErrorCode.request_too_large,
                f"An array or object of the request body holds more than {MAX_JSON_ITEMS} entries.",
            )
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit``. Reads the ASGI messages itself: Starlette's
    ``Request.stream`` is an async generator, a few times the cost of this loop for the one message a body
    usually is."""
    receive = request.receive
    message = await receive()
    if message["type"] != "http.request":
        raise ClientDisconnect()
    raw = message.get("body", b"")
    if not message.get("more_body", False):
        if len(raw) > limit:
            raise GatewayError(ErrorCode.request_too_large, f"Request body is larger than {limit} bytes.")
        return raw  # type: ignore[no-any-return]
    chunks = [raw]
    size = len(raw)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise GatewayError(ErrorCode.request_too_large, f"Request body is larger than {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_json_body(request: Request, limit: int) -> tuple[bytes, dict[str, Any]]:
    declared = header(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(ErrorCode.request_too_large, f"Request body is larger than {limit} bytes.")
    raw = await read_body(request, limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(ErrorCode.invalid_request, f"The request body is not valid JSON: {exc.msg}.") from None
    if not isinstance(body, dict):
        raise GatewayError(ErrorCode.invalid_request, "The request body must be a JSON object.")
    check_json_shape(raw, body)
    return raw, body
