"""Health checks: a minimal request to every model of a channel, its result and latency.

``omnirelay channels test [NAME]``, ``POST /admin/api/channels/{id}/test`` and the optional periodic check
(``health_check_interval_s``) all come here. One check per model, the channel's keys taking turns, and as many more
as it takes for every key to be used once: the fewest requests that still try every model and every key. Each
result is recorded (``channel_checks``) and reported to the router like any call's outcome, so a check can close a
breaker, and a key that keeps being rejected gets disabled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import orjson
import structlog

from omnirelay.errors import GatewayError
from omnirelay.providers.http1 import UpstreamPool
from omnirelay.providers.kinds import CHANNEL_KINDS, TRANSLATABLE, WireFormat
from omnirelay.providers.upstream import classify_answer, open_upstream, read_answer, read_error_body
from omnirelay.providers.wire import upstream_path
from omnirelay.routing.registry import Candidate, Route
from omnirelay.routing.router import Router
from omnirelay.store.snapshot import ChannelRecord

log = structlog.get_logger(__name__)

PROBE_TEXT = "ping"
CHECK_TIMEOUT_S = 30.0
"""A check never waits longer than this, whatever the channel's own limits."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    channel_id: int
    model: str
    key_id: str | None
    ok: bool
    status_code: int | None
    error_code: str | None
    message: str | None
    latency_ms: int
    checked_at: datetime

    def row(self) -> dict[str, object]:
        """As ``ChannelCheck`` columns."""
        return asdict(self)


def is_embedding_model(model: str) -> bool:
    return "embedding" in model


def probe_request(fmt: WireFormat, model: str) -> tuple[str, bytes]:
    """The smallest request that proves a model answers: one output token, or one short text to embed."""
    if is_embedding_model(model) and fmt != "anthropic":
        if fmt == "gemini":
            body: dict[str, object] = {"content": {"parts": [{"text": PROBE_TEXT}]}}
            return upstream_path(fmt, "embed", model, False), orjson.dumps(body)
        return upstream_path(fmt, "embeddings", model, False), orjson.dumps({"model": model, "input": PROBE_TEXT})
    if fmt == "gemini":
        body = {
            "contents": [{"role": "user", "parts": [{"text": PROBE_TEXT}]}],
            "generationConfig": {"maxOutputTokens": 1},
        }
    else:
        body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": PROBE_TEXT}]}
    return upstream_path(fmt, "chat", model, False), orjson.dumps(body)


def check_plan(route: Route) -> list[Candidate]:
    """One candidate per upstream model, keys in turn, plus one per key not used yet."""
    channel = route.channel
    if channel.type not in CHANNEL_KINDS:  # a task vendor: its polls show its health, a chat probe would not
        return []
    if CHANNEL_KINDS[channel.type].wire_format not in TRANSLATABLE:  # an image vendor: no call is cheap to probe
        return []
    models = sorted({channel.upstream_model(m) for m in channel.serves()})
    keys = route.keys
    if not models or (not channel.api_keys and channel.disabled_keys):  # every key disabled: nothing to send
        return []
    count = max(len(models), len(keys))
    return [Candidate(channel, models[i % len(models)], keys[i % len(keys)], route.target) for i in range(count)]


async def check_candidate(pool: UpstreamPool, candidate: Candidate) -> tuple[CheckResult, GatewayError | None]:
    """Send one probe; the result, and the error to report to the router when it failed."""
    channel = candidate.channel
    fmt = CHANNEL_KINDS[channel.type].wire_format
    path, body = probe_request(fmt, candidate.upstream_model)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    sent = loop.time()
    status: int | None = None
    error: GatewayError | None = None
    try:
        response = await open_upstream(pool, candidate, path, body, deadline=sent + CHECK_TIMEOUT_S)
        status = response.status
        if status >= 400:
            raw = await read_error_body(response, channel)
            code, parsed, retry_after = classify_answer(fmt, status, response.headers, raw)
            error = GatewayError(code, _short(parsed.message), retry_after=retry_after, upstream_status=status)
        else:
            await read_answer(response, channel, sent)
    except GatewayError as err:
        error = err
    latency = round((time.perf_counter() - started) * 1000)
    result = CheckResult(
        channel_id=channel.id,
        model=candidate.upstream_model,
        key_id=candidate.key.id if candidate.key.secret else None,
        ok=error is None,
        status_code=status,
        error_code=error.code.name if error is not None else None,
        message=_scrub(error.message, candidate.key.secret) if error is not None else None,
        latency_ms=latency,
        checked_at=datetime.now(UTC),
    )
    return result, error


def _short(message: str) -> str:
    return message if len(message) <= 300 else message[:297] + "..."


def _scrub(message: str, secret: str) -> str:
    if secret and len(secret) >= 8:
        for fragment in (secret, secret[:8], secret[-6:]):
            message = message.replace(fragment, "***")
    return message


class HealthChecker:
    def __init__(
        self,
        router: Router,
        http: Callable[[], UpstreamPool],
        record: Callable[[list[CheckResult]], Awaitable[None]],
    ) -> None:
        self.router = router
        self.http = http
        self.record = record

    async def check(self, channels: Sequence[ChannelRecord]) -> list[CheckResult]:
        """Check ``channels`` (concurrently), report every outcome to the router, record the results."""
        plans = [candidate for channel in channels for candidate in check_plan(Route(channel))]
        outcomes = await asyncio.gather(*(check_candidate(self.http(), c) for c in plans))
        for candidate, (_, error) in zip(plans, outcomes, strict=True):
            if error is None:
                self.router.succeeded(candidate)
            else:
                self.router.failed(candidate, error)
        results = [result for result, _ in outcomes]
        try:
            await self.record(results)
        except Exception as exc:  # the database is away: the checks happened, report them anyway
            log.warning("health_record_failed", error=type(exc).__name__)
        return results

    async def run_periodically(self, interval_s: float, channels: Callable[[], Sequence[ChannelRecord]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                results = await self.check(channels())
                failed = [r for r in results if not r.ok]
                if failed:
                    log.warning("health_check_failures", failed=len(failed), checked=len(results))
            except Exception as exc:
                log.warning("health_check_failed", error=type(exc).__name__)
