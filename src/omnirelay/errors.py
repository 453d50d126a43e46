"""One error type with a closed set of codes.

Tree::

    Exception
     └── GatewayError                 .code (ErrorCode), .message, .param, .status, .retry_after, .upstream_status
          └── (no subclasses: the code says what happened)

Each ``ErrorCode`` knows, in one table, its HTTP status, the format-neutral family that ``formats.errors``
renders in each client's vocabulary (OpenAI ``type``, Anthropic ``error.type``, Google ``status``), OpenAI's specific
``code`` string, whether failover may retry it, its log level, and what routing makes of it when an upstream
answered it: whom it blames (``Blame``: the request, the upstream key, or the channel) and whether the key is
beyond recovery (``permanent``: it gets disabled). Upstream failures are classified once, at the provider
boundary, from the HTTP status and the structured body (``formats.errors.upstream_error`` then
``ErrorCode.from_upstream``), never by searching message text. Messages must never contain an upstream secret:
callers build them from fixed text and public names only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Blame(Enum):
    """Whom routing holds an upstream failure against."""

    request = "request"
    """The call itself (a 4xx about its content): no failover, breakers unchanged."""
    key = "key"
    """The upstream key (rate limited, rejected, out of credit): the channel's next key may still serve."""
    channel = "channel"
    """The channel (5xx, timeout, refused connection, overloaded): a breaker failure; try the next channel."""


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    status: int
    family: str
    """The format-neutral code that ``formats.errors`` renders in each client's vocabulary."""
    openai_code: str | None
    """OpenAI's ``error.code`` where OpenAI has a specific one (SDK users branch on it)."""
    retryable: bool
    """May failover try another channel (and may the client's SDK retry)?"""
    log_level: str
    blame: Blame = Blame.request
    """Routing's reading when an upstream answered with this code."""
    permanent: str | None = None
    """Set when the upstream key will not recover by itself: the reason recorded when it is disabled."""


class ErrorCode(Enum):
    invalid_request = ErrorSpec(400, "invalid_request", None, False, "info")
    authentication = ErrorSpec(401, "authentication", "invalid_api_key", False, "info")
    insufficient_quota = ErrorSpec(429, "insufficient_quota", "insufficient_quota", False, "info")
    permission = ErrorSpec(403, "permission", "model_not_allowed", False, "info")
    not_priced = ErrorSpec(403, "permission", "model_not_priced", False, "warning")
    not_found = ErrorSpec(404, "not_found", "model_not_found", False, "info")
    request_too_large = ErrorSpec(413, "request_too_large", "request_too_large", False, "info")
    request_timeout = ErrorSpec(408, "invalid_request", "request_timeout", False, "info")
    """The client's body did not arrive within ``body_read_timeout_s`` (slow-loris)."""
    rate_limited = ErrorSpec(429, "rate_limited", "rate_limit_exceeded", True, "info", Blame.key)
    internal = ErrorSpec(500, "internal", None, False, "error")
    not_implemented = ErrorSpec(501, "not_implemented", "not_implemented", False, "info")
    upstream_error = ErrorSpec(502, "upstream_error", "upstream_error", True, "warning", Blame.channel)
    upstream_auth = ErrorSpec(
        502, "upstream_error", "upstream_error", True, "error", Blame.key, "the upstream rejected the key"
    )
    """The channel's key is invalid, revoked or its account deactivated: *our* credentials, not the client's."""
    upstream_quota = ErrorSpec(
        502, "upstream_error", "upstream_error", True, "error", Blame.key, "the upstream account has no credit"
    )
    """The channel's key has no credit left (OpenAI ``insufficient_quota``, Anthropic ``billing_error``, 402)."""
    no_channel = ErrorSpec(503, "overloaded", "no_available_channel", False, "warning")
    upstream_timeout = ErrorSpec(504, "upstream_timeout", "upstream_timeout", True, "warning", Blame.channel)
    overloaded = ErrorSpec(529, "overloaded", "overloaded", True, "warning", Blame.channel)

    @property
    def spec(self) -> ErrorSpec:
        return self.value

    @classmethod
    def from_upstream_status(cls, status: int) -> ErrorCode:
        """How an upstream HTTP status reaches our client when its body says nothing more. Upstream 401/403 mean
        *our* channel's credentials failed, which is not the client's fault: they become a 502 so an SDK does not
        tell its user that their key is bad."""
        return _UPSTREAM_STATUS.get(status) or (cls.upstream_error if status >= 500 else cls.invalid_request)

    @classmethod
    def from_upstream(cls, status: int, vendor_code: str | None) -> ErrorCode:
        """An upstream error answer, as ``formats.errors.upstream_error`` read it (``vendor_code`` is one of its
        format-neutral code names), to the code the client sees and routing acts on."""
        if vendor_code is not None:
            code = _UPSTREAM_CODES.get(vendor_code)
            if code is not None:
                return code
        return cls.from_upstream_status(status)


_UPSTREAM_CODES: dict[str, ErrorCode] = {
    "invalid_request": ErrorCode.invalid_request,
    "authentication": ErrorCode.upstream_auth,
    "insufficient_quota": ErrorCode.upstream_quota,
    "permission": ErrorCode.upstream_error,
    "not_found": ErrorCode.not_found,
    "request_too_large": ErrorCode.request_too_large,
    "rate_limited": ErrorCode.rate_limited,
    "upstream_error": ErrorCode.upstream_error,
    "internal": ErrorCode.upstream_error,
    "upstream_timeout": ErrorCode.upstream_timeout,
    "overloaded": ErrorCode.overloaded,
    "not_implemented": ErrorCode.not_implemented,
}
"""``formats.errors`` code names (what the vendor's body says) → gateway codes. Credentials and credit are the
channel's business: the client sees a 502 and routing disables the key."""

_UPSTREAM_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.invalid_request,
    401: ErrorCode.upstream_auth,
    402: ErrorCode.upstream_quota,
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
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.status = status or code.spec.status
        self.retry_after = retry_after
        self.type_override = type_override
        self.headers = headers or {}
        self.upstream_status = upstream_status
        """The HTTP status the upstream answered, when this error is its answer."""

    @property
    def retryable(self) -> bool:
        return self.code.spec.retryable
