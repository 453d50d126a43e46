"""Task results kept by the gateway go through the safe fetcher: redirects followed and re-checked, no private
address unless ``media_fetch_allow_private``, a size cap of their own. A result that cannot be kept leaves the
task a success with the vendor's own URL (as any failure to keep does) and nothing on disk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import httpx
import pytest

from omnirelay.providers import media
from omnirelay.providers.media import FetchRefused
from omnirelay.providers.task_vendors.base import Media, TaskResults
from omnirelay.tasks.storage import FILES_PREFIX, LocalStore
from tests.conftest import GatewayHarness, start_gateway
from tests.harness import ServerThread
from tests.providers.fetch_server import PNG, PUBLIC_NAME, FetchServer, serve
from tests.tasks.conftest import gateway_settings, new_client
from tests.tasks.test_engine import imagine, mj

pytestmark = pytest.mark.sqlite_only  # where the task row lives does not matter here

real_checked_addresses = media.checked_addresses


@pytest.fixture
def public_test_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """``public.test`` resolves to 127.0.0.1 and counts as public; ``127.0.0.1`` itself stays private."""

    async def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
        if host == PUBLIC_NAME:
            return ["127.0.0.1"]
        return await real_checked_addresses(host, port, allow_private=allow_private)

    monkeypatch.setattr(media, "checked_addresses", checked_addresses)


@pytest.fixture
async def server() -> AsyncIterator[FetchServer]:
    async with serve() as started:
        yield started


def image_results(*urls: str) -> TaskResults:
    return TaskResults(images=tuple(Media(url, "image/png") for url in urls))


async def test_a_result_behind_redirects_is_kept(server: FetchServer, tmp_path: Path, public_test_name: None) -> None:
    store = LocalStore(tmp_path, max_bytes=1 << 20)
    async with aiohttp.ClientSession() as http:
        kept = await store.keep(http, "t1", image_results(server.url("/chain/4", PUBLIC_NAME)))
    assert kept.images[0].url == f"{FILES_PREFIX}t1/images-0.png"
    assert (tmp_path / "t1" / "images-0.png").read_bytes() == PNG
    assert len(server.seen) == 6


async def test_a_result_redirected_to_a_private_address_is_refused(
    server: FetchServer, tmp_path: Path, public_test_name: None
) -> None:
    store = LocalStore(tmp_path, max_bytes=1 << 20)
    to_private = server.url(f"/to?url={quote(server.url('/image.png'), safe='')}", PUBLIC_NAME)
    async with aiohttp.ClientSession() as http:
        for url in (to_private, server.url("/image.png"), "http://169.254.169.254/latest/meta-data/"):
            with pytest.raises(FetchRefused, match="non-public address"):
                await store.keep(http, "t2", image_results(url))
    assert server.paths() == [server.seen[0].path] and server.seen[0].path.startswith("/to?")
    assert list((tmp_path / "t2").iterdir()) == []


async def test_a_result_over_the_cap_leaves_no_partial_file(server: FetchServer, tmp_path: Path) -> None:
    store = LocalStore(tmp_path, max_bytes=2 * 1024 * 1024, allow_private=True)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(FetchRefused, match="larger than 2097152 bytes"):
            await store.keep(http, "t3", image_results(server.url("/big?size=3000000")))
        assert list((tmp_path / "t3").iterdir()) == []
        kept = await store.keep(http, "t3", image_results(server.url("/big?size=2097152")))  # written in batches
    assert (tmp_path / "t3" / "images-0.png").stat().st_size == 2 * 1024 * 1024
    assert kept.images[0].url.startswith(FILES_PREFIX)


@pytest.fixture(scope="module")
def private_results_gw(
    database_url: str, mj_sim: ServerThread, video_sim: ServerThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayHarness]:
    """Results kept, private fetches not allowed: the simulator's result URLs (127.0.0.1) are refused."""
    storage = tmp_path_factory.mktemp("files")
    harness = start_gateway(
        gateway_settings(database_url, mj_sim, video_sim, store_results=True, storage_dir=str(storage))
    )
    harness.storage = storage  # type: ignore[attr-defined]
    yield harness
    harness.server.stop()


def test_a_task_whose_result_is_at_a_private_address_keeps_the_vendor_url(
    private_results_gw: GatewayHarness, mj_sim: ServerThread
) -> None:
    client = new_client(private_results_gw, "private-result")
    with mj(client) as http, client.http() as unified:
        task_id = imagine(http, "kept from a private address?")
        done = unified.get(f"/task/{task_id}", params={"wait": 8}).json()
    assert done["status"] == "SUCCESS"
    url = done["task_result"]["images"][0]["url"]
    assert url.startswith(mj_sim.url + "/files/")  # the vendor's URL, not the gateway's
    storage: Path = private_results_gw.storage  # type: ignore[attr-defined]
    assert list((storage / task_id).iterdir()) == []  # nothing kept, nothing half-written
    assert httpx.get(url).status_code == 200  # what the client got still works
