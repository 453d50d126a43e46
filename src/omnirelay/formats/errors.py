"""Error bodies in each client format, and upstream vendor errors read back into the gateway's codes.

The gateway's codes (``omnirelay.errors.ErrorCode`` values) are plain strings here so this module needs
nothing from the gateway: ``invalid_request authentication permission not_found request_too_large rate_limited
insufficient_quota upstream_error upstream_timeout overloaded not_implemented internal``.

Classification reads the status and the structured body (``error.type``, ``error.code``, ``error.status``,
``details[].reason``), never the message text. An upstream 401/403 is about the *channel's* key, not the
client's: the caller decides whether to show it as such or as ``upstream_error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import orjson

from omnirelay.formats._json import list_or_empty, obj_or_none, str_or_none
from omnirelay.formats.ir import Format, JSONObject
from omnirelay.formats.sse import encode_data, encode_event

CODE_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "request_too_large": 413,
    "rate_limited": 429,
    "insufficient_quota": 429,
    "upstream_error": 502,
    "upstream_timeout": 504,
    "overloaded": 503,
    "not_implemented": 501,
    "internal": 500,
}

STATUS_CODE: dict[int, str] = {
    400: "invalid_request",
    401: "authentication",
    402: "insufficient_quota",
    403: "permission",
    404: "not_found",
    408: "upstream_timeout",
    409: "upstream_error",
    413: "request_too_large",
    422: "invalid_request",
    429: "rate_limited",
    500: "upstream_error",
    501: "not_implemented",
    502: "upstream_error",
    503: "overloaded",
    504: "upstream_timeout",
    529: "overloaded",
}
"""An upstream HTTP status → gateway code, when the body says nothing more precise."""

# --- client-facing vocabularies -----------------------------------------------------------------------------

OPENAI_TYPES: dict[str, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("invalid_request_error", "invalid_api_key"),
    "permission": ("permission_error", None),
    "not_found": ("invalid_request_error", "not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limited": ("requests", "rate_limit_exceeded"),
    "insufficient_quota": ("insufficient_quota", "insufficient_quota"),
    "upstream_error": ("server_error", None),
    "upstream_timeout": ("server_error", "timeout"),
    "overloaded": ("server_error", "overloaded"),
    "not_implemented": ("invalid_request_error", "not_implemented"),
    "internal": ("server_error", None),
}
"""code → OpenAI ``error.type`` and ``error.code`` (OpenAI's own values where it has them, see O5)."""

ANTHROPIC_TYPES: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "request_too_large",
    "rate_limited": "rate_limit_error",
    "insufficient_quota": "billing_error",
    "upstream_error": "api_error",
    "upstream_timeout": "timeout_error",
    "overloaded": "overloaded_error",
    "not_implemented": "invalid_request_error",
    "internal": "api_error",
}

GEMINI_STATUSES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
"""HTTP status → google.rpc code name, as Gemini pairs them (G5)."""


def _code_str(code: str | Enum) -> str:
    value = code.value if isinstance(code, Enum) else code
    return str(value)


