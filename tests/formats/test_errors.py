"""Error bodies per client format, and upstream vendor errors (O5, A5, G5 bodies) classified into gateway codes."""

from __future__ import annotations

import orjson
import pytest
from anthropic.types import ErrorResponse

from omnirelay.formats.errors import (
    CODE_STATUS,
    error_body,
    error_event,
    upstream_error_from_anthropic,
    upstream_error_from_gemini,
    upstream_error_from_openai,
)

CODES = list(CODE_STATUS)


@pytest.mark.parametrize("code", CODES)
def test_error_bodies_for_every_code(code: str) -> None:
    status = CODE_STATUS[code]
    openai = orjson.loads(error_body("openai", status, code, "nope", "messages"))
    assert openai["error"]["message"] == "nope" and openai["error"]["param"] == "messages"
    assert isinstance(openai["error"]["type"], str) and isinstance(openai["error"]["code"], str)
    anthropic = orjson.loads(error_body("anthropic", status, code, "nope"))
    if code != "request_too_large":  # Cloudflare's type, not in the SDK's ErrorType
        ErrorResponse.model_validate(anthropic)
    gemini = orjson.loads(error_body("gemini", status, code, "nope"))
    assert gemini["error"]["code"] == status and gemini["error"]["status"].isupper()


def test_vocabularies() -> None:
    assert orjson.loads(error_body("anthropic", 529, "overloaded", "Overloaded")) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert orjson.loads(error_body("gemini", 429, "rate_limited", "slow"))["error"]["status"] == "RESOURCE_EXHAUSTED"
    openai = orjson.loads(error_body("openai", 401, "authentication", "bad key"))["error"]
    assert (openai["type"], openai["code"]) == ("invalid_request_error", "invalid_api_key")
    assert error_event("anthropic", "overloaded", "x").startswith(b"event: error\ndata: ")
    assert error_event("openai", "internal", "x").startswith(b'data: {"error":')
    assert error_event("gemini", "internal", "x").endswith(b"}\r\n\r\n")


def _openai(kind: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": "m", "type": kind, "param": param, "code": code}})


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, _openai("invalid_request_error", "invalid_api_key"), "authentication"),
        (429, _openai("tokens", "rate_limit_exceeded"), "rate_limited"),
        (429, _openai("insufficient_quota", "insufficient_quota"), "insufficient_quota"),
        (400, _openai("invalid_request_error", "context_length_exceeded", "messages"), "invalid_request"),
        (500, _openai("server_error", None), "upstream_error"),
        (503, b"<html>bad gateway</html>", "overloaded"),
    ],
)
def test_openai_upstream_errors(status: int, body: bytes, code: str) -> None:
    parsed = upstream_error_from_openai(status, body)
    assert parsed.code == code
    assert parsed.message


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (400, {"type": "invalid_request_error", "message": "messages.0: bad"}, "invalid_request"),
        (401, {"type": "authentication_error", "message": "invalid x-api-key"}, "authentication"),
        (429, {"type": "rate_limit_error", "message": "slow down"}, "rate_limited"),
        (
            429,
            {"type": "rate_limit_error", "message": "spend", "details": {"error_code": "enforced_spend_limit_reached"}},
            "insufficient_quota",
        ),
        (529, {"type": "overloaded_error", "message": "Overloaded"}, "overloaded"),
        (504, {"type": "timeout_error", "message": "timeout"}, "upstream_timeout"),
        (402, {"type": "billing_error", "message": "pay"}, "insufficient_quota"),
    ],
)
def test_anthropic_upstream_errors(status: int, error: dict[str, object], code: str) -> None:
    body = orjson.dumps({"type": "error", "error": error, "request_id": "req_1"})
    parsed = upstream_error_from_anthropic(status, body)
    assert (parsed.code, parsed.message, parsed.vendor_type) == (code, error["message"], error["type"])


def test_gemini_upstream_errors() -> None:
    bad_key = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        }
    }
    assert upstream_error_from_gemini(400, orjson.dumps(bad_key, option=orjson.OPT_INDENT_2)).code == "authentication"
    quota = {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "57s"}],
        }
    }
    parsed = upstream_error_from_gemini(429, orjson.dumps(quota))
    assert (parsed.code, parsed.retry_after, parsed.vendor_type) == ("rate_limited", 57.0, "RESOURCE_EXHAUSTED")
    denied = {"error": {"code": 403, "message": "unregistered callers", "status": "PERMISSION_DENIED"}}
    assert upstream_error_from_gemini(403, orjson.dumps(denied)).code == "permission"
    assert upstream_error_from_gemini(503, b'[{"error": {"code": 503, "status": "UNAVAILABLE"}}]').code == "overloaded"
    assert upstream_error_from_gemini(504, b"").code == "upstream_timeout"
