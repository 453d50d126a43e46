"""A pipelined Redis connection for the limiter's per-request scripts.

redis-py's asyncio client spends several hundred microseconds of CPU per command (a pool checkout under an
``asyncio.Condition``, a timer per read, per-argument encoding in Python): measured at ~270 µs per EVALSHA on
this kind of machine, four of them per budgeted call, more than the whole relay. Here every command is packed by
hiredis (C), written at once to one shared connection and answered in order through a FIFO of futures, the
replies parsed by hiredis' reader: no checkout, no per-command timer, no task. Commands issued in the same turn of
the event loop leave in one write (one system call for the lot: under load, calls arrive together). Redis runs
commands one at a time anyway, so one pipelined connection per process loses nothing.

Failures follow the limiter's contract: a connection that cannot be made, breaks, or leaves the oldest command
unanswered for ``timeout_s`` fails every waiting command with ``LimiterUnavailable``; the next command connects
again. Scripts are sent by SHA1 and loaded on ``NOSCRIPT`` (after a Redis restart or ``SCRIPT FLUSH``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import time
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

from omnirelay.limits.base import LimiterUnavailable

Arg = str | int | bytes


class Script:
    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: PipelinedRedis) -> None:
        self._owner = owner
        self._reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._owner._waiting
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if not waiting:  # a reply nobody asked for: the stream is out of step, start over
                self._owner._fail("unexpected reply")
                return
            future, _ = waiting.popleft()
            if not future.done():
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._fail(f"connection lost: {exc}" if exc else "connection closed")


class PipelinedRedis:
    """``call(*args)`` and ``evalsha(script, keys, args)`` over one pipelined connection to ``url``."""

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        self._url = url
        self._timeout = timeout_s
        self._transport: asyncio.Transport | None = None
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._connecting: asyncio.Lock | None = None
        self._outgoing: list[bytes] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    async def call(self, *args: Arg) -> Any:
        packed = hiredis.pack_command(args)  # first: a bad argument must not leave a future without a command
        if self._transport is None:
            await self._connect()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((future, time.monotonic()))
        if not self._outgoing:
            loop.call_soon(self._send)
        self._outgoing.append(packed)
        return await future

    def _send(self) -> None:
        # The buffer holds exactly the commands of the newest futures in ``_waiting``; a failure in between
        # failed those futures and emptied the buffer together.
        outgoing, self._outgoing = self._outgoing, []
        if outgoing and self._transport is not None:
            self._transport.write(b"".join(outgoing))

    async def evalsha(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except hiredis.ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self.call("SCRIPT", "LOAD", script.source)
        return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _connect(self) -> asyncio.Transport:
        if self._closed:
            raise LimiterUnavailable("redis connection closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._transport is not None:
                return self._transport
            try:
                transport = await asyncio.wait_for(self._open(), self._timeout)
            except (OSError, TimeoutError, hiredis.ReplyError) as exc:
                raise LimiterUnavailable(f"redis unreachable: {exc}") from exc
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.get_running_loop().create_task(self._watch(), name="redis-watchdog")
            return transport

    async def _open(self) -> asyncio.Transport:
        parts = urlsplit(self._url)
        loop = asyncio.get_running_loop()
        if parts.scheme == "unix":
            transport, _ = await loop.create_unix_connection(lambda: _Protocol(self), parts.path)
        else:
            context = ssl.create_default_context() if parts.scheme == "rediss" else None
            transport, _ = await loop.create_connection(
                lambda: _Protocol(self), parts.hostname or "127.0.0.1", parts.port or 6379, ssl=context
            )
        self._transport = transport  # type: ignore[assignment]
        try:
            if parts.password is not None:
                user = unquote(parts.username) if parts.username else None
                password = unquote(parts.password)
                await self.call(*(("AUTH", user, password) if user else ("AUTH", password)))
            database = parts.path.strip("/") if parts.scheme != "unix" else ""
            if database and database != "0":
                await self.call("SELECT", database)
        except BaseException:
            self._fail("set-up failed")
            raise
        return self._transport  # type: ignore[return-value]

    def _fail(self, reason: str) -> None:
        transport, self._transport = self._transport, None
        self._outgoing = []
        waiting, self._waiting = self._waiting, deque()
        if transport is not None:
            transport.abort()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(LimiterUnavailable(f"redis unreachable: {reason}"))

    async def _watch(self) -> None:
        # One timer for all commands instead of one per command: the oldest unanswered command bounds them all.
        while self._transport is not None:
            await asyncio.sleep(min(self._timeout / 4, 0.5))
            if self._waiting and time.monotonic() - self._waiting[0][1] > self._timeout:
                self._fail(f"no reply within {self._timeout} s")

    async def close(self) -> None:
        self._closed = True
        self._fail("closed")
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