def error_object(fmt: Format, status: int, code: str | Enum, message: str, param: str | None = None) -> JSONObject:
    """The error as a JSON object in ``fmt``'s shape (see :func:`error_body`)."""
    name = _code_str(code)
    if fmt == "openai":
        kind, vendor_code = OPENAI_TYPES.get(name, ("server_error" if status >= 500 else "invalid_request_error", None))
        return {"error": {"message": message, "type": kind, "param": param, "code": vendor_code or name}}
    if fmt == "anthropic":
        kind = ANTHROPIC_TYPES.get(name, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if fmt == "ideogram":  # type: ignore[comparison-overlap]  # image vendors: formats.ir.Format is chat-only
        return {"error": message}
    if fmt == "recraft":  # type: ignore[comparison-overlap]
        return {"code": RECRAFT_CODES.get(name, name), "message": message}
    rpc = GEMINI_STATUSES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return {"error": {"code": status, "message": message, "status": rpc}}


def error_body(fmt: Format, status: int, code: str | Enum, message: str, param: str | None = None) -> bytes:
    """OpenAI ``{"error":{"message","type","param","code"}}``, Anthropic ``{"type":"error","error":{"type",
    "message"}}``, Gemini ``{"error":{"code","message","status"}}``."""
    return orjson.dumps(error_object(fmt, status, code, message, param))


def error_event(fmt: Format, code: str | Enum, message: str, *, gemini_sse: bool = True) -> bytes:
    """A mid-stream error in ``fmt``'s framing. Gemini's JSON-array form gets the bare object (the caller
    closes the array)."""
    status = CODE_STATUS.get(_code_str(code), 500)
    payload = orjson.dumps(error_object(fmt, status, code, message))
    if fmt == "anthropic":
        return encode_event("error", payload)
    if fmt == "gemini":
        return b"data: " + payload + b"\r\n\r\n" if gemini_sse else payload
    return encode_data(payload)


# --- upstream errors → gateway codes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamError:
    code: str
    """The gateway code this upstream failure maps to."""
    message: str
    vendor_type: str | None = None
    """The vendor's own type/status (``overloaded_error``, ``RESOURCE_EXHAUSTED``, ``insufficient_quota``)."""
    param: str | None = None
    retry_after: float | None = None
    """Seconds to wait, when the body says (Gemini ``RetryInfo.retryDelay``); headers are the caller's."""


OPENAI_VENDOR_CODES: dict[str, str] = {
    "insufficient_quota": "insufficient_quota",
    "rate_limit_exceeded": "rate_limited",
    "invalid_api_key": "authentication",
    "model_not_found": "not_found",
    "context_length_exceeded": "invalid_request",
    "invalid_request_error": "invalid_request",
    "server_error": "upstream_error",
    "overloaded": "overloaded",
    "requests": "rate_limited",
    "tokens": "rate_limited",
}
"""OpenAI ``error.code`` / ``error.type`` values that say more than the status (a 429 may be quota, not
rate)."""

ANTHROPIC_VENDOR_TYPES: dict[str, str] = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "billing_error": "insufficient_quota",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "request_too_large": "request_too_large",
    "rate_limit_error": "rate_limited",
    "timeout_error": "upstream_timeout",
    "api_error": "upstream_error",
    "overloaded_error": "overloaded",
}

ANTHROPIC_DETAIL_CODES: dict[str, str] = {
    "enforced_spend_limit_reached": "insufficient_quota",
    "contract_spend_limit_reached": "insufficient_quota",
}

GEMINI_VENDOR_STATUSES: dict[str, str] = {
    "INVALID_ARGUMENT": "invalid_request",
    "FAILED_PRECONDITION": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "UNAUTHENTICATED": "authentication",
    "PERMISSION_DENIED": "permission",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "rate_limited",
    "DEADLINE_EXCEEDED": "upstream_timeout",
    "UNAVAILABLE": "overloaded",
    "INTERNAL": "upstream_error",
    "UNIMPLEMENTED": "not_implemented",
    "ABORTED": "upstream_error",
    "CANCELLED": "upstream_error",
}

GEMINI_REASONS: dict[str, str] = {
    "API_KEY_INVALID": "authentication",
    "API_KEY_SERVICE_BLOCKED": "permission",
}
"""``details[@type=ErrorInfo].reason`` values that override the status (a bad key is a 400 on Gemini)."""


def _load(body: bytes | JSONObject) -> JSONObject:
    if isinstance(body, dict):
        return body
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _fallback(status: int) -> str:
    return STATUS_CODE.get(status, "upstream_error" if status >= 500 or status < 400 else "invalid_request")


def _message(error: JSONObject | None, body: bytes | JSONObject, status: int) -> str:
    message = str_or_none(error.get("message")) if error else None
    if message:
        return message
    if isinstance(body, bytes) and body.strip():
        return body[:500].decode("utf-8", errors="replace")
    return f"upstream returned HTTP {status}"


