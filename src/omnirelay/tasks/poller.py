"""The poller: every instance runs one; leases in the tasks table keep each task with a single instance.

Each tick claims the due tasks (``store.claim``), groups them by family, channel and upstream key, asks the
upstream about them (one call per batch where the family can batch, else one per task, a few at a time), and
records what it learned: progress and the next poll (the family's backoff), or the end of the task with its money
(``store.finish``), or a failure once the family's timeout passed. Webhooks of ended tasks are delivered by the
same loop, so a delivery interrupted by a restart is retried by whichever instance polls next.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from fractions import Fraction

import orjson
import structlog

from omnirelay.errors import GatewayError
from omnirelay.providers.task_vendors import vendors
from omnirelay.providers.task_vendors.base import (
    ACTIVE_STATUSES,
    Submission,
    TaskResults,
    TaskUpdate,
    TaskVendor,
    UpstreamCall,
)
from omnirelay.store.models import Task
from omnirelay.store.snapshot import ChannelRecord, KeyRecord
from omnirelay.tasks import store
from omnirelay.tasks.engine import TaskEngine, key_secret, price_task, unit_of
from omnirelay.tasks.views import render_for
from omnirelay.tasks.webhooks import HookRefused, check_address, deliver

log = structlog.get_logger(__name__)

FETCH_CONCURRENCY = 16


class Poller:
    def __init__(self, engine: TaskEngine) -> None:
        self.engine = engine
        self.gateway = engine.gateway
        self.settings = engine.settings
        self._task: asyncio.Task[None] | None = None
        self._fetches = asyncio.Semaphore(FETCH_CONCURRENCY)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="task-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            async with self.gateway.sessions.begin() as session:
                await store.release_leases(session, self.engine.owner)
        except Exception as exc:
            log.warning("task_lease_release_failed", error=type(exc).__name__)

    async def _run(self) -> None:
        while True:
            try:
                claimed = await self.tick()
            except Exception as exc:  # database away: try again next tick
                log.warning("task_poll_failed", error=type(exc).__name__)
                claimed = 0
            if claimed < self.settings.claim_batch:
                await asyncio.sleep(self.settings.poll_tick_s)

    async def tick(self) -> int:
        """One round: claim, poll, record, deliver. Returns how many tasks were claimed."""
        now = time.time()
        async with self.gateway.sessions.begin() as session:
            rows = await store.claim(
                session, self.engine.owner, now=now, lease_s=self.settings.lease_s, limit=self.settings.claim_batch
            )
        if not rows:
            return 0
        groups: dict[tuple[str, int, str | None], list[Task]] = defaultdict(list)
        hooks = []
        for row in rows:
            if row.status in ACTIVE_STATUSES:
                groups[(row.vendor, row.channel_id, row.upstream_key_id)].append(row)
            elif row.hook_state == "pending":
                hooks.append(row)
        await asyncio.gather(*(self._poll_group(key[0], key[1], group) for key, group in groups.items()))
        await asyncio.gather(*(self._deliver(row) for row in hooks))
        return len(rows)

    # --- polling -----------------------------------------------------------------------------------------------

    async def _poll_group(self, family: str, channel_id: int, rows: list[Task]) -> None:
        vendor = vendors().get(family)
        channel = next((c for c in self.gateway.snapshot.channels if c.id == channel_id), None)
        updates: dict[str, TaskUpdate] = {}
        if vendor is not None and channel is not None:
            api_key = key_secret(channel, rows[0].upstream_key_id)
            try:
                updates = await self._ask(vendor, channel, api_key, [row.upstream_id for row in rows])
            except Exception as exc:  # one broken group must not stop the others
                log.warning("task_poll_group_failed", vendor=family, channel=channel.name, error=type(exc).__name__)
        for row in rows:
            try:
                await self._record(row, vendor, updates.get(row.upstream_id))
            except Exception as exc:
                log.error("task_record_failed", task=row.public_id, error=type(exc).__name__, exc_info=True)

    async def _ask(
        self, vendor: TaskVendor, channel: ChannelRecord, api_key: str, ids: list[str]
    ) -> dict[str, TaskUpdate]:
        engine = self.engine
        updates: dict[str, TaskUpdate] = {}
        if vendor.batch_path and vendor.batch_size > 1:
            for start in range(0, len(ids), vendor.batch_size):
                chunk = ids[start : start + vendor.batch_size]
                call = UpstreamCall("POST", vendor.batch_path, vendor.batch_body(chunk))
                status, body = await engine.call_upstream(vendor, channel, api_key, call)
                if status != 200:
                    log.warning("task_batch_poll_status", vendor=vendor.name, status=status)
                    continue
                for item in vendor.read_batch(body):
                    upstream_id = vendor.upstream_id_of(item)
                    if upstream_id is not None:
                        updates[upstream_id] = vendor.read_task(item)
            return updates

        async def one(upstream_id: str) -> None:
            async with self._fetches:
                try:
                    status, body = await engine.call_upstream(
                        vendor,
                        channel,
                        api_key,
                        vendor.fetch_call(upstream_id),
                    )
                except GatewayError:
                    return
                if status == 200:
                    try:
                        update = vendor.read_task(vendor.read_fetch(body))
                        follow = vendor.result_call(upstream_id, update) if update.status == "SUCCESS" else None
                        if follow is not None:  # the results live at a second URL (FAL)
                            status, body = await engine.call_upstream(vendor, channel, api_key, follow)
                            finished = vendor.read_result(update, status, body)
                            if finished is None:  # not readable yet: the next poll asks again
                                return
                            update = finished
                        updates[upstream_id] = update
                    except GatewayError:
                        return
                    except (orjson.JSONDecodeError, ValueError, TypeError, KeyError):
                        log.warning("task_poll_unreadable", vendor=vendor.name)

        await asyncio.gather(*(one(i) for i in ids))
        return updates

    async def _record(self, row: Task, vendor: TaskVendor | None, update: TaskUpdate | None) -> None:
        now = time.time()
        timeout = (vendor.poll.timeout_s if vendor is not None else 3600.0) * self.settings.timeout_scale
        if update is not None and update.status in ("SUCCESS", "FAILURE"):
            assert vendor is not None
            await self.finish(row, vendor, update)
            return
        if now - row.submitted_at > timeout:
            error = "The task did not finish in time and was cancelled; it is not billed."
            await self.finish(row, vendor, TaskUpdate("FAILURE", row.progress, error=error, raw=row.raw or {}))
            return
        policy = vendor.poll if vendor is not None else None
        delay = policy.next_delay(row.polls) if policy is not None else 30.0
        async with self.gateway.sessions.begin() as session:
            await store.record_progress(
                session,
                row,
                update,
                owner=self.engine.owner,
                next_poll_at=now + delay * self.settings.poll_interval_scale,
                lease_s=self.settings.lease_s,
            )

    def _key(self, key_id: int | None) -> KeyRecord | None:
        if key_id is None:
            return None
        return next((k for k in self.gateway.snapshot.keys_by_hash.values() if k.id == key_id), None)

    def _final_cost(self, row: Task, vendor: TaskVendor | None, update: TaskUpdate, key: KeyRecord | None) -> int:
        """Nothing for a failure; on success the charge, re-priced if the vendor reported the real figure of the
        unit the model is sold by."""
        if update.status != "SUCCESS":
            return 0
        if vendor is None:
            return row.cost_micros
        billed = vendor.billed_quantity(store.view_of(row), update)
        if not billed:
            return row.cost_micros
        try:
            price = self.gateway.billing.price_for(row.model, row.upstream_model)
        except GatewayError:
            return row.cost_micros
        unit = unit_of(vendor, price)
        if unit is None or unit not in billed:
            return row.cost_micros
        count, _, seconds = row.quantity.partition("/")
        submission = Submission(
            row.model,
            row.action,
            {},
            option=row.price_option,
            quantity=billed[unit] if unit != "second" else Fraction(count),
            seconds=billed[unit] if unit == "second" else (Fraction(seconds) if seconds else None),
        )
        multiplier = key.multiplier if key is not None else Fraction(1)
        try:
            return price_task(vendor, price, submission, multiplier)
        except GatewayError:
            return row.cost_micros

    async def finish(self, row: Task, vendor: TaskVendor | None, update: TaskUpdate) -> bool:
        """End a task (once, whichever instance gets there first) with its money and its webhook."""
        results = update.results
        if update.status == "SUCCESS" and self.engine.files is not None:
            try:
                results = await self.engine.files.keep(self.gateway.http, row.public_id, results)
            except Exception as exc:  # the vendor's URLs still work for a while: hand those out
                log.warning("task_result_store_failed", task=row.public_id, error=type(exc).__name__)
        key = self._key(row.key_id)
        ending = store.Ending(
            update.status,
            results if update.status == "SUCCESS" else TaskResults(),
            update.error,
            update.raw,
            self._final_cost(row, vendor, update, key),
        )
        async with self.gateway.sessions.begin() as session:
            delta = await store.finish(session, row, ending, hook_at=time.time() + self.settings.webhook_timeout_s + 1)
        if delta is None:
            return False
        if key is not None:
            await self.gateway.billing.adjust(key, delta)
        log.info("task_finished", task=row.public_id, status=update.status, charge_delta_micros=delta)
        self.engine.ended(row.public_id, row.vendor, update.status)
        if row.notify_hook:
            async with self.gateway.sessions() as session:
                fresh = await store.get_by_public_id(session, row.public_id)
            if fresh is not None:
                await self._deliver(fresh)
        return True

    # --- webhooks ----------------------------------------------------------------------------------------------

    async def _deliver(self, row: Task) -> None:
        settings = self.settings
        assert row.notify_hook is not None
        body = orjson.dumps(render_for(row.surface, store.view_of(row)))
        refused = False
        try:
            await check_address(row.notify_hook, settings.webhook_allow_private)
            ok = await deliver(
                self.gateway.http,
                row.notify_hook,
                body,
                secret=self.engine.hook_secret,
                task_id=row.public_id,
                timeout_s=settings.webhook_timeout_s,
                allow_private=settings.webhook_allow_private,
            )
        except HookRefused:
            ok, refused = False, True
        attempts = row.hook_attempts + 1
        give_up = refused or attempts >= settings.webhook_attempts
        retry_at = time.time() + settings.webhook_backoff_s * 2 ** (attempts - 1)
        async with self.gateway.sessions.begin() as session:
            await store.record_hook(session, row, delivered=ok, give_up=give_up, retry_at=retry_at)
        if not ok:
            log.warning("task_webhook_failed", task=row.public_id, attempt=attempts, give_up=give_up)
