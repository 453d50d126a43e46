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


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` at millisecond resolution, rounded up."""
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
    headers: dict[str, str] = {}
    requests, tokens = decision.requests, decision.tokens
    if requests is not None:
        headers["x-ratelimit-limit-requests"] = str(requests.limit)
    if tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(tokens.limit)
    if requests is not None:
        headers["x-ratelimit-remaining-requests"] = str(requests.remaining)
    if tokens is not None:
        headers["x-ratelimit-remaining-tokens"] = str(tokens.remaining)
    if requests is not None:
        headers["x-ratelimit-reset-requests"] = format_duration(requests.reset_s)
    if tokens is not None:
        headers["x-ratelimit-reset-tokens"] = format_duration(tokens.reset_s)
    retry = decision.retry_after_s
    if not decision.allowed and math.isfinite(retry):
        headers["retry-after"] = str(max(1, math.ceil(retry - 1e-9)))
        headers["retry-after-ms"] = str(max(1, math.ceil(retry * 1000 - 1e-6)))
    return headers
