"""One error type with a closed set of codes.

Tree::

    Exception
     └── GatewayError                 .code (ErrorCode), .message, .param, .status, .retry_after
          └── (no subclasses: the code says what happened)

Each ``ErrorCode`` knows, in one table, its HTTP status, the OpenAI ``type`` and ``code`` strings, the Anthropic
error ``type``, Google's ``status`` word, whether failover may retry it, and its log level. Upstream failures are
classified once, at the provider boundary, from the HTTP status (``ErrorCode.from_upstream_status``), never by
searching message text. Messages must never contain an upstream secret: callers build them from fixed text and
public names only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    status: int
    openai_type: str
    openai_code: str | None
    anthropic_type: str
    google_status: str
    retryable: bool
    log_level: str


class ErrorCode(Enum):
    invalid_request = ErrorSpec(
        400, "invalid_request_error", None, "invalid_request_error", "INVALID_ARGUMENT", False, "info"
    )
    authentication = ErrorSpec(
        401, "invalid_request_error", "invalid_api_key", "authentication_error", "UNAUTHENTICATED", False, "info"
    )
    insufficient_quota = ErrorSpec(
        402, "insufficient_quota", "insufficient_quota", "billing_error", "RESOURCE_EXHAUSTED", False, "info"
    )
    permission = ErrorSpec(
        403, "invalid_request_error", "model_not_allowed", "permission_error", "PERMISSION_DENIED", False, "info"
    )
    not_found = ErrorSpec(
        404, "invalid_request_error", "model_not_found", "not_found_error", "NOT_FOUND", False, "info"
    )
    request_too_large = ErrorSpec(
        413, "invalid_request_error", "request_too_large", "request_too_large", "INVALID_ARGUMENT", False, "info"
    )
    rate_limited = ErrorSpec(
        429, "requests", "rate_limit_exceeded", "rate_limit_error", "RESOURCE_EXHAUSTED", True, "info"
    )
    internal = ErrorSpec(500, "server_error", None, "api_error", "INTERNAL", False, "error")
    not_implemented = ErrorSpec(
        501, "invalid_request_error", "not_implemented", "invalid_request_error", "UNIMPLEMENTED", False, "info"
    )
    upstream_error = ErrorSpec(502, "server_error", "upstream_error", "api_error", "UNAVAILABLE", True, "warning")
    no_channel = ErrorSpec(
        503, "server_error", "no_available_channel", "overloaded_error", "UNAVAILABLE", False, "warning"
    )
    upstream_timeout = ErrorSpec(
        504, "server_error", "upstream_timeout", "api_error", "DEADLINE_EXCEEDED", True, "warning"
    )
    overloaded = ErrorSpec(529, "server_error", "overloaded", "overloaded_error", "UNAVAILABLE", True, "warning")

    @property
    def spec(self) -> ErrorSpec:
        return self.value

    @classmethod
    def from_upstream_status(cls, status: int) -> ErrorCode:
        """How an upstream HTTP status reaches our client. Upstream 401/403 mean *our* channel's credentials failed,
        which is not the client's fault: they become a 502 so an SDK does not tell its user that their key is bad."""
        return _UPSTREAM_STATUS.get(status) or (cls.upstream_error if status >= 500 else cls.invalid_request)


_UPSTREAM_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.invalid_request,
    401: ErrorCode.upstream_error,
    403: ErrorCode.upstream_error,
    404: ErrorCode.not_found,
    408: ErrorCode.upstream_timeout,
    413: ErrorCode.request_too_large,
    422: ErrorCode.invalid_request,
    429: ErrorCode.rate_limited,
    503: ErrorCode.overloaded,
    504: ErrorCode.upstream_timeout,
    529: ErrorCode.overloaded,
}


class GatewayError(Exception):
    """Everything the gateway answers with an error status goes through this type."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        param: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        type_override: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.status = status or code.spec.status
        self.retry_after = retry_after
        self.type_override = type_override
        self.headers = headers or {}

    @property
    def retryable(self) -> bool:
        return self.code.spec.retryable
