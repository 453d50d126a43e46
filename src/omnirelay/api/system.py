"""The System API, mounted at ``/api/v1``: what a customer scripts about its own account.

OpenAPI at ``/api/v1/openapi.json`` (browsable at ``/api/v1/docs``). Auth: ``Authorization: Bearer <access
token>`` (minted at ``POST /api/v1/tokens``), or the user session cookie plus ``X-CSRF-Token`` on changes (see
``api/users.py``). Errors, paging and money are shaped as in the admin API: ``{"error": {"code", "message",
"field"}}``, a 422 naming the first bad field; lists page with ``?limit=&cursor=`` and answer ``next_cursor``.

* ``GET /account``: display name, balance, used amount, request count, group and its price ratio.
* ``/keys``: list (masked), create (the key shown once), get, ``PATCH`` (name, spend cap or ``null`` for
  unlimited, allowed models, allowed IPs, expiry, rpm/tpm/concurrency), ``POST /keys/{id}/enable|disable``,
  ``DELETE``. A change reaches every instance within a second (the config version the admin API bumps too).
* ``GET /logs``: one ``type`` at a time (``consumption``: the calls, with tokens and cost; ``topup``, ``refund``,
  ``adjustment``: ledger entries), filtered by time range, key name and model, newest first.
* ``GET /usage/aggregate``: totals per UTC day and per model over a window.
* ``GET /tasks`` (time range, status) and ``GET /tasks/{id}``; ``POST /topup`` (a redemption code);
  ``GET /ledger``; ``GET /models`` (what the account may call, with list prices and its ratio).

Every query is filtered by the caller's account: another account's key, log row or task is a 404.
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from omnirelay.api.account import available_micros, iso, usd
from omnirelay.api.admin import (
    AdminError,
    Cursor,
    Limit,
    Store,
    _key_columns,
    _on_admin_error,
    _on_conflict,
    _on_database_error,
    _on_http_error,
    _on_validation_error,
    conflict,
    invalid,
    not_found,
    page_of,
)
from omnirelay.api.admin_models import LedgerOut, OwnTaskOut, Page
from omnirelay.api.system_models import (
    LEDGER_KINDS,
    AccountInfoOut,
    DayTotalsOut,
    LogRowOut,
    LogType,
    ModelPriceOut,
    ModelTotalsOut,
    NewOwnKeyOut,
    OwnKeyIn,
    OwnKeyOut,
    OwnKeyPatch,
    RedeemIn,
    RedeemOut,
    TotalsOut,
    UsageAggregateOut,
)
from omnirelay.api.users import Principal, UserRoutes, routers
from omnirelay.billing.prices import price_to_spec
from omnirelay.gateway import Gateway
from omnirelay.store import admin_repo, repo, usage_stats, user_repo
from omnirelay.store.models import Account, ApiKey, Group

TaskStatus = Literal["SUBMITTED", "QUEUED", "IN_PROGRESS", "SUCCESS", "FAILURE"]
Start = Annotated[datetime | None, Query(description="ISO time, inclusive (UTC when no offset)")]
End = Annotated[datetime | None, Query(description="ISO time, exclusive")]


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    start = None if start is None else admin_repo.utc(start)
    end = None if end is None else admin_repo.utc(end)
    if start is not None and end is not None and end <= start:
        raise invalid("end", "must be after start")
    return start, end


def create_system_api(gateway: Gateway) -> tuple[FastAPI, UserRoutes]:
    api = FastAPI(
        title="omnirelay System API",
        version="1",
        description=__doc__,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api.add_exception_handler(AdminError, _on_admin_error)
    api.add_exception_handler(RequestValidationError, _on_validation_error)
    api.add_exception_handler(StarletteHTTPException, _on_http_error)
    api.add_exception_handler(IntegrityError, _on_conflict)
    for unreachable in (OperationalError, InterfaceError, PoolTimeout, OSError):
        api.add_exception_handler(unreachable, _on_database_error)
    store = Store(gateway)
    user_routes, user_routers = routers(store)
    system = SystemRoutes(store, user_routes)
    for router in (*user_routers, system.account(), system.keys(), system.logs(), system.tasks(), system.money()):
        api.include_router(router)
    api.state.users = user_routes  # where the email-verification hook (UserRoutes.on_signup) is installed
    return api, user_routes


class SystemRoutes:
    def __init__(self, store: Store, users: UserRoutes) -> None:
        self.store = store
        self.principal = users.principal

    # --- account ----------------------------------------------------------------------------------------------

    def account(self) -> APIRouter:
        router = APIRouter(tags=["account"])
        store = self.store
        Me = Annotated[Principal, Depends(self.principal)]

        @router.get("/account", summary="The account: balance, used amount, request count, group and ratio")
        async def account_info(me: Me) -> AccountInfoOut:
            async with store.read() as session:
                account = await session.get(Account, me.account_id)
                assert account is not None
                group = await session.get(Group, account.group_name)
                requests = await user_repo.request_count(session, account.id)
            records = store.gateway.snapshot.keys_by_hash.values()
            record = next((r for r in records if r.account_id == account.id), None)
            available = await available_micros(store.gateway, account, record)
            balance = account.credits_micros - account.debits_micros
            return AccountInfoOut(
                id=account.id,
                username=me.user.username,
                display_name=me.user.display_name,
                group=account.group_name,
                ratio=group.multiplier if group is not None else "1",
                unlimited=account.unlimited,
                balance_usd=_usd(balance),
                balance_micros=balance,
                available_usd=usd(available),
                available_micros=available,
                used_usd=_usd(account.debits_micros),
                used_micros=account.debits_micros,
                request_count=requests,
                disabled=account.disabled,
                created_at=iso(account.created_at),
            )

        @router.get("/models", summary="Models this account may call, with list prices and the group's ratio")
        async def models(me: Me) -> list[ModelPriceOut]:
            async with store.read() as session:
                account = await session.get(Account, me.account_id)
                assert account is not None
                group = await session.get(Group, account.group_name)
            ratio = group.multiplier if group is not None else "1"
            table = store.gateway.prices
            out = []
            for model in store.gateway.registry.models():
                price = table.get(model)
                spec = None if price is None else price_to_spec(price)
                out.append(ModelPriceOut(model=model, price=spec, ratio=ratio))
            return out

        return router

    # --- keys -------------------------------------------------------------------------------------------------

    def keys(self) -> APIRouter:
        router = APIRouter(prefix="/keys", tags=["keys"])
        store = self.store
        Me = Annotated[Principal, Depends(self.principal)]

        async def owned(session: Any, me: Principal, key_id: int) -> ApiKey:
            row = await user_repo.own_key(session, me.account_id, key_id)
            if row is None:
                raise not_found("key", key_id)
            return row

        @router.get("", summary="The account's keys (masked: keys are stored as hashes)")
        async def list_keys(me: Me, limit: Limit = 100, cursor: Cursor = None) -> Page[OwnKeyOut]:
            async with store.read() as session:
                rows = await user_repo.own_keys(session, me.account_id, limit=limit, after=cursor)
            return page_of([OwnKeyOut.from_row(r) for r in rows], [r.id for r in rows], limit)

        @router.post("", status_code=201, summary="Create a key; the answer holds the key, shown this once")
        async def create_key(body: OwnKeyIn, me: Me) -> NewOwnKeyOut:
            async with store.write() as session:
                account = await session.get(Account, me.account_id)
                assert account is not None
                most = store.gateway.settings.accounts.keys_per_account
                if await user_repo.count_live_keys(session, account.id) >= most:
                    raise conflict(f"an account may hold at most {most} keys: delete one first")
                created = await repo.create_key(session, account=account.name, **_key_columns(body))
                row = await owned(session, me, created.id)
            return NewOwnKeyOut(key=created.key, **OwnKeyOut.from_row(row).model_dump())

        @router.get("/{key_id}", summary="One key")
        async def get_key(key_id: int, me: Me) -> OwnKeyOut:
            async with store.read() as session:
                return OwnKeyOut.from_row(await owned(session, me, key_id))

        @router.patch("/{key_id}", summary="Change a key (null clears a limit: spend_cap_usd null is unlimited)")
        async def patch_key(key_id: int, body: OwnKeyPatch, me: Me) -> OwnKeyOut:
            async with store.write() as session:
                row = await owned(session, me, key_id)
                await admin_repo.update_row(session, row, _key_columns(body))
            return OwnKeyOut.from_row(row)

        async def switch(key_id: int, me: Principal, disabled: bool) -> OwnKeyOut:
            async with store.write() as session:
                row = await owned(session, me, key_id)
                if row.revoked_at is not None:
                    raise conflict(f"key {key_id} was revoked by an operator")
                await admin_repo.update_row(session, row, {"disabled": disabled})
            return OwnKeyOut.from_row(row)

        @router.post("/{key_id}/disable", summary="Switch a key off: refused everywhere within a second")
        async def disable_key(key_id: int, me: Me) -> OwnKeyOut:
            return await switch(key_id, me, True)

        @router.post("/{key_id}/enable", summary="Switch a key back on")
        async def enable_key(key_id: int, me: Me) -> OwnKeyOut:
            return await switch(key_id, me, False)

        @router.delete("/{key_id}", status_code=204, summary="Delete a key (its usage rows stay in the logs)")
        async def delete_key(key_id: int, me: Me) -> Response:
            async with store.write() as session:
                await user_repo.delete_key(session, await owned(session, me, key_id))
            return Response(status_code=204)

        return router

    # --- logs and aggregates ----------------------------------------------------------------------------------

    def logs(self) -> APIRouter:
        router = APIRouter(tags=["usage"])
        store = self.store
        Me = Annotated[Principal, Depends(self.principal)]

        @router.get("/logs", summary="Usage and ledger rows of one type, newest first")
        async def logs(
            me: Me,
            start: Start = None,
            end: End = None,
            key_name: Annotated[str | None, Query(max_length=128)] = None,
            model: Annotated[str | None, Query(max_length=128)] = None,
            type: LogType = "consumption",
            limit: Limit = 100,
            cursor: Cursor = None,
        ) -> Page[LogRowOut]:
            start, end = _window(start, end)
            async with store.read() as session:
                key_ids = None if key_name is None else await user_repo.key_ids_named(session, me.account_id, key_name)
                if type == "consumption":
                    window = admin_repo.UsageFilter(start=start, end=end, account_id=me.account_id, model=model)
                    usage = await user_repo.usage_rows(session, window, key_ids, limit=limit, cursor=cursor)
                    names = await user_repo.key_names(session, me.account_id, [r.key_id for r in usage if r.key_id])
                    data = [LogRowOut.from_usage(r, names.get(r.key_id or 0)) for r in usage]
                    return page_of(data, [r.id for r in usage], limit)
                if model is not None:
                    raise invalid("model", f"ledger rows ({type}) have no model: filter by model only consumption")
                entries = await user_repo.ledger_rows(
                    session,
                    me.account_id,
                    LEDGER_KINDS[type],
                    start=start,
                    end=end,
                    key_ids=key_ids,
                    limit=limit,
                    cursor=cursor,
                )
                names = await user_repo.key_names(session, me.account_id, [e.key_id for e in entries if e.key_id])
            data = [LogRowOut.from_ledger(e, type, names.get(e.key_id or 0)) for e in entries]
            return page_of(data, [e.id for e in entries], limit)

        @router.get("/usage/aggregate", summary="Totals per UTC day and per model (default: the last 30 days)")
        async def aggregate(
            me: Me,
            start: Start = None,
            end: End = None,
            model: Annotated[str | None, Query(max_length=128)] = None,
        ) -> UsageAggregateOut:
            start, end = _window(start, end)
            end = end or datetime.now(UTC)
            start = start or end - timedelta(days=30)
            window = admin_repo.UsageFilter(start=start, end=end, account_id=me.account_id, model=model)
            async with store.read() as session:
                rows = await usage_stats.usage_aggregate(session, window, bucket="day", by="model", percentiles=False)
            days: dict[str, list[admin_repo.AggregateRow]] = defaultdict(list)
            models: dict[str, list[admin_repo.AggregateRow]] = defaultdict(list)
            for row in rows:
                days[row.bucket_start.date().isoformat()].append(row)
                models[row.group or ""].append(row)
            return UsageAggregateOut(
                start=iso(start),
                end=iso(end),
                total=TotalsOut(**_totals(rows)),
                by_day=[DayTotalsOut(day=day, **_totals(group)) for day, group in sorted(days.items())],
                by_model=[ModelTotalsOut(model=name, **_totals(group)) for name, group in sorted(models.items())],
            )

        return router

    # --- tasks ------------------------------------------------------------------------------------------------

    def tasks(self) -> APIRouter:
        router = APIRouter(prefix="/tasks", tags=["tasks"])
        store = self.store
        Me = Annotated[Principal, Depends(self.principal)]

        @router.get("", summary="The account's async tasks, newest first, by submission time")
        async def list_tasks(
            me: Me,
            start: Start = None,
            end: End = None,
            status: TaskStatus | None = None,
            limit: Limit = 50,
            cursor: Cursor = None,
        ) -> Page[OwnTaskOut]:
            start, end = _window(start, end)
            async with store.read() as session:
                rows = await user_repo.own_tasks(
                    session,
                    me.account_id,
                    start=None if start is None else start.timestamp(),
                    end=None if end is None else end.timestamp(),
                    status=status,
                    limit=limit,
                    cursor=cursor,
                )
            return page_of([OwnTaskOut.from_row(r) for r in rows], [r.id for r in rows], limit)

        @router.get("/{task_id}", summary="One task, with its status and results")
        async def get_task(task_id: Annotated[str, Path(max_length=64)], me: Me) -> OwnTaskOut:
            async with store.read() as session:
                row = await user_repo.own_task(session, me.account_id, task_id)
            if row is None:
                raise not_found("task", task_id)
            return OwnTaskOut.from_row(row)

        return router

    # --- money ------------------------------------------------------------------------------------------------

    def money(self) -> APIRouter:
        router = APIRouter(tags=["balance"])
        store = self.store
        Me = Annotated[Principal, Depends(self.principal)]

        @router.post("/topup", status_code=201, summary="Top up with a redemption code")
        async def topup(body: RedeemIn, me: Me) -> RedeemOut:
            async with store.write() as session:
                result = await admin_repo.redeem_code(session, body.code, me.account_id, None)
                account = await session.get(Account, me.account_id)
            if result.outcome is admin_repo.Redeemed.unknown:
                raise AdminError(404, "redemption_code_not_found", "unknown redemption code", "code")
            if result.outcome is admin_repo.Redeemed.already:
                raise AdminError(409, "redemption_code_used", "this redemption code was redeemed already", "code")
            assert account is not None
            balance = account.credits_micros - account.debits_micros
            return RedeemOut(
                amount_usd=_usd(result.amount_micros),
                amount_micros=result.amount_micros,
                balance_usd=_usd(balance),
                balance_micros=balance,
            )

        @router.get("/ledger", summary="Ledger entries, newest first")
        async def ledger(
            me: Me,
            limit: Limit = 100,
            cursor: Cursor = None,
            kind: Literal["topup", "settlement", "refund", "adjustment", "redemption"] | None = None,
        ) -> Page[LedgerOut]:
            async with store.read() as session:
                rows = await admin_repo.ledger_page(session, me.account_id, limit=limit, before=cursor, kind=kind)
            return page_of([LedgerOut.from_row(r) for r in rows], [r.id for r in rows], limit)

        return router


def _usd(micros: int) -> str:
    return usd(micros) or "0"


def _totals(rows: list[admin_repo.AggregateRow]) -> dict[str, Any]:
    cost = sum(r.cost_micros for r in rows)
    return {
        "requests": sum(r.requests for r in rows),
        "prompt_tokens": sum(r.prompt_tokens for r in rows),
        "completion_tokens": sum(r.completion_tokens for r in rows),
        "cost_usd": _usd(cost),
        "cost_micros": cost,
        "errors": sum(r.errors for r in rows),
    }
