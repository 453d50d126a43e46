"""Running real servers for tests: each ASGI app on its own 127.0.0.1 port, in its own thread and event loop, so
both the sync and the async official SDKs can talk to it over a real socket."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _QuickStopServer(uvicorn.Server):
    """uvicorn's server checking ``should_exit`` every 10 ms rather than every 100 ms: each stop of a test server
    waited for that check. (Its once-a-second refresh of the ``date`` header then runs ten times a second.)"""

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864_000
            await asyncio.sleep(0.01)
            should_exit = await self.on_tick(counter)


class ServerThread:
    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", loop="asyncio"
        )
        self.server = _QuickStopServer(config)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the server's own loop (where its engine and caches live) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait_idle(self, timeout: float = 10) -> None:
        """Until every request the server took has finished, including what its app does after the response went
        out (an audit row is written then): a test's next read sees it, however fast its client asks."""

        async def idle() -> None:
            while self.server.server_state.tasks:
                await asyncio.sleep(0.005)

        self.call(idle(), timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
