"""Fetching URLs that clients or vendors name: the gateway's one way to reach an address it was not configured with.

Used for images that an upstream only takes as inline bytes (Gemini's ``inlineData``), image vendors' results
(``api.media.ResultHost``), task results (``tasks.storage.LocalStore.keep``) and webhook calls
(``tasks.webhooks.deliver``). A client, or an upstream's answer, must not be able to make the gateway reach into
its own network, so every hop of a fetch obeys the same rules:

- http or https only, and once on https never back to http (a redirect may not downgrade);
- the host is resolved and every address it resolves to must be public: private, loopback, link-local (cloud
  metadata at 169.254.169.254), shared (100.64/10), unique-local and reserved addresses are refused, IPv4 inside
  IPv6 (mapped, 6to4, NAT64) is judged by the IPv4 address, unless the caller allows private addresses;
- the connection goes to an address that was checked: the URL's host is replaced by it, while the ``Host`` header
  and the TLS server name (SNI and certificate check) keep the name. A DNS answer that changes between the check
  and the connection (rebinding) therefore cannot lead the gateway elsewhere;
- redirects (301, 302, 303, 307, 308) are followed by the fetcher, up to ``max_redirects``, each ``Location``
  resolved against the URL that answered and checked like the first; a 303, or a 301/302 answering a POST, goes
  on as a GET without a body, as browsers do;
- one deadline (``timeout_s``) covers the whole chain and the reading of the body, one size cap the body.

Residual risks: the address is checked by what this host's resolver answers, so a name served by the resolver's
own split-horizon view is judged by that view; and an HTTP proxy, if one were configured on the session, would make
the connection instead (the gateway's session uses none). Messages of :class:`FetchRefused` name the host at most,
never the path or query of a URL (signed URLs carry tokens there).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Mapping

import aiohttp
from yarl import URL

from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.formats.ir import FetchedMedia

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
READ_CHUNK = 256 * 1024

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA = frozenset({ipaddress.ip_address("192.0.0.192")})
"""Cloud metadata addresses that ``is_global`` does not already exclude (Oracle Cloud's older one)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(Exception):
    """A URL the gateway will not or could not fetch; the message says why and names no secret."""


def _refuse(message: str) -> GatewayError:
    return GatewayError(ErrorCode.invalid_request, message, param="messages")


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` may be reached when private addresses are not allowed."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and address not in _METADATA


async def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Every address ``host`` resolves to, once each one is allowed; :class:`FetchRefused` otherwise."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise FetchRefused(f"The host '{host}' cannot be resolved.") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private and not all(is_public(ipaddress.ip_address(a)) for a in addresses):
        raise FetchRefused(f"Refusing to fetch from a non-public address ('{host}').")
    return addresses


def _target(url: str | URL, previous: URL | None = None) -> URL:
    """``url`` (a ``Location`` relative to ``previous`` when given) once its scheme and host are acceptable."""
    try:
        target = URL(url) if isinstance(url, str) else url
        if previous is not None:
            target = previous.join(target)
    except (ValueError, TypeError):
        raise FetchRefused("The URL is not valid.") from None
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise FetchRefused("Only http and https URLs are fetched.")
    if previous is not None and previous.scheme == "https" and target.scheme == "http":
        raise FetchRefused("Refusing a redirect from https to http.")
    return target


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _request_pinned(
    session: aiohttp.ClientSession,
    method: str,
    target: URL,
    *,
    data: bytes | None,
    headers: Mapping[str, str],
    allow_private: bool,
    timeout_s: float,
) -> aiohttp.ClientResponse:
    """One request to ``target``, connected to an address of its host that was checked (the next one if a
    connection fails)."""
    host = target.raw_host
    assert host is not None and target.port is not None
    addresses = await checked_addresses(host.strip("[]"), target.port, allow_private=allow_private)
    pinned_headers = {**headers, "Host": target.host_port_subcomponent or host}
    server_hostname = host if target.scheme == "https" and not _is_ip(host) else None
    for address in addresses:
        try:
            return await session.request(
                method,
                target.with_host(address.split("%", 1)[0]),
                data=data,
                headers=pinned_headers,
                allow_redirects=False,
                server_hostname=server_hostname,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            )
        except aiohttp.ClientConnectorError:
            continue
    raise FetchRefused("The URL could not be fetched.")


async def _follow(
    session: aiohttp.ClientSession,
    url: str,
    *,
    method: str,
    data: bytes | None,
    headers: Mapping[str, str],
    allow_private: bool,
    timeout_s: float,
    max_redirects: int,
) -> aiohttp.ClientResponse:
    target = _target(url)
    for hop in range(max_redirects + 1):
        response = await _request_pinned(
            session, method, target, data=data, headers=headers, allow_private=allow_private, timeout_s=timeout_s
        )
        location = response.headers.get("Location")
        if response.status not in REDIRECT_STATUSES or location is None:
            return response
        response.release()
        if hop == max_redirects:
            raise FetchRefused(
                f"The URL redirected more than {max_redirects} times."
                if max_redirects
                else f"The URL answered a redirect (HTTP {response.status}), which is not followed."
            )
        target = _target(location, target)
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method, data = "GET", None
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def open_url(
    session: aiohttp.ClientSession,
    url: str,
    *,
    timeout_s: float,
    allow_private: bool = False,
    method: str = "GET",
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    max_redirects: int = MAX_REDIRECTS,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """The answer at the end of ``url``'s redirects (any status but a followed redirect), by the module's rules.
    ``timeout_s`` covers the whole chain and the caller's reading of the body inside the ``async with``; every
    failure (refused address, too many redirects, connection error, timeout) is a :class:`FetchRefused`."""
    try:
        async with asyncio.timeout(timeout_s):
            response = await _follow(
                session,
                url,
                method=method,
                data=data,
                headers=headers or {},
                allow_private=allow_private,
                timeout_s=timeout_s,
                max_redirects=max_redirects,
            )
            try:
                yield response
            finally:
                response.release()
    except TimeoutError:
        raise FetchRefused(f"The URL did not answer within {timeout_s:g} s.") from None
    except aiohttp.ClientError:  # also a broken body while the caller reads it
        raise FetchRefused("The URL could not be fetched.") from None


async def iter_capped(response: aiohttp.ClientResponse, max_bytes: int) -> AsyncIterator[bytes]:
    """The body of ``response`` in chunks; :class:`FetchRefused` as soon as it is known to exceed ``max_bytes``."""
    too_large = FetchRefused(f"The answer at the URL is larger than {max_bytes} bytes.")
    if response.content_length is not None and response.content_length > max_bytes:
        raise too_large
    total = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise too_large
        yield chunk


def require_ok(response: aiohttp.ClientResponse) -> None:
    if response.status != 200:
        raise FetchRefused(f"The URL answered HTTP {response.status}.")


async def fetch_url(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool = False,
    max_redirects: int = MAX_REDIRECTS,
) -> tuple[str, bytes]:
    """The content type and bytes at ``url`` (after its redirects), within ``max_bytes`` and ``timeout_s``; raises
    :class:`FetchRefused` for anything but an allowed http(s) address answering 200 in time."""
    async with open_url(
        session, url, timeout_s=timeout_s, allow_private=allow_private, max_redirects=max_redirects
    ) as response:
        require_ok(response)
        data = b"".join([chunk async for chunk in iter_capped(response, max_bytes)])
        return response.content_type, data


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
        try:
            media_type, data = await fetch_url(
                session, url, max_bytes=max_bytes, timeout_s=timeout_s, allow_private=allow_private
            )
        except FetchRefused as refused:
            raise _refuse(f"The image URL was refused: {refused}") from None
        if not media_type.startswith("image/"):
            raise _refuse(f"The URL did not return an image (content type '{media_type}').")
        fetched[url] = FetchedMedia(media_type=media_type, data=base64.b64encode(data).decode())
    return fetched
