"""The task engine: submit with failover and a durable charge, read tasks back, wait for them.

Submit, in order: the key may use the model; the webhook address is allowed; the rate limit; the price; a budget
hold for the estimate (the same atomic reservation chat calls make, so a task cannot overdraw a balance); the
upstream submit, trying the model's channels in routing order (a 5xx, 429 or unreachable channel passes to the
next; a refusal of the request itself ends the submit); then, once an upstream accepted, one database transaction
writes the task row, its ledger charge and a usage row, and the hold is settled at that charge. A refused submit
writes nothing and releases the hold. The charge lives in the database from then on, so it survives restarts; the
poller (``tasks.poller``) settles or refunds it when the task ends.

If the process dies between the upstream's acceptance and the commit, that one task runs upstream unrecorded and
unbilled (the client got no id either): the narrow window is the price of never billing a refused submit.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import aiohttp
import orjson
import structlog

from omnirelay.api.admission import scopes_of
from omnirelay.billing.cost import PriceUnavailable, cost_of_images, cost_of_seconds, cost_of_task
from omnirelay.billing.prices import Price
from omnirelay.crypto import upstream_key_id
from omnirelay.errors import Blame, ErrorCode, GatewayError
from omnirelay.gateway import Gateway, master_key_for
from omnirelay.metrics import TaskCounts
from omnirelay.providers.task_vendors import vendor_for_channel_type
from omnirelay.providers.task_vendors.base import (
    FINAL_STATUSES,
    PriceUnit,
    Submission,
    SubmitRefused,
    TaskVendor,
    TaskView,
    UpstreamCall,
    new_public_id,
)
from omnirelay.routing.registry import Candidate, RoutePlan, UpstreamKey, key_target
from omnirelay.store.models import Task
from omnirelay.store.snapshot import ChannelRecord, KeyRecord
from omnirelay.tasks import store
from omnirelay.tasks.storage import LocalStore
from omnirelay.tasks.webhooks import HookRefused, check_address

log = structlog.get_logger(__name__)

SubmissionFor = Callable[[TaskVendor], Submission]
"""Builds the submission for the family of the channel being tried (see ``TaskVendor.from_unified``)."""

UPSTREAM_MESSAGE_LIMIT = 300


def unit_of(vendor: TaskVendor, price: Price) -> PriceUnit | None:
    """The unit a model is billed by: the family's preferred one if its price has it, else the one it has."""
    units: dict[PriceUnit, bool] = {
        "task": price.per_task is not None,
        "second": price.per_second is not None,
        "image": price.per_image is not None,
    }
    if units[vendor.price_unit]:
        return vendor.price_unit
    return next((unit for unit, ok in units.items() if ok), None)


def price_task(vendor: TaskVendor, price: Price, submission: Submission, multiplier: Fraction) -> int:
    """The charge of a submission: ``per_task`` x quantity, ``per_second`` x seconds x quantity, or ``per_image``
    x quantity."""
    if price.free:
        return 0
    unit = unit_of(vendor, price)
    try:
        if unit == "task":
            return cost_of_task(price, submission.option, count=int(submission.quantity), multiplier=multiplier)
        if unit == "second":
            duration = submission.seconds or vendor.default_seconds
            return cost_of_seconds(price, Fraction(duration) * Fraction(submission.quantity), multiplier)
        if unit == "image":
            return cost_of_images(price, int(submission.quantity), size=submission.option, multiplier=multiplier)
    except (PriceUnavailable, ValueError, TypeError):
        pass
    raise GatewayError(
        ErrorCode.not_priced,
        f"The model '{submission.model}' has no per-task, per-second or per-image price configured.",
        param="model",
    )


def key_secret(channel: ChannelRecord, key_id: str | None) -> str:
    """The channel key a task was submitted with (polls must use the same upstream account)."""
    for secret in channel.api_keys:
        if upstream_key_id(secret) == key_id:
            return secret
    return channel.api_keys[0] if channel.api_keys else ""


def task_not_found() -> GatewayError:
    return GatewayError(ErrorCode.not_found, "Task not found")


