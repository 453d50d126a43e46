"""The safe fetcher (``providers.media``): redirects followed and re-checked hop by hop, the connection made to the
address that was checked, one deadline and one size cap for the whole chain."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import aiohttp
import pytest

from omnirelay.providers import media
from omnirelay.providers.media import FetchRefused, fetch_url, open_url
from omnirelay.tasks.webhooks import SIGNATURE_HEADER, deliver, verify
from tests.providers.fetch_server import PNG, PUBLIC_NAME, FetchServer, certificate_for, serve

real_checked_addresses = media.checked_addresses


@pytest.fixture(autouse=True)
def public_test_name(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """``public.test`` (and ``other.test``) resolve to 127.0.0.1 and count as public; every other host is checked
    for real, so ``127.0.0.1`` itself stays private. Yields the hosts checked, in order."""
    checked: list[str] = []

    async def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
        checked.append(host)
        if host in (PUBLIC_NAME, "other.test"):
            return ["127.0.0.1"]
        return await real_checked_addresses(host, port, allow_private=allow_private)

    monkeypatch.setattr(media, "checked_addresses", checked_addresses)
    yield checked


@pytest.fixture
async def server() -> AsyncIterator[FetchServer]:
    async with serve() as started:
        yield started


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def fetch(http: aiohttp.ClientSession, url: str, *, max_bytes: int = 1 << 20, timeout_s: float = 5.0) -> bytes:
    return (await fetch_url(http, url, max_bytes=max_bytes, timeout_s=timeout_s))[1]


def redirect_to(server: FetchServer, url: str, status: int = 302, host: str = PUBLIC_NAME) -> str:
    return server.url(f"/to?status={status}&url={quote(url, safe='')}", host)


async def test_a_chain_of_every_redirect_kind_is_followed(server: FetchServer, http: aiohttp.ClientSession) -> None:
    content_type, data = await fetch_url(
        http, server.url("/chain/4"), max_bytes=1 << 20, timeout_s=5, allow_private=True
    )
    assert (content_type, data) == ("image/png", PNG)
    assert server.paths() == ["/chain/4", "/chain/3", "/chain/2", "/chain/1", "/chain/0", "/image.png"]


async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(
    server: FetchServer, http: aiohttp.ClientSession, public_test_name: list[str]
) -> None:
    # ``public.test`` has no DNS record: this only works when the connection uses the address the check returned.
    assert await fetch(http, server.url("/image.png", PUBLIC_NAME)) == PNG
    assert [s.host for s in server.seen] == [f"{PUBLIC_NAME}:{server.port}"]
    assert public_test_name == [PUBLIC_NAME]


async def test_a_redirect_to_a_private_address_is_refused_before_it_is_requested(
    server: FetchServer, http: aiohttp.ClientSession, public_test_name: list[str]
) -> None:
    for private in (f"http://127.0.0.1:{server.port}/image.png", "http://169.254.169.254/latest/meta-data/"):
        server.seen.clear()
        with pytest.raises(FetchRefused, match="non-public address"):
            await fetch(http, redirect_to(server, private))
        assert len(server.seen) == 1 and server.seen[0].path.startswith("/to?")  # the private address never reached
    # A relative Location keeps the public name, which is fetched.
    server.seen.clear()
    assert await fetch(http, redirect_to(server, "/image.png")) == PNG
    assert [s.host for s in server.seen] == [f"{PUBLIC_NAME}:{server.port}"] * 2


async def test_the_first_url_is_checked_too(server: FetchServer, http: aiohttp.ClientSession) -> None:
    for url in (server.url("/image.png"), "http://localhost:9/x.png", "http://[::1]:9/x", "http://10.0.0.1/x"):
        with pytest.raises(FetchRefused, match="non-public address"):
            await fetch(http, url)
    with pytest.raises(FetchRefused, match="Only http and https"):
        await fetch(http, "file:///etc/passwd")
    assert server.seen == []


async def test_too_many_redirects_are_refused(server: FetchServer, http: aiohttp.ClientSession) -> None:
    with pytest.raises(FetchRefused, match="redirected more than 5 times"):
        await fetch(http, server.url("/loop", PUBLIC_NAME))
    assert server.paths() == ["/loop"] * 6
    server.seen.clear()
    with pytest.raises(FetchRefused, match="more than 2 times"):
        await fetch_url(http, server.url("/chain/4", PUBLIC_NAME), max_bytes=1 << 20, timeout_s=5, max_redirects=2)
    assert len(server.seen) == 3


async def test_the_size_cap_holds_after_redirects(server: FetchServer, http: aiohttp.ClientSession) -> None:
    cap = 300 * 1024
    for big in ("/big?size=400000", "/big?size=400000&length=1"):  # streamed, then announced by Content-Length
        with pytest.raises(FetchRefused, match=f"larger than {cap} bytes"):
            await fetch(http, redirect_to(server, big), max_bytes=cap)
    assert len(await fetch(http, redirect_to(server, "/big?size=307200"), max_bytes=cap)) == cap


async def test_one_deadline_covers_the_whole_chain(server: FetchServer, http: aiohttp.ClientSession) -> None:
    # Three hops of 0.1 s each: every hop alone is in time, the chain is not.
    with pytest.raises(FetchRefused, match=r"did not answer within 0.25 s"):
        await fetch(http, server.url("/slow/3", PUBLIC_NAME), timeout_s=0.25)
    assert await fetch(http, server.url("/slow/1", PUBLIC_NAME), timeout_s=2) == PNG


async def test_a_303_turns_a_post_into_a_get_and_a_307_keeps_it(
    server: FetchServer, http: aiohttp.ClientSession
) -> None:
    for status, expected in ((303, "GET 0"), (307, "POST 4"), (308, "POST 4")):
        async with open_url(
            http, redirect_to(server, "/echo", status), method="POST", data=b"body", timeout_s=5
        ) as answer:
            assert await answer.text() == expected


async def test_https_names_are_verified_and_never_downgraded() -> None:
    server_tls, client_tls = certificate_for(PUBLIC_NAME)
    async with (
        serve(server_tls) as secure,
        serve() as plain,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as http,
    ):
        # Connected to 127.0.0.1, the certificate checked against the name (and SNI sent for it).
        assert await fetch(http, secure.url("/image.png", PUBLIC_NAME)) == PNG
        with pytest.raises(FetchRefused, match="could not be fetched"):  # the certificate is not other.test's
            await fetch(http, secure.url("/image.png", "other.test"))
        downgrade = redirect_to(secure, plain.url("/image.png", PUBLIC_NAME))
        with pytest.raises(FetchRefused, match="from https to http"):
            await fetch_url(http, downgrade, max_bytes=1 << 20, timeout_s=5, allow_private=True)
        assert plain.seen == []


async def test_a_webhook_does_not_follow_redirects_and_is_checked_at_delivery(
    server: FetchServer, http: aiohttp.ClientSession
) -> None:
    async def call(url: str, allow_private: bool = False) -> bool:
        return await deliver(http, url, b'{"id":1}', secret=b"s", task_id="t", timeout_s=5, allow_private=allow_private)

    assert await call(server.url("/echo", PUBLIC_NAME))
    signed = server.seen[-1]
    assert signed.method == "POST" and signed.host == f"{PUBLIC_NAME}:{server.port}"
    assert verify(b"s", signed.body, signed.headers[SIGNATURE_HEADER]) and signed.body == b'{"id":1}'
    server.seen.clear()
    for status in (301, 302, 303, 307, 308):  # a failed delivery (retried later), the new location never called
        assert not await call(redirect_to(server, server.url("/echo", PUBLIC_NAME), status))
    assert len(server.seen) == 5 and all(p.startswith("/to?") for p in server.paths())
    server.seen.clear()
    assert not await call(server.url("/echo"))  # 127.0.0.1 when private addresses are not allowed
    assert server.seen == []
    assert await call(server.url("/echo"), allow_private=True)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("169.254.169.254", False),  # AWS, GCP and Azure metadata
        ("fd00:ec2::254", False),  # AWS metadata over IPv6
        ("100.100.100.200", False),  # Alibaba Cloud metadata (shared address space)
        ("192.0.0.192", False),  # Oracle Cloud's older metadata address
        ("127.0.0.1", False),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert media.is_public(ipaddress.ip_address(address)) is public
