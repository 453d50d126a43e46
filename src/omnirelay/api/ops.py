"""Operator endpoints: ``/healthz`` (the process answers), ``/readyz`` (it can serve) and ``/metrics`` (Prometheus).

``/healthz`` does no I/O, so a liveness probe never restarts a gateway because its database is slow. ``/readyz``
checks what a call needs: the database answers, Redis answers when one is configured, and at least one channel
is routable; otherwise 503 with the reasons, so a load balancer takes the instance out until it recovers.

``/metrics`` is open unless ``metrics_token`` is set (Prometheus scrapers on a private network expect that); with
a token it wants ``Authorization: Bearer <metrics_token>``.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import Counter

import orjson
import structlog
from sqlalchemy import func, select, text
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.api.common import bearer_token
from omnirelay.api.relay import Relay
from omnirelay.gateway import Gateway
from omnirelay.metrics import Snapshot, render
from omnirelay.store.models import Task

log = structlog.get_logger(__name__)

PROBE_TIMEOUT_S = 2.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _json(payload: dict[str, object], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


class OpsRoutes:
    def __init__(self, gateway: Gateway, relay: Relay) -> None:
        self.gateway = gateway
        self.relay = relay

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        checks: dict[str, str] = {}
        failures: list[str] = []
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async with self.gateway.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = "unreachable"
            failures.append(f"database: {type(exc).__name__}")
        if self.gateway.settings.redis_url:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await self.gateway.limiter.get("readyz")
                checks["redis"] = "ok"
            except Exception as exc:
                checks["redis"] = "unreachable"
                failures.append(f"redis: {type(exc).__name__}")
        routable = len(self.gateway.registry.routes)
        checks["channels"] = f"{routable} routable"
        if not routable:
            failures.append("channels: no routable channel")
        if failures:
            log.warning("not_ready", reasons=failures)
            return _json({"status": "unavailable", "checks": checks, "reasons": failures}, 503)
        return _json({"status": "ready", "checks": checks})

    async def metrics(self, request: Request) -> Response:
        token = self.gateway.settings.metrics_token
        if token:
            given = bearer_token(request) or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return Response(
                    b"metrics token required\n",
                    status_code=401,
                    media_type="text/plain",
                    headers={"www-authenticate": "Bearer"},
                )
        return Response(render(self.relay.stats, await self._snapshot()), media_type=PROMETHEUS_TEXT)

    async def _snapshot(self) -> Snapshot:
        gateway = self.gateway
        now = gateway.board.clock()
        breakers: Counter[tuple[str, str]] = Counter()
        for route in gateway.registry.routes.values():
            for target in (route.target, *(key.target for key in route.keys)):
                breakers[(route.channel.name, gateway.board.state_of(target, now).state)] += 1
        return Snapshot(
            breakers=dict(breakers),
            writer_pending=gateway.writer.pending,
            tasks=await self._task_counts(),
            auth_blocked_ips=gateway.auth_throttle.blocked_count(),
        )

    async def _task_counts(self) -> dict[str, int]:
        """One grouped count per scrape (never on the relay's path); empty when the database does not answer."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                async with self.gateway.sessions() as session:
                    rows = await session.execute(select(Task.status, func.count()).group_by(Task.status))
            return {status: count for status, count in rows.all()}
        except Exception as exc:
            log.warning("metrics_task_count_failed", error=type(exc).__name__)
            return {}
