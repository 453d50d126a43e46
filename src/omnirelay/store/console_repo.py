"""Queries behind the admin console: sign-in sessions, the dashboard's totals, channels' latest checks, tasks.

Like ``admin_repo``, never on the relay path; every usage query is a range on ``created_at`` (plus equality
filters) so the ``ix_usage_*_created`` indexes apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnirelay.store.admin_repo import UsageFilter
from omnirelay.store.models import AdminSession, Channel, ChannelCheck, Task, UsageLog
from omnirelay.store.sessions import SessionTable

# --- sessions -------------------------------------------------------------------------------------------------

admin_sessions = SessionTable(AdminSession, owner="subject")
create_session = admin_sessions.create
live_session = admin_sessions.live
end_session = admin_sessions.end


# --- dashboard ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class UsageSummary:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    errors: int
    p50_latency_ms: float | None
    p95_latency_ms: float | None


async def usage_summary(session: AsyncSession, filters: UsageFilter) -> UsageSummary:
    """Totals of a window, with latency percentiles over all of its rows (not an average of buckets' ones)."""
    where = filters.conditions()
    totals = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(UsageLog.prompt_tokens), 0),
                func.coalesce(func.sum(UsageLog.completion_tokens), 0),
                func.coalesce(func.sum(UsageLog.cost_micros), 0),
                func.coalesce(func.sum(case((UsageLog.status_code >= 400, 1), else_=0)), 0),
            ).where(*where)
        )
    ).one()
    requests = int(totals[0])
    p50 = p95 = None
    if requests and session.get_bind().dialect.name == "postgresql":
        p50, p95 = (
            await session.execute(
                select(
                    func.percentile_cont(0.5).within_group(UsageLog.latency_ms),
                    func.percentile_cont(0.95).within_group(UsageLog.latency_ms),
                ).where(*where)
            )
        ).one()
    elif requests:
        # SQLite has no percentile function: read the two or four ranks around each fraction, in order.
        p50, p95 = await _ranked_percentiles(session, filters, requests, (0.5, 0.95))
    return UsageSummary(
        requests,
        int(totals[1]),
        int(totals[2]),
        int(totals[3]),
        int(totals[4]),
        None if p50 is None else float(p50),
        None if p95 is None else float(p95),
    )


async def _ranked_percentiles(
    session: AsyncSession, filters: UsageFilter, count: int, fractions: tuple[float, ...]
) -> list[float | None]:
    out: list[float | None] = []
    for fraction in fractions:
        low = int(fraction * (count - 1))
        query = (
            select(UsageLog.latency_ms).where(*filters.conditions()).order_by(UsageLog.latency_ms).offset(low).limit(2)
        )
        values = [float(v) for v in (await session.scalars(query)).all()]
        # Linear between the two neighbouring ranks: what percentile_cont (and admin_repo.percentile) computes.
        position = fraction * (count - 1) - low
        out.append(None if not values else values[0] + ((values[-1] - values[0]) * position))
    return out


async def latest_checks(session: AsyncSession) -> list[ChannelCheck]:
    """Each channel's newest health check: one index probe per channel (the checks table keeps growing)."""
    newest_of_channel = (
        select(ChannelCheck.id)
        .where(ChannelCheck.channel_id == Channel.id)
        .order_by(ChannelCheck.checked_at.desc(), ChannelCheck.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    newest = select(newest_of_channel).select_from(Channel)
    query = select(ChannelCheck).where(ChannelCheck.id.in_(newest)).order_by(ChannelCheck.channel_id)
    return list((await session.scalars(query)).all())


# --- tasks ----------------------------------------------------------------------------------------------------


async def tasks_page(
    session: AsyncSession,
    *,
    limit: int,
    before: int | None = None,
    status: str | None = None,
    account_id: int | None = None,
) -> list[Task]:
    """Newest first; ``before`` is the last id of the previous page."""
    query = select(Task).order_by(Task.id.desc()).limit(limit)
    if before is not None:
        query = query.where(Task.id < before)
    if status is not None:
        query = query.where(Task.status == status)
    if account_id is not None:
        query = query.where(Task.account_id == account_id)
    return list((await session.scalars(query)).all())
