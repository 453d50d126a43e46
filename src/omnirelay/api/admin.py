"""The admin REST API, mounted at ``/admin/api``: accounts, groups, keys, channels, prices, redemption codes, usage.

FastAPI and pydantic here (admin is not the hot path): bodies are validated field by field and the OpenAPI schema
(``/admin/api/openapi.json``, browsable at ``/admin/api/docs``) is generated from the same models.

* Auth: ``Authorization: Bearer <admin_token>``, compared in constant time. No token configured: every route answers
  503; a missing or wrong token: 401. The console's session cookie works too (``api/admin_auth.py``); with it, a
  change without the session's ``X-CSRF-Token`` header is a 403.
* Errors: ``{"error": {"code", "message", "field"}}``; bad input is a 422 whose ``field`` names the first bad field
  (``details`` lists them all); a conflict (duplicate name, a config-file channel, a used code) is a 409.
* Money: USD in as decimal strings or numbers (at most 6 decimals); out as strings (``"12.500000"``) beside exact
  ``*_micros`` integers.
* Lists page with ``?limit=&cursor=``; the answer's ``next_cursor`` (null on the last page) is the next ``cursor``.
* Every write reloads this instance's caches at once; the config-version bump it carries reaches every other
  instance within a second.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

import structlog
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException

from omnirelay.api.account import available_micros, iso, usd
from omnirelay.api.admin_audit import SAFE_METHODS, admin_actor, audit_router
from omnirelay.api.admin_auth import COOKIE, CSRF_HEADER, session_of
from omnirelay.api.admin_models import (
    AccountIn,
    AccountOut,
    AccountPatch,
    AdjustmentIn,
    AggregateOut,
    AggregateRowOut,
    ChannelCheckOut,
    ChannelIn,
    ChannelOut,
    ChannelPatch,
    DisableIn,
    GroupIn,
    GroupOut,
    KeyIn,
    KeyOut,
    KeyPatch,
    LedgerEntryOut,
    MoneyMovedOut,
    NewKeyOut,
    Page,
    PriceOut,
    PricesOut,
    RedemptionBatchOut,
    RedemptionCodeOut,
    RedemptionIn,
    TopupIn,
    UsageRowOut,
    micros,
)
from omnirelay.billing.money import usd_to_micros
from omnirelay.billing.prices import PriceTable, price_from_spec, price_to_spec
from omnirelay.crypto import upstream_key_id
from omnirelay.gateway import Gateway
from omnirelay.routing.registry import channel_target, key_target
from omnirelay.store import admin_repo, repo, usage_stats
from omnirelay.store.models import Account, ApiKey, Channel, Group
from omnirelay.store.snapshot import KeyRecord

log = structlog.get_logger(__name__)
T = TypeVar("T")
Row = TypeVar("Row", Account, ApiKey, Channel, Group)

USAGE_CSV_COLUMNS = (
    "id created_at request_id key_id account_id endpoint model upstream_model channel_id stream status_code error_code "
    "prompt_tokens completion_tokens cached_tokens reasoning_tokens usage_estimated cost_usd cost_micros latency_ms "
    "ttft_ms overhead_ms client_ip"
).split()
EXPORT_PAGE = 1000
DEFAULT_WINDOW = {"minute": timedelta(hours=1), "hour": timedelta(days=1), "day": timedelta(days=30)}
"""How far back an aggregate looks when no ``start`` is given."""

Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[int | None, Query(description="next_cursor of the previous page")]


class AdminError(Exception):
    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers


def page_of(data: list[T], ids: list[int], limit: int) -> Page[T]:
    """A page whose ``next_cursor`` is the last id when the page is full (there may be more)."""
    return Page(data=data, next_cursor=ids[-1] if len(ids) == limit else None)


def to_micros(amount: Decimal) -> int:
    """Validated USD (at most 6 decimals, sign checked by the model) to micro-USD."""
    return usd_to_micros(amount, allow_negative=True)


def not_found(what: str, ref: object) -> AdminError:
    return AdminError(404, "not_found", f"no {what} {ref}")


def conflict(message: str, field: str | None = None) -> AdminError:
    return AdminError(409, "conflict", message, field)


def invalid(field: str, message: str) -> AdminError:
    return AdminError(422, "invalid_input", f"{field}: {message}", field)


def _error_body(code: str, message: str, field: str | None = None, **extra: object) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field, **extra}}


async def _on_admin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminError)
    return JSONResponse(_error_body(exc.code, exc.message, exc.field), exc.status, headers=exc.headers)


def _field_name(location: Iterable[int | str]) -> str:
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(str(p) for p in parts) or "body"


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [{"field": _field_name(e["loc"]), "message": e["msg"]} for e in exc.errors()]
    first = details[0] if details else {"field": "body", "message": "invalid input"}
    message = f"{first['field']}: {first['message']}"
    return JSONResponse(_error_body("invalid_input", message, first["field"], details=details), 422)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(_error_body("http_error", str(exc.detail)), exc.status_code, headers=exc.headers)


async def _on_conflict(request: Request, exc: Exception) -> Response:
    return JSONResponse(_error_body("conflict", "the change conflicts with existing data (a duplicate name?)"), 409)


async def _on_out_of_range(request: Request, exc: Exception) -> Response:
    # A number the database column cannot hold (an id or cursor past 2**63, say): bad input, not a crash.
    return JSONResponse(_error_body("invalid", "a number in the request is out of range"), 422)


async def _on_database_error(request: Request, exc: Exception) -> Response:
    message = "the database is unavailable; admin changes need it (relaying continues from memory)"
    return JSONResponse(_error_body("database_unavailable", message), 503)


_BEARER = HTTPBearer(auto_error=False, description="The admin_token from the gateway's configuration.")


def _admin_guard(gateway: Gateway) -> Callable[..., Any]:
    async def require_admin(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
    ) -> None:
        settings = gateway.settings
        if not settings.admin_token and not settings.admin_users and not settings.admin_tokens:
            raise AdminError(503, "admin_disabled", "admin API disabled: set admin_token")
        if credentials is None and COOKIE in request.cookies:  # the console: its session, and CSRF for changes
            console = await session_of(gateway, request)
            if console is None:
                raise AdminError(401, "unauthorized", "the console session ended: sign in again")
            if not console.allows(request):
                raise AdminError(403, "csrf_failed", f"a change needs the session's {CSRF_HEADER} header")
            request.state.admin_actor = f"session:{console.subject}"
            return
        given = credentials.credentials if credentials is not None else ""
        actor = admin_actor(settings, given)
        if actor is None:
            raise AdminError(
                401, "unauthorized", "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"}
            )
        name, scope = actor
        if scope != "full" and request.method not in SAFE_METHODS:
            raise AdminError(403, "read_only_token", f"the admin token '{name}' may only read")
        request.state.admin_actor = f"token:{name}"

    return require_admin


class Store:
    """Sessions for the routes: ``read()`` for queries, ``write()`` commits then reloads this instance's caches."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.gateway.sessions() as session:
            yield session

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        async with self.gateway.sessions.begin() as session:
            yield session
        try:
            await self.gateway.reload()
        except Exception as exc:  # committed: never report a done write (a top-up!) as failed; the poll catches up
            log.warning("admin_reload_failed", error=type(exc).__name__)