def upstream_error_from_openai(status: int, body: bytes | JSONObject) -> UpstreamError:
    error = obj_or_none(_load(body).get("error"))
    vendor_code = str_or_none(error.get("code")) if error else None
    vendor_type = str_or_none(error.get("type")) if error else None
    code = OPENAI_VENDOR_CODES.get(vendor_code or "")
    if code is None and status < 400:  # mid-stream: no status of its own, the type must say it
        code = OPENAI_VENDOR_CODES.get(vendor_type or "")
    if code is None:
        code = _fallback(status)
    if status == 429 and vendor_type == "insufficient_quota":
        code = "insufficient_quota"
    param = str_or_none(error.get("param")) if error else None
    return UpstreamError(code, _message(error, body, status), vendor_code or vendor_type, param)


def upstream_error_from_anthropic(status: int, body: bytes | JSONObject) -> UpstreamError:
    error = obj_or_none(_load(body).get("error"))
    vendor_type = str_or_none(error.get("type")) if error else None
    code = ANTHROPIC_VENDOR_TYPES.get(vendor_type or "") or _fallback(status)
    details = obj_or_none(error.get("details")) if error else None
    detail_code = str_or_none(details.get("error_code")) if details else None
    code = ANTHROPIC_DETAIL_CODES.get(detail_code or "", code)
    return UpstreamError(code, _message(error, body, status), vendor_type)


def _retry_delay(value: str) -> float | None:
    if value.endswith("s"):
        try:
            return float(value[:-1])
        except ValueError:
            return None
    return None


def upstream_error_from_gemini(status: int, body: bytes | JSONObject) -> UpstreamError:
    loaded = _load(body)
    if not loaded and isinstance(body, bytes) and body.lstrip().startswith(b"["):
        try:  # an error inside the JSON-array stream form
            items = orjson.loads(body)
            loaded = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
        except orjson.JSONDecodeError:
            loaded = {}
    error = obj_or_none(loaded.get("error"))
    rpc = str_or_none(error.get("status")) if error else None
    code = GEMINI_VENDOR_STATUSES.get(rpc or "") or _fallback(status)
    retry_after: float | None = None
    for item in list_or_empty(error.get("details") if error else None):
        detail = obj_or_none(item) or {}
        code = GEMINI_REASONS.get(str_or_none(detail.get("reason")) or "", code)
        delay = str_or_none(detail.get("retryDelay"))
        if delay is not None:
            retry_after = _retry_delay(delay)
    return UpstreamError(code, _message(error, body, status), rpc, retry_after=retry_after)


RECRAFT_CODES: dict[str, str] = {
    "invalid_request": "invalid_parameter",
    "authentication": "unauthorized",
    "insufficient_quota": "not_enough_credits",
    "not_found": "not_found",
    "request_too_large": "request_too_large",
    "rate_limited": "too_many_requests",
}
"""Gateway code → Recraft's ``code`` (``{"code", "message"}`` bodies); other codes keep their own name."""

RECRAFT_VENDOR_CODES: dict[str, str] = {value: key for key, value in RECRAFT_CODES.items()}


def upstream_error_from_ideogram(status: int, body: bytes | JSONObject) -> UpstreamError:
    """Ideogram answers ``{"error": "..."}`` (or FastAPI's ``{"detail": ...}``); the status carries the meaning
    (422 is its safety check, a request error like any 400)."""
    loaded = _load(body)
    text = str_or_none(loaded.get("error")) or str_or_none(loaded.get("detail"))
    return UpstreamError(_fallback(status), text or _message(None, body, status))


def upstream_error_from_recraft(status: int, body: bytes | JSONObject) -> UpstreamError:
    loaded = _load(body)
    vendor_code = str_or_none(loaded.get("code"))
    code = RECRAFT_VENDOR_CODES.get(vendor_code or "") or _fallback(status)
    return UpstreamError(code, _message(loaded, body, status), vendor_code)


UPSTREAM_PARSERS = {
    "openai": upstream_error_from_openai,
    "anthropic": upstream_error_from_anthropic,
    "gemini": upstream_error_from_gemini,
    "ideogram": upstream_error_from_ideogram,
    "recraft": upstream_error_from_recraft,
}


def upstream_error(fmt: Format, status: int, body: bytes | JSONObject) -> UpstreamError:
    return UPSTREAM_PARSERS[fmt](status, body)
