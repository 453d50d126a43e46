"""``/healthz`` and ``/readyz``, with Redis and PostgreSQL reached through a TCP proxy the tests can cut."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from omnirelay.config import ChannelConfig, Settings
from tests.conftest import POSTGRES_URL, REDIS_URL, UPSTREAM_KEY, GatewayHarness, database_url_for, start_gateway
from tests.harness import ServerThread, free_port


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; ``cut`` closes the listener and every open connection (the service
    looks down), ``restore`` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def _run(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> TcpProxy:
        self._run(self._listen())
        return self

    def cut(self) -> None:
        self._run(self._close())

    def stop(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)


def proxied(url: str, proxy_port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy_port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def ready(gw: GatewayHarness) -> httpx.Response:
    return httpx.get(gw.server.url + "/readyz", timeout=10)


def channel(sim: ServerThread) -> ChannelConfig:
    return ChannelConfig(name="main", base_url=sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"])


@pytest.fixture(scope="module")
def redis_proxy() -> Iterator[TcpProxy]:
    parts = urlsplit(REDIS_URL)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).restore()
    yield proxy
    proxy.stop()


def test_ready_with_database_redis_and_a_channel(
    database_url: str, openai_sim: ServerThread, redis_proxy: TcpProxy
) -> None:
    settings = Settings(
        database_url=database_url,
        redis_url=proxied(REDIS_URL, redis_proxy.port),
        redis_namespace=f"probes-{os.getpid()}",
        channels=[channel(openai_sim)],
    )
    gw = start_gateway(settings)
    try:
        answer = ready(gw)
        assert answer.status_code == 200, answer.text
        assert answer.json()["checks"] == {"database": "ok", "redis": "ok", "channels": "1 routable"}

        redis_proxy.cut()  # Redis goes away: not ready, but alive
        answer = ready(gw)
        assert answer.status_code == 503
        assert answer.json()["checks"]["redis"] == "unreachable"
        assert any(reason.startswith("redis:") for reason in answer.json()["reasons"])
        assert answer.json()["checks"]["database"] == "ok"
        health = httpx.get(gw.server.url + "/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})

        redis_proxy.restore()  # and back
        assert ready(gw).status_code == 200
    finally:
        redis_proxy.restore()
        gw.server.stop()


def test_not_ready_without_a_routable_channel(tmp_path: Path) -> None:
    gw = start_gateway(Settings(database_url=database_url_for("sqlite", tmp_path)))
    try:
        answer = ready(gw)
        assert answer.status_code == 503
        assert answer.json()["reasons"] == ["channels: no routable channel"]
        assert answer.json()["checks"]["database"] == "ok"
    finally:
        gw.server.stop()


def test_not_ready_when_postgres_is_unreachable(tmp_path: Path, openai_sim: ServerThread) -> None:
    url = database_url_for("postgres", tmp_path)  # skips when PostgreSQL is not there (outside CI)
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).restore()
    gw = start_gateway(Settings(database_url=proxied(POSTGRES_URL, proxy.port), channels=[channel(openai_sim)]))
    try:
        assert ready(gw).status_code == 200
        proxy.cut()
        answer = ready(gw)
        assert answer.status_code == 503
        assert answer.json()["checks"]["database"] == "unreachable"
        assert httpx.get(gw.server.url + "/healthz").status_code == 200
        # Reasons name the failure's kind, never a connection string or password.
        assert "postgresql" not in answer.text and "127.0.0.1" not in answer.text
        proxy.restore()
        assert ready(gw).status_code == 200
    finally:
        proxy.restore()
        gw.server.stop()
        proxy.stop()
