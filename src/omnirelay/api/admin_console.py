"""Admin API routes the console's pages need beyond the CRUD in ``api/admin.py``: a window's totals (with latency
percentiles over all of its rows), each channel's latest health check, and the async tasks (read-only).

Mounted into the same FastAPI app, so the same auth (bearer token or console session) and error shape apply.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from omnirelay.api.account import epoch_iso, iso, usd
from omnirelay.api.admin import Cursor, Filters, Limit, Store, page_of
from omnirelay.api.admin_models import ChannelCheckOut, Page, micros
from omnirelay.store import console_repo
from omnirelay.store.models import Task


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


class TaskOut(BaseModel):
    id: str = Field(description="The task's public id.")
    vendor: str
    action: str
    model: str
    account_id: int
    key_id: int | None
    channel_id: int
    status: str
    progress: int
    prompt: str
    results: dict[str, Any] = Field(description="Unified results: images, videos, audio (each with url), text.")
    error: str | None
    cost_usd: str
    cost_micros: int
    billing: str = Field(description="charged, settled or refunded")
    submitted_at: str | None
    finished_at: str | None

    @classmethod
    def from_row(cls, row: Task) -> TaskOut:
        return cls(
            id=row.public_id,
            vendor=row.vendor,
            action=row.action,
            model=row.model,
            account_id=row.account_id,
            key_id=row.key_id,
            channel_id=row.channel_id,
            status=row.status,
            progress=row.progress,
            prompt=row.prompt[:500],
            results=dict(row.results or {}),
            error=row.error,
            **micros("cost", row.cost_micros),
            billing=row.billing,
            submitted_at=epoch_iso(row.submitted_at),
            finished_at=epoch_iso(row.finished_at),
        )


TaskStatus = Literal["SUBMITTED", "QUEUED", "IN_PROGRESS", "SUCCESS", "FAILURE"]


def console_router(store: Store) -> APIRouter:
    router = APIRouter(tags=["console"])

    @router.get("/usage/summary", summary="A window's totals, error rate and latency percentiles (default: 24 h)")
    async def usage_summary(filters: Filters) -> UsageSummaryOut:
        end = filters.end or datetime.now(UTC)
        start = filters.start or end - timedelta(days=1)
        async with store.read() as session:
            totals = await console_repo.usage_summary(session, dataclasses.replace(filters, start=start, end=end))
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
