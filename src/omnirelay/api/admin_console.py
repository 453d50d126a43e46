"""Admin API routes the console's pages need beyond the CRUD in ``api/admin.py``: a window's totals (with latency
percentiles over all of its rows), each channel's latest health check, and the async tasks (read-only).

Mounted into the same FastAPI app, so the same auth (bearer token or console session) and error shape apply.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from omnirelay.api.account import iso, usd
from omnirelay.api.admin import Cursor, Filters, Limit, Store, page_of
from omnirelay.api.admin_models import ChannelCheckOut, Page, TaskOut
from omnirelay.store import console_repo, usage_stats


class UsageSummaryOut(BaseModel):
    start: str | None
    end: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: str
    cost_micros: int
    errors: int = Field(description="Calls that ended with status 400 or above.")
    error_rate: float | None = Field(description="errors / requests; null without requests.")
    p50_latency_ms: float | None
    p95_latency_ms: float | None


TaskStatus = Literal["SUBMITTED", "QUEUED", "IN_PROGRESS", "SUCCESS", "FAILURE"]


def console_router(store: Store) -> APIRouter:
    router = APIRouter(tags=["console"])

    @router.get("/usage/summary", summary="A window's totals, error rate and latency percentiles (default: 24 h)")
    async def usage_summary(filters: Filters) -> UsageSummaryOut:
        end = filters.end or datetime.now(UTC)
        start = filters.start or end - timedelta(days=1)
        async with store.read() as session:
            totals = await usage_stats.usage_summary(session, dataclasses.replace(filters, start=start, end=end))
        return UsageSummaryOut(
            start=iso(start),
            end=iso(end),
            requests=totals.requests,
            prompt_tokens=totals.prompt_tokens,
            completion_tokens=totals.completion_tokens,
            cost_usd=usd(totals.cost_micros),
            cost_micros=totals.cost_micros,
            errors=totals.errors,
            error_rate=totals.errors / totals.requests if totals.requests else None,
            p50_latency_ms=totals.p50_latency_ms,
            p95_latency_ms=totals.p95_latency_ms,
        )

    @router.get("/channel-checks/latest", summary="Each channel's newest health check")
    async def latest_checks() -> list[ChannelCheckOut]:
        async with store.read() as session:
            rows = await console_repo.latest_checks(session)
        return [ChannelCheckOut.from_row(row) for row in rows]

    @router.get("/tasks", summary="Async tasks, newest first (read-only)")
    async def list_tasks(
        limit: Limit = 50,
        cursor: Cursor = None,
        status: Annotated[TaskStatus | None, Query()] = None,
        account_id: int | None = None,
    ) -> Page[TaskOut]:
        async with store.read() as session:
            rows = await console_repo.tasks_page(
                session, limit=limit, before=cursor, status=status, account_id=account_id
            )
        return page_of([TaskOut.from_row(r) for r in rows], [r.id for r in rows], limit)

    return router
