"""Sending a request to an upstream over the shared, pooled aiohttp session.

Transport failures are classified here, once: a refused or reset connection is ``upstream_error`` (502), a timeout
``upstream_timeout`` (504). Messages name the channel, never its URL credentials or keys.
"""

from __future__ import annotations

import asyncio

import aiohttp

from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.providers.kinds import CHANNEL_KINDS
from omnirelay.routing.registry import Candidate


def create_session(limit: int = 1000) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
    # Bodies are decompressed here and re-sent plain: the client-facing response sets its own encoding headers.
    return aiohttp.ClientSession(connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",))


async def open_upstream(
    session: aiohttp.ClientSession,
    candidate: Candidate,
    path: str,
    body: bytes,
    *,
    extra_headers: dict[str, str] | None = None,
    method: str = "POST",
) -> aiohttp.ClientResponse:
    """Send the request and return once the response headers arrived; the caller reads and releases the body."""
    channel = candidate.channel
    kind = CHANNEL_KINDS[channel.type]
    headers = {"Content-Type": "application/json", **channel.headers, **kind.auth_headers(candidate.api_key)}
    if extra_headers:
        headers.update(extra_headers)
    timeout = aiohttp.ClientTimeout(total=None, connect=channel.connect_timeout_s, sock_read=channel.timeout_s)
    try:
        return await session.request(
            method, channel.base_url + path, data=body, headers=headers, timeout=timeout, allow_redirects=False
        )
    except TimeoutError as exc:
        raise GatewayError(ErrorCode.upstream_timeout, f"upstream channel '{channel.name}' timed out") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise GatewayError(
            ErrorCode.upstream_error, f"upstream channel '{channel.name}' is unreachable ({type(exc).__name__})"
        ) from exc
    except asyncio.CancelledError:
        raise