def create_admin_api(gateway: Gateway) -> FastAPI:
    api = FastAPI(
        title="omnirelay admin API",
        version="1",
        description=__doc__,
        dependencies=[Depends(_admin_guard(gateway))],
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api.add_exception_handler(AdminError, _on_admin_error)
    api.add_exception_handler(RequestValidationError, _on_validation_error)
    api.add_exception_handler(StarletteHTTPException, _on_http_error)
    api.add_exception_handler(IntegrityError, _on_conflict)
    api.add_exception_handler(OverflowError, _on_out_of_range)
    api.add_exception_handler(DataError, _on_out_of_range)
    for unreachable in (OperationalError, InterfaceError, PoolTimeout, OSError):
        api.add_exception_handler(unreachable, _on_database_error)
    store = Store(gateway)
    for router in (
        _accounts(store),
        _groups(store),
        _keys(store),
        _channels(store),
        _prices(store),
        _redemption_codes(store),
        _usage(store),
        audit_router(gateway),
    ):
        api.include_router(router)
    from omnirelay.api.admin_console import console_router  # builds on this module's Store and filters

    api.include_router(console_router(store))
    from omnirelay.api.admin_invites import invitations_router  # sign-up invitations (api/users.py)

    api.include_router(invitations_router(store))
    return api


# --- accounts -------------------------------------------------------------------------------------------------


def _records_by_account(gateway: Gateway) -> dict[int, KeyRecord]:
    """One loaded key per account: what billing's live counters are reached through."""
    return {record.account_id: record for record in gateway.snapshot.keys_by_hash.values()}


async def _account_out(store: Store, account: Account, active_keys: int, record: KeyRecord | None) -> AccountOut:
    available = await available_micros(store.gateway, account, record)
    return AccountOut.from_row(account, active_keys=active_keys, available=available)


async def _get(session: AsyncSession, table: type[Row], row_id: int | str) -> Row:
    row = await session.get(table, row_id)
    if row is None:
        raise not_found(table.__tablename__.removesuffix("s").replace("_", " "), row_id)
    return row


async def _get_account(session: AsyncSession, account_id: int) -> Account:
    return await _get(session, Account, account_id)


async def _check_group(session: AsyncSession, name: str) -> None:
    if name != "default" and await session.get(Group, name) is None:
        raise invalid("group", f"unknown group '{name}' (create it with PUT /groups/{name})")
    await repo.ensure_group(session, name)


def _account_columns(body: AccountIn | AccountPatch) -> dict[str, Any]:
    columns = body.model_dump(exclude_unset=True, exclude={"monthly_budget_usd", "group"})
    if "group" in body.model_fields_set:
        columns["group_name"] = body.group
    if "monthly_budget_usd" in body.model_fields_set:
        budget = body.monthly_budget_usd
        columns["monthly_budget_micros"] = None if budget is None else to_micros(budget)
    return columns


def _accounts(store: Store) -> APIRouter:
    router = APIRouter(prefix="/accounts", tags=["accounts"])

    async def one(session: AsyncSession, account: Account) -> AccountOut:
        counts = await admin_repo.key_counts(session, [account.id])
        record = _records_by_account(store.gateway).get(account.id)
        return await _account_out(store, account, counts.get(account.id, 0), record)

    @router.get("", summary="List accounts")
    async def list_accounts(limit: Limit = 100, cursor: Cursor = None) -> Page[AccountOut]:
        async with store.read() as session:
            rows = await admin_repo.list_accounts(session, limit=limit, after=cursor)
            counts = await admin_repo.key_counts(session, [a.id for a in rows])
        records = _records_by_account(store.gateway)
        data = [await _account_out(store, a, counts.get(a.id, 0), records.get(a.id)) for a in rows]
        return page_of(data, [r.id for r in rows], limit)

    @router.post("", status_code=201, summary="Create an account")
    async def create_account(body: AccountIn) -> AccountOut:
        async with store.write() as session:
            if await admin_repo.account_named(session, body.name) is not None:
                raise conflict(f"an account named '{body.name}' exists", "name")
            await _check_group(session, body.group)
            columns = _account_columns(body) | {"group_name": body.group}
            account = await admin_repo.create_account(session, **columns)
        async with store.read() as session:
            return await one(session, account)

    @router.get("/{account_id}", summary="One account with its balance")
    async def get_account(account_id: int) -> AccountOut:
        async with store.read() as session:
            return await one(session, await _get_account(session, account_id))

    @router.patch("/{account_id}", summary="Change an account (null clears a limit)")
    async def patch_account(account_id: int, body: AccountPatch) -> AccountOut:
        async with store.write() as session:
            account = await _get_account(session, account_id)
            if body.name is not None and body.name != account.name:
                if await admin_repo.account_named(session, body.name) is not None:
                    raise conflict(f"an account named '{body.name}' exists", "name")
            if body.group is not None:
                await _check_group(session, body.group)
            await admin_repo.update_row(session, account, _account_columns(body))
        async with store.read() as session:
            return await one(session, await _get_account(session, account_id))

    async def set_disabled(account_id: int, disabled: bool) -> AccountOut:
        async with store.write() as session:
            account = await _get_account(session, account_id)
            await admin_repo.update_row(session, account, {"disabled": disabled})
        async with store.read() as session:
            return await one(session, await _get_account(session, account_id))

    @router.post("/{account_id}/disable", summary="Disable an account: its keys are refused within a second")
    async def disable_account(account_id: int) -> AccountOut:
        return await set_disabled(account_id, True)

    @router.post("/{account_id}/enable", summary="Enable an account")
    async def enable_account(account_id: int) -> AccountOut:
        return await set_disabled(account_id, False)

    async def move_money(account_id: int, kind: str, body: TopupIn | AdjustmentIn, response: Response) -> MoneyMovedOut:
        async with store.write() as session:
            await _get_account(session, account_id)
            entry = None if body.ref is None else await admin_repo.entry_with_ref(session, account_id, kind, body.ref)
            if entry is None:
                amount = to_micros(body.amount_usd)
                entry = await repo.post_entry(session, account_id, amount, kind=kind, reason=body.reason, ref=body.ref)
            elif entry.amount_micros != to_micros(body.amount_usd):
                raise conflict(f"ref '{body.ref}' was used for a different amount", "ref")
            else:
                response.status_code = 200  # a retry: the first request's entry, nothing posted twice
        async with store.read() as session:
            account_out = await one(session, await _get_account(session, account_id))
        return MoneyMovedOut(entry=LedgerEntryOut.from_row(entry), account=account_out)

    @router.post("/{account_id}/topup", status_code=201, summary="Add credit (idempotent with a ref)")
    async def topup(account_id: int, body: TopupIn, response: Response) -> MoneyMovedOut:
        return await move_money(account_id, "topup", body, response)

    @router.post("/{account_id}/adjustments", status_code=201, summary="Correct the balance (signed amount)")
    async def adjust(account_id: int, body: AdjustmentIn, response: Response) -> MoneyMovedOut:
        return await move_money(account_id, "adjustment", body, response)

    @router.get("/{account_id}/ledger", summary="Ledger entries, newest first")
    async def ledger(
        account_id: int,
        limit: Limit = 100,
        cursor: Cursor = None,
        kind: Literal["topup", "settlement", "refund", "adjustment", "redemption"] | None = None,
    ) -> Page[LedgerEntryOut]:
        async with store.read() as session:
            await _get_account(session, account_id)
            rows = await admin_repo.ledger_page(session, account_id, limit=limit, before=cursor, kind=kind)
        data = [LedgerEntryOut.from_row(r) for r in rows]
        return page_of(data, [r.id for r in rows], limit)

    return router


# --- groups ---------------------------------------------------------------------------------------------------


def _groups(store: Store) -> APIRouter:
    router = APIRouter(prefix="/groups", tags=["groups"])

    @router.get("", summary="List groups and their price multipliers")
    async def list_groups() -> list[GroupOut]:
        async with store.read() as session:
            rows = await admin_repo.list_groups(session)
        return [GroupOut(name=g.name, multiplier=g.multiplier, accounts=n) for g, n in rows]

    @router.put("/{name}", summary="Create or change a group")
    async def put_group(name: Annotated[str, Path(min_length=1, max_length=64)], body: GroupIn) -> GroupOut:
        async with store.write() as session:
            group = await admin_repo.upsert_group(session, name, format(body.multiplier.normalize(), "f"))
            users = await admin_repo.group_in_use(session, name)
        return GroupOut(name=group.name, multiplier=group.multiplier, accounts=int(users))

    @router.delete("/{name}", status_code=204, summary="Delete an unused group")
    async def delete_group(name: str) -> Response:
        async with store.write() as session:
            group = await _get(session, Group, name)
            if name == "default" or await admin_repo.group_in_use(session, name):
                raise conflict(f"group '{name}' is in use")
            await admin_repo.delete_group(session, group)
        return Response(status_code=204)

    return router


# --- keys -----------------------------------------------------------------------------------------------------


def _key_columns(body: KeyIn | KeyPatch) -> dict[str, Any]:
    columns = body.model_dump(exclude_unset=True, exclude={"spend_cap_usd", "account"})
    if "spend_cap_usd" in body.model_fields_set:
        cap = body.spend_cap_usd
        columns["spend_cap_micros"] = None if cap is None else to_micros(cap)
    return columns


def _keys(store: Store) -> APIRouter:
    router = APIRouter(prefix="/keys", tags=["keys"])

    @router.get("", summary="List keys (prefixes only: keys are stored as hashes)")
    async def list_keys(limit: Limit = 100, cursor: Cursor = None, account_id: int | None = None) -> Page[KeyOut]:
        async with store.read() as session:
            rows = await admin_repo.list_keys(session, limit=limit, after=cursor, account_id=account_id)
        return page_of([KeyOut.from_row(r) for r in rows], [r.id for r in rows], limit)

    @router.post("", status_code=201, summary="Create a key; the answer holds the key, shown this once")
    async def create_key(body: KeyIn) -> NewKeyOut:
        async with store.write() as session:
            account = await admin_repo.find_account(session, body.account)
            if account is None:
                raise invalid("account", f"no account {body.account!r}")
            created = await repo.create_key(session, account=account.name, **_key_columns(body))
            row = await _get(session, ApiKey, created.id)
        return NewKeyOut(key=created.key, **KeyOut.from_row(row).model_dump())

    @router.get("/{key_id}", summary="One key")
    async def get_key(key_id: int) -> KeyOut:
        async with store.read() as session:
            return KeyOut.from_row(await _get(session, ApiKey, key_id))

    @router.patch("/{key_id}", summary="Change a key's limits (null clears one)")
    async def patch_key(key_id: int, body: KeyPatch) -> KeyOut:
        async with store.write() as session:
            row = await _get(session, ApiKey, key_id)
            await admin_repo.update_row(session, row, _key_columns(body))
        return KeyOut.from_row(row)

    @router.post("/{key_id}/revoke", summary="Revoke a key: every instance refuses it within a second")
    async def revoke_key(key_id: int) -> KeyOut:
        async with store.write() as session:
            row = await _get(session, ApiKey, key_id)
            if row.revoked_at is not None:
                raise conflict(f"key {key_id} is revoked already")
            await repo.revoke_key(session, key_id)
            await session.refresh(row)
        return KeyOut.from_row(row)

    return router


# --- channels -------------------------------------------------------------------------------------------------


def _channel_keys(store: Store, row: Channel) -> list[str] | None:
    try:
        return store.gateway.box.open(row.api_keys_encrypted)
    except ValueError:  # the master key changed: say so rather than fail the whole list
        return None


async def _channel_outs(store: Store, rows: list[Channel]) -> list[ChannelOut]:
    """With each key's state (from the database) and the channel's breaker (this instance's)."""
    async with store.read() as session:
        disabled = await admin_repo.disabled_keys(session, [row.id for row in rows])
    board, now = store.gateway.board, time.time()
    return [
        ChannelOut.from_row(
            row, _channel_keys(store, row), disabled.get(row.id), board.state_of(channel_target(row.id), now).state
        )
        for row in rows
    ]


async def _channel_out(store: Store, row: Channel) -> ChannelOut:
    return (await _channel_outs(store, [row]))[0]


def _channel_key(store: Store, row: Channel, key_id: str) -> str:
    """Check that ``key_id`` names one of the channel's upstream keys."""
    keys = _channel_keys(store, row) or []
    if key_id not in {upstream_key_id(key) for key in keys}:
        raise not_found(f"key of channel {row.id} with id", key_id)
    return key_id


_CHANNEL_SETTINGS = ("timeout_s", "connect_timeout_s", "first_byte_timeout_s", "idle_timeout_s", "headers")


def _channel_columns(body: ChannelPatch, current: dict[str, object]) -> dict[str, Any]:
    columns = body.model_dump(exclude_unset=True, exclude={"api_keys", *_CHANNEL_SETTINGS})
    settings = {**current, **body.model_dump(exclude_unset=True, include=set(_CHANNEL_SETTINGS))}
    if settings != current:
        columns["settings"] = settings
    return columns


def _owned_by_config(row: Channel, action: str) -> AdminError:
    return conflict(
        f"channel '{row.name}' comes from the config file: {action} it there (it may only be disabled here)"
    )


def _channels(store: Store) -> APIRouter:
    router = APIRouter(prefix="/channels", tags=["channels"])

    @router.get("", summary="List channels (upstream keys masked)")
    async def list_channels() -> list[ChannelOut]:
        async with store.read() as session:
            rows = await admin_repo.list_channels(session)
        return await _channel_outs(store, rows)

    @router.post("", status_code=201, summary="Create a channel")
    async def create_channel(body: ChannelIn) -> ChannelOut:
        async with store.write() as session:
            if await admin_repo.channel_named(session, body.name) is not None:
                raise conflict(f"a channel named '{body.name}' exists", "name")
            columns = body.model_dump(exclude={"api_keys", *_CHANNEL_SETTINGS})
            columns["settings"] = body.model_dump(include=set(_CHANNEL_SETTINGS))
            row = await admin_repo.create_channel(session, store.gateway.box, body.api_keys, **columns)
        return await _channel_out(store, row)

    @router.get("/{channel_id}", summary="One channel")
    async def get_channel(channel_id: int) -> ChannelOut:
        async with store.read() as session:
            row = await _get(session, Channel, channel_id)
        return await _channel_out(store, row)

    @router.patch("/{channel_id}", summary="Change a channel; api_keys replaces its keys")
    async def patch_channel(channel_id: int, body: ChannelPatch) -> ChannelOut:
        async with store.write() as session:
            row = await _get(session, Channel, channel_id)
            if row.from_config:
                raise _owned_by_config(row, "edit")
            if body.name is not None and body.name != row.name:
                if await admin_repo.channel_named(session, body.name) is not None:
                    raise conflict(f"a channel named '{body.name}' exists", "name")
            columns = _channel_columns(body, dict(row.settings or {}))
            if body.api_keys is not None:
                columns["api_keys_encrypted"] = store.gateway.box.seal(body.api_keys)
            await admin_repo.update_row(session, row, columns)
        return await _channel_out(store, row)

    @router.post("/{channel_id}/disable", summary="Take a channel out of routing")
    async def disable_channel(channel_id: int, body: DisableIn | None = None) -> ChannelOut:
        async with store.write() as session:
            row = await _get(session, Channel, channel_id)
            await admin_repo.set_channel_enabled(session, row, False, body.reason if body else None)
        return await _channel_out(store, row)

    @router.post("/{channel_id}/enable", summary="Put a channel back into routing")
    async def enable_channel(channel_id: int) -> ChannelOut:
        async with store.write() as session:
            row = await _get(session, Channel, channel_id)
            await admin_repo.set_channel_enabled(session, row, True, None)
        store.gateway.board.reset(channel_target(row.id))
        return await _channel_out(store, row)

    @router.delete("/{channel_id}", status_code=204, summary="Delete a channel")
    async def delete_channel(channel_id: int) -> Response:
        async with store.write() as session:
            row = await _get(session, Channel, channel_id)
            if row.from_config:
                raise _owned_by_config(row, "delete")
            await admin_repo.delete_channel(session, row)
        return Response(status_code=204)

    @router.post("/{channel_id}/keys/{key_id}/disable", summary="Take one upstream key of a channel out of routing")
    async def disable_channel_key(channel_id: int, key_id: str, body: DisableIn | None = None) -> ChannelOut:
        async with store.write() as session:
            row = await _get(session, Channel, channel_id)
            _channel_key(store, row, key_id)
            reason = (body.reason if body else None) or "disabled by an admin"
            if not await repo.disable_upstream_key(session, row.id, key_id, reason, None):
                raise conflict(f"key {key_id} of channel {channel_id} is disabled already")
        return await _channel_out(store, row)

    @router.post("/{channel_id}/keys/{key_id}/enable", summary="Put a disabled upstream key back into routing")
    async def enable_channel_key(channel_id: int, key_id: str) -> ChannelOut:
        async with store.write() as session:
            row = await _get(session, Channel, channel_id)
            _channel_key(store, row, key_id)
            if not await admin_repo.enable_upstream_key(session, row.id, key_id):
                raise conflict(f"key {key_id} of channel {channel_id} is not disabled")
        store.gateway.board.reset(key_target(row.id, key_id))
        return await _channel_out(store, row)

    @router.post("/{channel_id}/test", summary="Health-check a channel now: a minimal request per model and key")
    async def test_channel(channel_id: int) -> list[ChannelCheckOut]:
        async with store.read() as session:
            await _get(session, Channel, channel_id)
        try:
            results = await store.gateway.check_channels(channel_id)
        except LookupError:  # created a moment ago on another instance: not in this one's snapshot yet
            raise not_found("channel", channel_id) from None
        return [ChannelCheckOut.from_row(result) for result in results]

    @router.get("/{channel_id}/checks", summary="The channel's latest health checks, newest first")
    async def channel_checks(channel_id: int, limit: Limit = 50) -> list[ChannelCheckOut]:
        async with store.read() as session:
            await _get(session, Channel, channel_id)
            rows = await admin_repo.recent_checks(session, channel_id, limit)
        return [ChannelCheckOut.from_row(row) for row in rows]

    return router


# --- prices ---------------------------------------------------------------------------------------------------


def validate_price_spec(spec: dict[str, Any]) -> dict[str, object]:
    """The canonical spec of a valid price, or a 422 naming the first bad field."""
    if not spec:
        raise invalid("body", "a price needs at least one field (use {'free': true} for a free model)")
    for name, value in spec.items():
        try:
            price_from_spec({name: value})
        except (ValueError, TypeError) as exc:
            raise invalid(name, str(exc)) from None
    try:
        return price_to_spec(price_from_spec(spec))
    except (ValueError, TypeError) as exc:
        raise invalid("body", str(exc)) from None


def _prices(store: Store) -> APIRouter:
    router = APIRouter(prefix="/prices", tags=["prices"])

    def table() -> PriceTable:
        return store.gateway.prices  # read each time: the gateway may swap its table on reload

    def source(model: str, overrides: dict[str, dict[str, object]]) -> str:
        if model in overrides:
            return "override"
        return "config" if model in store.gateway.settings.prices else "shipped"

    @router.get("", summary="The effective price table (USD per million tokens, per image, ...)")
    async def list_prices() -> PricesOut:
        async with store.read() as session:
            overrides = await admin_repo.load_price_overrides(session)
        data = [
            PriceOut(model=m, resolved=m, source=source(m, overrides), price=price_to_spec(p))
            for m, p in table().items()
        ]
        return PricesOut(data=data, aliases=dict(table().aliases))

    @router.get("/{model:path}", summary="The price a model name resolves to")
    async def get_price(model: str) -> PriceOut:
        entry = table().resolve(model)
        price = table().get(model)
        if entry is None or price is None:
            raise not_found("price for model", model)
        async with store.read() as session:
            overrides = await admin_repo.load_price_overrides(session)
        return PriceOut(model=model, resolved=entry, source=source(entry, overrides), price=price_to_spec(price))

    @router.put("/{model:path}", summary="Set a model's whole price (replaces the shipped or config entry)")
    async def put_price(model: str, spec: Annotated[dict[str, Any], Body()]) -> PriceOut:
        canonical = validate_price_spec(spec)
        async with store.write() as session:
            await admin_repo.put_price_override(session, model, canonical)
        return PriceOut(model=model, resolved=model, source="override", price=canonical)

    @router.delete("/{model:path}", status_code=204, summary="Drop a model's override")
    async def delete_price(model: str) -> Response:
        async with store.write() as session:
            if not await admin_repo.delete_price_override(session, model):
                raise not_found("price override for model", model)
        return Response(status_code=204)

    return router


# --- redemption codes -----------------------------------------------------------------------------------------


def _redemption_codes(store: Store) -> APIRouter:
    router = APIRouter(prefix="/redemption-codes", tags=["redemption codes"])

    @router.post(
        "",
        status_code=201,
        summary="Create a batch of codes; they are shown only in this answer (JSON, or CSV with ?format=csv)",
        responses={201: {"content": {"text/csv": {}}}},
    )
    async def create_codes(body: RedemptionIn, format: Literal["json", "csv"] = "json") -> Response:
        amount = to_micros(body.amount_usd)
        async with store.write() as session:
            codes = await admin_repo.create_redemption_codes(
                session, count=body.count, amount_micros=amount, batch=body.batch
            )
        if format == "csv":
            rows = [("code", "amount_usd", "batch"), *((c, usd(amount), body.batch) for c in codes)]
            return Response(_csv_text(rows), 201, media_type="text/csv", headers=_attachment(f"{body.batch}.csv"))
        batch = RedemptionBatchOut(batch=body.batch, count=len(codes), **micros("amount", amount), codes=codes)
        return JSONResponse(batch.model_dump(mode="json"), 201)

    @router.get("", summary="List codes (prefixes only)")
    async def list_codes(
        limit: Limit = 100, cursor: Cursor = None, batch: str | None = None, redeemed: bool | None = None
    ) -> Page[RedemptionCodeOut]:
        async with store.read() as session:
            rows = await admin_repo.list_redemption_codes(
                session, limit=limit, after=cursor, batch=batch, redeemed=redeemed
            )
        data = [RedemptionCodeOut.from_row(r) for r in rows]
        return page_of(data, [r.id for r in rows], limit)

    @router.delete("/{code_id}", status_code=204, summary="Withdraw a code that was not redeemed")
    async def delete_code(code_id: int) -> Response:
        async with store.write() as session:
            deleted = await admin_repo.delete_unredeemed_code(session, code_id)
        if deleted is None:
            raise not_found("redemption code", code_id)
        if not deleted:
            raise conflict(f"redemption code {code_id} was redeemed already")
        return Response(status_code=204)

    return router


def _csv_text(rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def _attachment(filename: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{filename}"'}


# --- usage ----------------------------------------------------------------------------------------------------


def usage_filter(
    start: Annotated[datetime | None, Query(description="ISO time, inclusive (UTC when no offset)")] = None,
    end: Annotated[datetime | None, Query(description="ISO time, exclusive")] = None,
    key_id: int | None = None,
    account_id: int | None = None,
    model: str | None = None,
    channel_id: int | None = None,
    status: Annotated[
        str | None, Query(pattern=r"^(ok|error|[1-5][0-9][0-9])$", description="ok, error or a code")
    ] = None,
) -> admin_repo.UsageFilter:
    if start is not None and end is not None and admin_repo.utc(end) <= admin_repo.utc(start):
        raise invalid("end", "must be after start")
    return admin_repo.UsageFilter(start, end, key_id, account_id, model, channel_id, status)


Filters = Annotated[admin_repo.UsageFilter, Depends(usage_filter)]


def _usage_csv_row(row: Any) -> list[object]:
    values = {c: getattr(row, c, None) for c in USAGE_CSV_COLUMNS}
    values["created_at"] = iso(row.created_at)
    values["cost_usd"] = usd(row.cost_micros)
    return [values[c] for c in USAGE_CSV_COLUMNS]


def _usage(store: Store) -> APIRouter:
    router = APIRouter(prefix="/usage", tags=["usage"])

    @router.get("", summary="Usage rows, newest first")
    async def list_usage(filters: Filters, limit: Limit = 100, cursor: Cursor = None) -> Page[UsageRowOut]:
        async with store.read() as session:
            rows = await admin_repo.usage_page(session, filters, limit=limit, cursor=cursor)
        data = [UsageRowOut.from_row(r) for r in rows]
        return page_of(data, [r.id for r in rows], limit)

    @router.get(
        "/aggregate", summary="Totals and latency percentiles per minute, hour or day and per model, key or channel"
    )
    async def aggregate(
        filters: Filters,
        bucket: Literal["minute", "hour", "day"] = "hour",
        by: Literal["model", "key", "channel", "account"] = "model",
        latency: Annotated[bool, Query(description="false: skip p50/p95 (cheaper over long windows)")] = True,
    ) -> AggregateOut:
        end = filters.end or datetime.now(UTC)
        start = filters.start or end - DEFAULT_WINDOW[bucket]
        if bucket == "minute" and end - start > timedelta(days=1):
            raise invalid("bucket", "minute buckets cover at most a day: use hour or day for a longer window")
        window = dataclasses.replace(filters, start=start, end=end)
        async with store.read() as session:
            rows = await usage_stats.usage_aggregate(session, window, bucket=bucket, by=by, percentiles=latency)
            names = await admin_repo.names_for(session, by, [r.group for r in rows if r.group is not None])
        data = [AggregateRowOut.from_row(r, names.get(r.group or "", r.group)) for r in rows]
        return AggregateOut(bucket=bucket, by=by, start=iso(start), end=iso(end), data=data)

    @router.get("/export.csv", summary="Usage rows as CSV, oldest first (streamed)", response_class=StreamingResponse)
    async def export(filters: Filters) -> StreamingResponse:
        async def lines() -> AsyncIterator[str]:
            yield _csv_text([USAGE_CSV_COLUMNS])
            cursor: int | None = None
            while True:
                async with store.read() as session:
                    rows = await admin_repo.usage_page(
                        session, filters, limit=EXPORT_PAGE, cursor=cursor, newest_first=False
                    )
                if not rows:
                    return
                yield _csv_text(_usage_csv_row(r) for r in rows)
                cursor = rows[-1].id

        return StreamingResponse(lines(), media_type="text/csv", headers=_attachment("usage.csv"))

    return router
