"""A ``RateDecision`` as OpenAI's rate-limit headers.

Sent on every response, success included (OpenAI does): ``x-ratelimit-limit-requests``/``-tokens``,
``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` for the tightest scope, each pair only when some scope
has that limit. Reset values are Go ``time.Duration`` strings (``1s``, ``6m0s``, ``20ms``, ``1m30.5s``),
rounded up to the millisecond. On a rejection that can succeed later, ``retry-after`` (whole seconds, rounded
up, at least 1) and ``retry-after-ms`` (which the OpenAI SDKs prefer) are added; a request that can never fit
(``retry_after_s`` is infinite) gets neither, so clients do not retry it.
"""

from __future__ import annotations

import math

from omnirelay.limits.base import RateDecision

_DURATIONS: dict[float, str] = {}
"""Memo of ``format_duration``: a call's resets are mostly the same few values (a full window, 0)."""
_DURATIONS_MAX = 4096
_DURATION_BYTES: dict[float, bytes] = {}
"""The same memo, encoded, for ``rate_limit_header_lines``."""


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` at millisecond resolution, rounded up."""
    text = _DURATIONS.get(seconds)
    if text is None:
        text = _go_duration(seconds)
        if len(_DURATIONS) < _DURATIONS_MAX:
            _DURATIONS[seconds] = text
    return text


def _go_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite duration: {seconds}")
    ms = math.ceil(seconds * 1000 - 1e-6) if seconds > 0 else 0
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    whole, frac = divmod(ms, 1000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    sec = f"{secs}.{frac:03d}".rstrip("0") if frac else str(secs)
    if hours:
        return f"{hours}h{minutes}m{sec}s"
    if minutes:
        return f"{minutes}m{sec}s"
    return f"{sec}s"


def rate_limit_headers(decision: RateDecision) -> dict[str, str]:
    """Lower-case header names to values, in OpenAI's order."""
    requests, tokens = decision.requests, decision.tokens
    durations = _DURATIONS  # format_duration's memo, read here first: a hit costs no call
    if requests is not None and tokens is not None:  # the usual key: one dict display
        headers = {
            "x-ratelimit-limit-requests": str(requests.limit),
            "x-ratelimit-limit-tokens": str(tokens.limit),
            "x-ratelimit-remaining-requests": str(requests.remaining),
            "x-ratelimit-remaining-tokens": str(tokens.remaining),
            "x-ratelimit-reset-requests": durations.get(requests.reset_s) or format_duration(requests.reset_s),
            "x-ratelimit-reset-tokens": durations.get(tokens.reset_s) or format_duration(tokens.reset_s),
        }
    else:
        headers = {}
        if requests is not None:
            headers["x-ratelimit-limit-requests"] = str(requests.limit)
            headers["x-ratelimit-remaining-requests"] = str(requests.remaining)
            headers["x-ratelimit-reset-requests"] = format_duration(requests.reset_s)
        if tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(tokens.limit)
            headers["x-ratelimit-remaining-tokens"] = str(tokens.remaining)
            headers["x-ratelimit-reset-tokens"] = format_duration(tokens.reset_s)
    if not decision.allowed:
        retry = decision.retry_after_s
        if math.isfinite(retry):
            headers["retry-after"] = str(max(1, math.ceil(retry - 1e-9)))
            headers["retry-after-ms"] = str(max(1, math.ceil(retry * 1000 - 1e-6)))
    return headers


def rate_limit_header_lines(decision: RateDecision) -> list[tuple[bytes, bytes]]:
    """``rate_limit_headers`` as the encoded header lines an ASGI answer carries, in the same order. The usual
    admitted call (both limits, no retry) is built here as bytes directly: encoding six name/value pairs per call
    cost more than making them."""
    requests, tokens = decision.requests, decision.tokens
    if requests is None or tokens is None or not decision.allowed:
        return [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in rate_limit_headers(decision).items()
        ]
    durations = _DURATION_BYTES
    return [
        (b"x-ratelimit-limit-requests", b"%d" % requests.limit),
        (b"x-ratelimit-limit-tokens", b"%d" % tokens.limit),
        (b"x-ratelimit-remaining-requests", b"%d" % requests.remaining),
        (b"x-ratelimit-remaining-tokens", b"%d" % tokens.remaining),
        (b"x-ratelimit-reset-requests", durations.get(requests.reset_s) or _duration_bytes(requests.reset_s)),
        (b"x-ratelimit-reset-tokens", durations.get(tokens.reset_s) or _duration_bytes(tokens.reset_s)),
    ]


def _duration_bytes(seconds: float) -> bytes:
    text = format_duration(seconds).encode("latin-1")
    if len(_DURATION_BYTES) < _DURATIONS_MAX:
        _DURATION_BYTES[seconds] = text
    return text
