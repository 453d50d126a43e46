"""Task rows and the money that moves with them, one transaction per step.

Every state change that moves money is a compare-and-set on ``status``: the ``UPDATE`` names the statuses it
expects, and the ledger entry is written in the same transaction only if the row changed. Two pollers (or a
poller and a timeout sweep) racing to end a task therefore end it once and refund it at most once.

All task money entries are ``settlement`` entries under ``ref = public_id``: the charge at submit (negative), the
difference when a success is re-priced (either sign), the refund of a failure (positive). They move
``accounts.debits_micros``, the month's debits and ``api_keys.spent_micros`` like the batch writer's settlements,
so balances, key caps and the ledger always agree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnirelay.providers.task_vendors.base import ACTIVE_STATUSES, TaskResults, TaskUpdate, TaskView
from omnirelay.store.models import Account, ApiKey, LedgerEntry, Task
from omnirelay.store.rollup import RollupWriter
from omnirelay.store.usage_row import usage_row
from omnirelay.store.writer import UsageInsert, month_key


def view_of(row: Task) -> TaskView:
    return TaskView(
        public_id=row.public_id,
        vendor=row.vendor,
        model=row.model,
        action=row.action,
        status=row.status,  # type: ignore[arg-type]
        progress=row.progress,
        results=TaskResults.from_json(row.results),
        error=row.error,
        prompt=row.prompt,
        submitted_at=row.submitted_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        updated_at=row.updated_at,
        request=dict(row.request or {}),
        raw=dict(row.raw or {}),
        parent=row.parent_id,
        cost_micros=row.cost_micros,
    )


async def _move_money(
    session: AsyncSession, *, account_id: int, key_id: int | None, charge: int, ref: str, reason: str, month: str
) -> None:
    """Post a task settlement of ``-charge`` (a negative charge is a refund) and move the cached sums."""
    if not charge:
        return
    await session.execute(
        insert(LedgerEntry).values(
            account_id=account_id,
            kind="settlement",
            amount_micros=-charge,
            reason=reason,
            ref=ref,
            key_id=key_id,
            created_at=datetime.now(UTC),
        )
    )
    current = month_key(datetime.now(UTC))
    month_debits = (
        case((Account.month_key == current, Account.month_debits_micros + charge), else_=charge)
        if month == current
        else Account.month_debits_micros  # an old month's charge changes that month's total, not this one's
    )
    values: dict[str, Any] = {"debits_micros": Account.debits_micros + charge, "month_debits_micros": month_debits}
    if month == current:
        values["month_key"] = current
    await session.execute(update(Account).where(Account.id == account_id).values(**values))
    if key_id is not None:
        await session.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(spent_micros=ApiKey.spent_micros + charge)
        )


async def insert_charged(session: AsyncSession, row: Task, *, endpoint: str, client_ip: str | None) -> None:
    """The accepted submit: the task row, its charge in the ledger and a usage row, in one transaction."""
    session.add(row)
    await session.flush()
    now = datetime.now(UTC)
    await _move_money(
        session,
        account_id=row.account_id,
        key_id=row.key_id,
        charge=row.cost_micros,
        ref=row.public_id,
        reason=f"task {row.vendor} {row.action} {row.model}",
        month=month_key(now),
    )
    usage = usage_row(
        request_id=row.public_id,
        created_at=now,
        key_id=row.key_id,
        account_id=row.account_id,
        endpoint=endpoint[:64],
        model=row.model,
        upstream_model=row.upstream_model,
        channel_id=row.channel_id,
        status_code=200,
        cost_micros=row.cost_micros,
        client_ip=client_ip,
    )
    connection = await session.connection()  # the row and its hourly rollups in the same transaction
    dialect = connection.dialect.name
    await UsageInsert(dialect).execute(connection, [usage])
    await RollupWriter(dialect).add(connection, [usage])


async def get_by_public_id(session: AsyncSession, public_id: str) -> Task | None:
    return await session.scalar(select(Task).where(Task.public_id == public_id))


async def get_many(session: AsyncSession, public_ids: Sequence[str], account_id: int) -> list[Task]:
    if not public_ids:
        return []
    rows = await session.scalars(
        select(Task).where(Task.public_id.in_(list(public_ids)), Task.account_id == account_id)
    )
    return list(rows)


async def claim(session: AsyncSession, owner: str, *, now: float, lease_s: float, limit: int) -> list[Task]:
    """Take the due tasks this instance owns, or nobody owns, or whose owner's lease ran out.

    On PostgreSQL the candidate rows are locked with ``FOR UPDATE SKIP LOCKED``, so instances claiming at the same
    moment get disjoint sets; SQLite serializes writers, so the ``UPDATE`` alone is atomic. The lease is sticky:
    the owner renews it on every poll, so one task is polled by one instance for as long as that instance lives.
    """
    due = or_(Task.status.in_(ACTIVE_STATUSES), Task.hook_state == "pending")
    free = or_(Task.lease_owner.is_(None), Task.lease_owner == owner, Task.lease_until < now)
    candidates = select(Task.id).where(due, Task.next_poll_at <= now, free).order_by(Task.next_poll_at).limit(limit)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    ids = list(await session.scalars(candidates))
    if not ids:
        return []
    await session.execute(
        update(Task)
        .where(Task.id.in_(ids), free)
        .values(lease_owner=owner, lease_until=now + lease_s)
        .execution_options(synchronize_session=False)
    )
    rows = await session.scalars(
        select(Task).where(Task.id.in_(ids), Task.lease_owner == owner).execution_options(populate_existing=True)
    )
    return list(rows)


async def record_progress(
    session: AsyncSession, row: Task, update_: TaskUpdate | None, *, owner: str, next_poll_at: float, lease_s: float
) -> bool:
    """An unfinished poll: new status and progress (None: the poll failed), the next poll, the lease renewed."""
    now = time.time()
    values: dict[str, Any] = {
        "polls": Task.polls + 1,
        "next_poll_at": next_poll_at,
        "lease_until": next_poll_at + lease_s,
        "updated_at": now,
    }
    if update_ is not None:
        values.update(status=update_.status, progress=max(update_.progress, row.progress), raw=update_.raw)
        if update_.status == "IN_PROGRESS" and row.started_at is None:
            values["started_at"] = now
    result = await session.execute(
        update(Task)
        .where(Task.id == row.id, Task.status.in_(ACTIVE_STATUSES), Task.lease_owner == owner)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Ending:
    status: str
    results: TaskResults
    error: str | None
    raw: dict[str, Any]
    final_cost: int
    """What the task costs in the end: the re-priced charge on success, 0 on failure."""


async def finish(session: AsyncSession, row: Task, ending: Ending, *, hook_at: float | None = None) -> int | None:
    """End the task once: compare-and-set from an active status, and post the money difference in the same
    transaction. Returns the difference charged (negative: refunded), or None if another poller ended it.
    ``hook_at``: when the webhook is next due (the caller delivers it at once; this is the retry if that dies)."""
    now = time.time()
    delta = ending.final_cost - row.cost_micros
    values: dict[str, Any] = {
        "status": ending.status,
        "progress": 100 if ending.status == "SUCCESS" else row.progress,
        "results": ending.results.to_json(),
        "error": ending.error,
        "raw": ending.raw or row.raw,
        "cost_micros": ending.final_cost,
        "billing": "settled" if ending.status == "SUCCESS" else "refunded",
        "finished_at": now,
        "updated_at": now,
        "next_poll_at": hook_at if hook_at is not None else now,
    }
    if row.started_at is None:
        values["started_at"] = now
    if row.notify_hook:
        values["hook_state"] = "pending"
    result = await session.execute(
        update(Task)
        .where(Task.id == row.id, Task.status.in_(ACTIVE_STATUSES), Task.billing == "charged")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    what = "refund" if ending.status != "SUCCESS" else "re-priced"
    await _move_money(
        session,
        account_id=row.account_id,
        key_id=row.key_id,
        charge=delta,
        ref=row.public_id,
        reason=f"task {what} {row.vendor} {row.action} {row.model}",
        month=month_key(datetime.fromtimestamp(row.submitted_at, UTC)),
    )
    return delta


async def record_hook(session: AsyncSession, row: Task, *, delivered: bool, give_up: bool, retry_at: float) -> None:
    state = "delivered" if delivered else ("failed" if give_up else "pending")
    await session.execute(
        update(Task)
        .where(Task.id == row.id)
        .values(hook_state=state, hook_attempts=Task.hook_attempts + 1, next_poll_at=retry_at)
        .execution_options(synchronize_session=False)
    )


async def release_leases(session: AsyncSession, owner: str) -> None:
    """A graceful stop hands this instance's tasks to whoever polls next."""
    await session.execute(
        update(Task)
        .where(Task.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
