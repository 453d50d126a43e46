"""The gateway object: owns every cache, client and store one running instance needs.

Nothing here is process-global, so two gateways can live in one test process. The hot path reads ``snapshot`` and
``registry`` (plain attributes swapped on reload) and never awaits the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from omnirelay.billing import tokens
from omnirelay.billing.ledger import Billing
from omnirelay.billing.prices import PriceTable, price_from_spec
from omnirelay.config import Settings, async_database_url
from omnirelay.crypto import SecretBox, hash_key, load_or_create_master_key
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.limits import create_limiter
from omnirelay.limits.auth_throttle import create_auth_throttle
from omnirelay.providers.http1 import UpstreamPool
from omnirelay.providers.upstream import create_pool, create_session
from omnirelay.routing.breaker import BreakerBoard, BreakerPolicy, SharedBreakers
from omnirelay.routing.health import CheckResult, HealthChecker
from omnirelay.routing.policy import RoutingPolicy
from omnirelay.routing.registry import Candidate, ChannelRegistry
from omnirelay.routing.router import Router
from omnirelay.store import repo
from omnirelay.store.admin_repo import load_price_overrides
from omnirelay.store.db import bootstrap_lock, create_engine, migrate, sessionmaker
from omnirelay.store.rollup import compact
from omnirelay.store.snapshot import ChannelRecord, KeyRecord, Snapshot, load_snapshot
from omnirelay.store.writer import BatchWriter

log = structlog.get_logger(__name__)


def master_key_for(settings: Settings) -> str:
    if settings.master_key:
        return settings.master_key
    url = async_database_url(settings.database_url)
    if url.startswith("sqlite+aiosqlite:///") and ":memory:" not in url:
        return load_or_create_master_key(Path(url.removeprefix("sqlite+aiosqlite:///") + ".masterkey"))
    raise ValueError("master_key must be configured when the database is not a local SQLite file")


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: AsyncEngine = create_engine(settings.database_url)
        self.sessions: async_sessionmaker = sessionmaker(self.engine)  # type: ignore[type-arg]
        self.box = SecretBox(master_key_for(settings), settings.previous_master_keys)
        self.writer = BatchWriter(
            self.engine, interval=settings.usage_flush_interval_s, batch_size=settings.usage_batch_size
        )
        self.limiter = create_limiter(settings.redis_url, namespace=settings.redis_namespace)
        self.prices = PriceTable(settings.prices)
        self.billing = Billing(self.limiter, self.prices, hold_lease_s=settings.hold_lease_s)
        self.snapshot = Snapshot(keys_by_hash={}, channels=())
        self.board = BreakerBoard(BreakerPolicy.from_config(settings.breaker))
        self.router = Router(RoutingPolicy.from_settings(settings), self.board, on_permanent=self._disable_upstream_key)
        self.shared_breakers = (
            SharedBreakers(self.board, self.limiter, lambda: self.registry.targets()) if settings.redis_url else None
        )
        self.auth_throttle = create_auth_throttle(
            settings.auth_failures_per_minute, self.limiter if settings.redis_url else None
        )
        self.health = HealthChecker(self.router, lambda: self.upstreams, self._record_checks)
        self._http: aiohttp.ClientSession | None = None
        self._upstreams: UpstreamPool | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._pending_disables: set[str] = set()
        self._version = -1

    @property
    def registry(self) -> ChannelRegistry:
        return self.router.registry

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "gateway not started"
        return self._http

    @property
    def upstreams(self) -> UpstreamPool:
        """The relay's connections to upstream channels (``http`` serves the rest)."""
        assert self._upstreams is not None, "gateway not started"
        return self._upstreams

    async def start(self) -> None:
        # Building the tokenizers takes about a second: do it now, off the event loop, not on the first request.
        await asyncio.to_thread(tokens.preload)
        async with bootstrap_lock(self.engine):
            await migrate(self.engine)
            async with self.sessions.begin() as session:
                await repo.ensure_account(session)
                await repo.sync_config_channels(session, self.settings.channels, self.box)
                await repo.sync_config_keys(session, self.settings.keys)
        await self.reload()
        self._http = create_session()
        self._upstreams = create_pool()
        self.writer.start()
        self._refresher = asyncio.create_task(self._refresh_periodically(), name="cache-refresh")
        self._sweeper = asyncio.create_task(self._sweep_holds(), name="hold-sweeper")
        self._compactor = asyncio.create_task(self._compact_rollups(), name="rollup-compactor")
        if self.shared_breakers is not None:
            self.shared_breakers.start()
        self.auth_throttle.start()
        interval = self.settings.health_check_interval_s
        if interval is not None:
            self._checker = asyncio.create_task(
                self.health.run_periodically(interval, self._enabled_channels), name="health-checks"
            )

    async def stop(self, drain: Callable[[], Awaitable[None]] | None = None) -> None:
        """After the server stopped taking calls and let the running ones finish: settle what is left, flush the
        usage rows and ledger entries, close the shared clients."""
        for task in (self._refresher, self._sweeper, self._checker, self._compactor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if drain is not None:
            await drain()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.shared_breakers is not None:
            await self.shared_breakers.stop()
        await self.auth_throttle.stop()
        await self.writer.close()
        await self.limiter.close()
        if self._http is not None:
            await self._http.close()
        if self._upstreams is not None:
            await self._upstreams.close()
        await self.engine.dispose()

    async def reload(self) -> None:
        """Rebuild the in-memory view from the database and swap it in."""
        async with self.sessions() as session:
            version = await repo.config_version(session)
            snapshot = await load_snapshot(session, self.box)
            overrides = await load_price_overrides(session)
        await self.billing.seed(snapshot.keys_by_hash.values())
        self.snapshot = snapshot
        self.router.registry = ChannelRegistry(snapshot.channels)
        self.board.keep_disabled(self._pending_disables)
        self._apply_prices(overrides)
        self._version = version

    def _apply_prices(self, overrides: dict[str, dict[str, object]]) -> None:
        """Config prices, then the admin's overrides (each replaces its model's whole entry)."""
        table = PriceTable(self.settings.prices)
        for model, spec in overrides.items():
            try:
                table.set(model, price_from_spec(spec))
            except (ValueError, TypeError) as exc:
                log.error("price_override_invalid", model=model, error=str(exc))
        self.prices = table
        self.billing.prices = table

    # --- routing: permanent upstream failures, health checks ---------------------------------------------------

    def _disable_upstream_key(self, candidate: Candidate, err: GatewayError, reason: str) -> None:
        """The router gave up on a key: persist it (every instance drops the key within a second). A channel
        configured without keys is disabled as a whole."""
        self._pending_disables.add(candidate.key.target)
        task = asyncio.get_running_loop().create_task(self._persist_disable(candidate, err, reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _persist_disable(self, candidate: Candidate, err: GatewayError, reason: str) -> None:
        channel = candidate.channel
        try:
            async with self.sessions.begin() as session:
                if candidate.key.secret:
                    await repo.disable_upstream_key(session, channel.id, candidate.key.id, reason, err.code.name)
                else:
                    await repo.disable_channel(session, channel.id, reason)
            await self.reload()
        except Exception as exc:  # the database is away: the key stays blocked here until the next reload
            log.error("upstream_key_disable_failed", channel=channel.name, error=type(exc).__name__)
        finally:
            self._pending_disables.discard(candidate.key.target)

    def _enabled_channels(self) -> list[ChannelRecord]:
        return [channel for channel in self.snapshot.channels if channel.routable]

    async def check_channels(self, name_or_id: str | int | None = None) -> list[CheckResult]:
        """Health-check one channel (by name or id, whatever its state) or every enabled one."""
        if name_or_id is None:
            channels = self._enabled_channels()
        else:
            channels = [c for c in self.snapshot.channels if name_or_id in (c.id, c.name, str(c.id))]
            if not channels:
                raise LookupError(f"no channel '{name_or_id}'")
        return await self.health.check(channels)

    async def _record_checks(self, results: list[CheckResult]) -> None:
        async with self.sessions.begin() as session:
            await repo.record_channel_checks(session, [result.row() for result in results])

    async def _sweep_holds(self) -> None:
        """Release reservations whose call died with its instance (their lease ran out)."""
        while True:
            await asyncio.sleep(self.settings.hold_sweep_s)
            try:
                released = await self.billing.release_expired()
                if released:
                    log.warning("expired_holds_released", count=released)
            except Exception as exc:
                log.warning("hold_sweep_failed", error=type(exc).__name__)

    async def _compact_rollups(self) -> None:
        """Rebuild the daily usage rollups from the hourly ones now and every ``rollup_compact_interval_s``, off
        the relay path and the batch writer; instances may overlap (each day is replaced in one transaction)."""
        while True:
            try:
                await compact(self.engine)
            except Exception as exc:  # database away: the reads use the hourly tier for the days left behind
                log.warning("rollup_compaction_failed", error=type(exc).__name__)
            await asyncio.sleep(self.settings.rollup_compact_interval_s)

    async def _refresh_periodically(self) -> None:
        """Reload when the shared config version moved (checked every ``config_poll_s``), and in any case every
        ``cache_refresh_s`` as a safety net."""
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.config_poll_s)
            try:
                async with self.sessions() as session:
                    version = await repo.config_version(session)
                if version != self._version or time.monotonic() - last_full > self.settings.cache_refresh_s:
                    await self.reload()
                    last_full = time.monotonic()
            except Exception as exc:  # database away: keep serving from the last snapshot
                log.warning("cache_refresh_failed", error=type(exc).__name__)

    def authenticate(self, api_key: str | None, client_ip: str | None) -> KeyRecord:
        """Key → record from memory. Raises the 401/403 the client's SDK expects, or 429 to an address that
        failed too often (``AuthThrottle``)."""
        throttle = self.auth_throttle
        if throttle.blocked:
            self._refuse_throttled(throttle.retry_after(client_ip))
        if not api_key:
            raise GatewayError(ErrorCode.authentication, "Missing API key. Pass it as 'Authorization: Bearer <key>'.")
        record = self.snapshot.keys_by_hash.get(hash_key(api_key))
        if record is None or record.revoked:
            self._refuse_throttled(throttle.failed(client_ip))
            raise GatewayError(ErrorCode.authentication, "Incorrect API key provided.")
        if record.expires_at is not None and record.expires_at <= time.time():
            raise GatewayError(ErrorCode.authentication, "This API key has expired.")
        if record.account_disabled:
            raise GatewayError(ErrorCode.permission, "This account is disabled.", status=403)
        if not record.allows_ip(client_ip):
            raise GatewayError(ErrorCode.permission, "This API key may not be used from this address.")
        return record

    @staticmethod
    def _refuse_throttled(retry_after: float | None) -> None:
        if retry_after is not None:
            raise GatewayError(
                ErrorCode.rate_limited,
                "Too many failed authentications from this address; try again later.",
                retry_after=retry_after,
            )

    def check_model(self, record: KeyRecord, model: str) -> None:
        if not record.allows_model(model):
            raise GatewayError(
                ErrorCode.permission, f"This API key is not allowed to use the model '{model}'.", param="model"
            )
        if not self.registry.serves(model):
            raise GatewayError(
                ErrorCode.not_found,
                f"The model '{model}' does not exist or you do not have access to it.",
                param="model",
            )
