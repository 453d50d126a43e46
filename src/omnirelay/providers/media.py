"""Fetching images given by URL for upstreams that only take inline bytes (Gemini's ``inlineData``, for example).

Only where translation needs it, over http(s), up to ``max_bytes``, and never to a private, loopback, link-local
or otherwise non-global address: a client must not be able to make the gateway reach into its own network. The
host is resolved first and every address it resolves to is checked.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from urllib.parse import urlsplit

import aiohttp

from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.formats.ir import FetchedMedia


def _refuse(message: str) -> GatewayError:
    return GatewayError(ErrorCode.invalid_request, message, param="messages")


async def _check_host(host: str, port: int, allow_private: bool) -> None:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise _refuse(f"The image host '{host}' cannot be resolved.") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not allow_private and not address.is_global:
            raise _refuse(f"Refusing to fetch an image from a non-public address ('{host}').")


async def fetch_media(
    session: aiohttp.ClientSession,
    urls: tuple[str, ...],
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool = False,
) -> dict[str, FetchedMedia]:
    fetched: dict[str, FetchedMedia] = {}
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _refuse("Image URLs must be http or https.")
        await _check_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), allow_private)
        try:
            async with session.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise _refuse(f"The image URL answered HTTP {response.status}.")
                data = await response.content.read(max_bytes + 1)
                media_type = response.content_type
        except (aiohttp.ClientError, TimeoutError):
            raise _refuse("The image URL could not be fetched.") from None
        if len(data) > max_bytes:
            raise _refuse(f"The image at a URL is larger than {max_bytes} bytes.")
        if not media_type.startswith("image/"):
            raise _refuse(f"The URL did not return an image (content type '{media_type}').")
        fetched[url] = FetchedMedia(media_type=media_type, data=base64.b64encode(data).decode())
    return fetched