class TaskEngine:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings.tasks
        self.owner = self.settings.instance_id or "gw-" + new_public_id("")[:12]
        self.files = (
            LocalStore(
                self.settings.storage_dir,
                max_bytes=self.settings.result_max_bytes,
                allow_private=gateway.settings.media_fetch_allow_private,
                timeout_s=self.settings.result_fetch_timeout_s,
            )
            if self.settings.store_results
            else None
        )
        secret = self.settings.webhook_secret
        self.hook_secret = (
            secret.encode()
            if secret
            else hashlib.sha256(b"omnirelay-webhooks\x00" + master_key_for(gateway.settings).encode()).digest()
        )
        self._ended: dict[str, asyncio.Event] = {}
        self.counts = TaskCounts()
        """Submits and finishes for ``/metrics`` (``create_app`` shares the relay's)."""

    @property
    def user_agent(self) -> str:
        return f"omnirelay-tasks/{self.owner}"

    # --- upstream calls ----------------------------------------------------------------------------------------

    async def call_upstream(
        self, vendor: TaskVendor, channel: ChannelRecord, api_key: str, call: UpstreamCall
    ) -> tuple[int, bytes]:
        """One request to a task upstream; connection failures and timeouts become channel-blamed errors."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            **channel.headers,
            **vendor.auth_headers(api_key),
            **call.headers,
        }
        body = orjson.dumps(call.body) if call.body is not None else None
        timeout = aiohttp.ClientTimeout(total=min(channel.timeout_s, 120.0), connect=channel.connect_timeout_s)
        try:
            async with self.gateway.http.request(
                call.method,
                channel.base_url + call.path,
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as answer:
                return answer.status, await answer.read()
        except TimeoutError as exc:
            raise GatewayError(ErrorCode.upstream_timeout, f"upstream channel '{channel.name}' timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise GatewayError(
                ErrorCode.upstream_error,
                f"upstream channel '{channel.name}' is unreachable ({type(exc).__name__})",
            ) from exc

    def _refusal(self, channel: ChannelRecord, status: int, message: str | None) -> GatewayError:
        code = ErrorCode.from_upstream_status(status)
        if code.spec.blame is Blame.request and message:
            text = f"The upstream refused the task: {message[:UPSTREAM_MESSAGE_LIMIT]}"
        else:
            text = f"upstream channel '{channel.name}' answered HTTP {status}"
        return GatewayError(code, text, upstream_status=status)

    async def _submit_to(
        self, vendor: TaskVendor, submission: Submission, candidate: Candidate, parent_upstream: str | None
    ) -> str:
        call = vendor.submit_call(submission, candidate.upstream_model, parent_upstream)
        status, body = await self.call_upstream(vendor, candidate.channel, candidate.api_key, call)
        if status >= 300:
            raise self._refusal(candidate.channel, status, _message_of(body))
        try:
            return vendor.task_ref(submission, vendor.read_submit(status, body))
        except SubmitRefused as refused:
            raise self._refusal(candidate.channel, refused.status, refused.message) from refused
        except (orjson.JSONDecodeError, ValueError, TypeError):
            raise GatewayError(
                ErrorCode.upstream_error, f"upstream channel '{candidate.channel.name}' answered an unreadable body"
            ) from None

    # --- submit ------------------------------------------------------------------------------------------------

    async def submit(
        self,
        key: KeyRecord,
        model: str,
        build: SubmissionFor,
        *,
        surface: str,
        parent: str | None = None,
        notify_hook: str | None = None,
        client_ip: str | None = None,
    ) -> TaskView:
        try:
            view = await self._submit(key, model, build, surface, parent, notify_hook, client_ip)
        except GatewayError as err:
            self.counts.submits.inc(surface, err.code.name)
            raise
        self.counts.submits.inc(surface, "accepted")
        return view

    async def _submit(
        self,
        key: KeyRecord,
        model: str,
        build: SubmissionFor,
        surface: str,
        parent: str | None,
        notify_hook: str | None,
        client_ip: str | None,
    ) -> TaskView:
        gateway = self.gateway
        gateway.check_model(key, model)
        if notify_hook:
            try:
                await check_address(notify_hook, self.settings.webhook_allow_private)
            except HookRefused as exc:
                raise GatewayError(
                    ErrorCode.invalid_request, f"notify_hook refused: {exc}", param="notify_hook"
                ) from None
        parent_row = await self.get(parent, key) if parent else None
        candidates = self._candidates(model, parent_row)
        candidates.build = build
        first = candidates.peek()
        if first is None:
            raise candidates.unavailable()
        first_vendor, first_submission = first
        price = gateway.billing.price_for(model, candidates.primary_upstream_model)
        estimate = price_task(first_vendor, price, first_submission, key.multiplier)
        scopes = scopes_of(key)
        if scopes:
            decision = await gateway.limiter.check_and_consume(scopes, 0)
            if not decision.allowed:
                raise GatewayError(
                    ErrorCode.rate_limited,
                    f"Rate limit reached for this API key. Please try again in {decision.retry_after_s:.1f}s.",
                    retry_after=decision.retry_after_s,
                )
        public_id = new_public_id(first_vendor.public_id_prefix)
        hold = await gateway.billing.reserve(public_id, key, price, estimate) if key.budgeted and estimate else None
        try:
            candidate, vendor, submission, upstream_id = await self._send(candidates, parent_row)
            cost = price_task(vendor, price, submission, key.multiplier)
            row = self._row(public_id, key, candidate, vendor, submission, upstream_id, cost, surface, parent_row)
            row.notify_hook = notify_hook or submission.notify_hook
            try:
                async with gateway.sessions.begin() as session:
                    await store.insert_charged(
                        session, row, endpoint=f"task:{vendor.name}:{submission.action}", client_ip=client_ip
                    )
            except Exception as exc:  # the upstream runs it, unrecorded: leave the operator what reconciles it
                log.error(
                    "task_record_lost",
                    channel=candidate.channel.name,
                    upstream_id=upstream_id,
                    model=submission.model,
                    error=type(exc).__name__,
                )
                raise GatewayError(
                    ErrorCode.internal, "The task could not be recorded; it is not billed. Please submit it again."
                ) from None
        except BaseException:
            if hold is not None:
                await gateway.billing.settle(hold, 0)
            raise
        if hold is not None:
            await gateway.billing.settle(hold, cost)
        log.info("task_submitted", task=public_id, vendor=vendor.name, model=model, cost_micros=cost)
        return store.view_of(row)

    def _row(
        self,
        public_id: str,
        key: KeyRecord,
        candidate: Candidate,
        vendor: TaskVendor,
        submission: Submission,
        upstream_id: str,
        cost: int,
        surface: str,
        parent_row: Task | None,
    ) -> Task:
        now = time.time()
        first_poll = now + vendor.poll.first_s * self.settings.poll_interval_scale
        return Task(
            public_id=public_id,
            vendor=vendor.name,
            surface=surface,
            action=submission.action,
            model=submission.model,
            upstream_model=candidate.upstream_model,
            account_id=key.account_id,
            key_id=key.id,
            channel_id=candidate.channel.id,
            upstream_key_id=candidate.key.id if candidate.key.secret else None,
            upstream_id=upstream_id,
            parent_id=parent_row.public_id if parent_row is not None else None,
            status="SUBMITTED",
            progress=0,
            prompt=submission.prompt,
            request=submission.payload,
            results={},
            error=None,
            raw={},
            price_option=submission.option,
            quantity=_quantity_text(submission),
            cost_micros=cost,
            billing="charged",
            hook_state=None,
            hook_attempts=0,
            polls=0,
            next_poll_at=first_poll,
            lease_owner=None,
            lease_until=None,
            submitted_at=now,
            updated_at=now,
        )

    def _candidates(self, model: str, parent_row: Task | None) -> _Candidates:
        if parent_row is None:
            return _Candidates(self.gateway.router.plan(model))
        channel = next((c for c in self.gateway.snapshot.channels if c.id == parent_row.channel_id), None)
        if channel is None or not channel.enabled:
            raise GatewayError(ErrorCode.no_channel, "The channel that ran the original task is no longer available.")
        secret = key_secret(channel, parent_row.upstream_key_id)
        key = UpstreamKey(secret, upstream_key_id(secret), key_target(channel.id, upstream_key_id(secret)))
        return _Candidates(None, Candidate(channel, channel.upstream_model(model), key, f"channel:{channel.id}"))

    async def _send(
        self, candidates: _Candidates, parent_row: Task | None
    ) -> tuple[Candidate, TaskVendor, Submission, str]:
        router = self.gateway.router
        attempts = 0
        blame: Blame | None = None
        last_error: GatewayError | None = None
        while attempts < router.policy.max_attempts:
            picked = candidates.next(blame)
            if picked is None:
                break
            candidate, vendor, submission = picked
            attempts += 1
            parent_upstream = parent_row.upstream_id if parent_row is not None else None
            try:
                upstream_id = await self._submit_to(vendor, submission, candidate, parent_upstream)
            except GatewayError as err:
                router.failed(candidate, err)
                last_error, blame = err, err.code.spec.blame
                log.warning("task_submit_failed", channel=candidate.channel.name, code=err.code.name)
                if not err.retryable:
                    if isinstance(err.__cause__, SubmitRefused):
                        raise err.__cause__ from None  # a refusal of the request itself: the family words it
                    break
                continue
            router.succeeded(candidate)
            return candidate, vendor, submission, upstream_id
        raise last_error or candidates.unavailable()

    # --- reading -----------------------------------------------------------------------------------------------

    async def get(self, public_id: str, key: KeyRecord) -> Task:
        """The task, if it belongs to the key's account; another account's id is 'not found' as well."""
        async with self.gateway.sessions() as session:
            row = await store.get_by_public_id(session, public_id)
        if row is None or row.account_id != key.account_id:
            raise task_not_found()
        return row

    async def get_many(self, public_ids: list[str], key: KeyRecord) -> list[Task]:
        async with self.gateway.sessions() as session:
            rows = await store.get_many(session, public_ids, key.account_id)
        order = {pid: i for i, pid in enumerate(public_ids)}
        return sorted(rows, key=lambda r: order.get(r.public_id, 0))

    async def wait(self, public_id: str, key: KeyRecord, seconds: float) -> Task:
        """The task once it ended, or as it stands after ``seconds`` (capped by ``max_wait_s``). Ends seen by this
        instance wake the waiter at once; ends seen by another instance are found by re-reading every 0.25 s."""
        row = await self.get(public_id, key)
        deadline = time.monotonic() + min(max(seconds, 0.0), self.settings.max_wait_s)
        while row.status not in FINAL_STATUSES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            event = self._ended.setdefault(public_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), min(left, 0.25))
            except TimeoutError:
                pass
            row = await self.get(public_id, key)
        if row.status in FINAL_STATUSES:
            self._ended.pop(public_id, None)
        return row

    def ended(self, public_id: str, vendor: str, status: str) -> None:
        """This instance ended the task (``Poller.finish``): wake its waiters, count it."""
        self.counts.finishes.inc(vendor, status)
        event = self._ended.pop(public_id, None)
        if event is not None:
            event.set()


class _Candidates:
    """The plan's candidates that speak a task family, each with the submission built for that family."""

    def __init__(self, plan: RoutePlan | None, pinned: Candidate | None = None) -> None:
        self.plan = plan
        self.pinned = pinned
        self._pinned_model = pinned.upstream_model if pinned is not None else None
        self.build: SubmissionFor | None = None
        self._peeked: tuple[Candidate, TaskVendor, Submission] | None = None
        self._first_error: GatewayError | None = None

    @property
    def primary_upstream_model(self) -> str | None:
        if self.plan is None:
            return self._pinned_model
        return self.plan.primary_upstream_model

    def _raw_next(self, blame: Blame | None) -> Candidate | None:
        if self.pinned is not None:
            pinned, self.pinned = self.pinned, None
            return pinned
        if self.plan is None:
            return None
        return self.plan.next(blame)

    def next(self, blame: Blame | None = None) -> tuple[Candidate, TaskVendor, Submission] | None:
        if self._peeked is not None:
            peeked, self._peeked = self._peeked, None
            return peeked
        assert self.build is not None
        while True:
            candidate = self._raw_next(blame)
            if candidate is None:
                return None
            vendor = vendor_for_channel_type(candidate.channel.type)
            if vendor is None:  # a chat channel that happens to list the model
                blame = Blame.channel
                continue
            try:
                return candidate, vendor, self.build(vendor)
            except GatewayError as err:  # this family cannot express the call; another channel may
                self._first_error = self._first_error or err
                blame = Blame.channel

    def peek(self) -> tuple[TaskVendor, Submission] | None:
        if self._peeked is None:
            self._peeked = self.next()
        return None if self._peeked is None else (self._peeked[1], self._peeked[2])

    def unavailable(self) -> GatewayError:
        if self._first_error is not None:
            return self._first_error
        if self.plan is None:
            return GatewayError(ErrorCode.no_channel, "No channel is available for this task.")
        return self.plan.unavailable()


def _quantity_text(submission: Submission) -> str:
    seconds = "" if submission.seconds is None else f"/{Fraction(submission.seconds)}"
    return f"{Fraction(submission.quantity)}{seconds}"


def _message_of(body: bytes) -> str | None:
    """A short human message from a vendor's error body, whatever its shape."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    for path in ("description", "message", "detail", "error.message", "error", "msg"):
        value: Any = data
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            return value
    return None
