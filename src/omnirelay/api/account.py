"""Self-service routes for a client key: balance and usage in the shapes OpenAI-era clients read, key info, codes.

``/v1/dashboard/billing/subscription`` and ``/v1/dashboard/billing/usage`` (also without ``/v1``, as other gateways
serve them) answer what ChatGPT-Next-Web, balance checkers and one-api/new-api channel probes read:
``hard_limit_usd`` in dollars and ``total_usage`` in **cents**, so ``hard_limit_usd - total_usage / 100`` is what
is left when the usage window covers the whole life of the scope. The scope is the tighter of the key's spend cap
and the account's balance: the key (cap, its own spend) when the cap leaves less, else the account (its credits,
its spend). An unlimited account without a key cap reports ``UNLIMITED_USD``, as new-api does. The usage window
is ``[start_date, end_date)`` in UTC days (all time when absent); an ``end_date`` not after ``start_date`` means
that one day.

Everything here reads the database (fresh balances, not the snapshot): these routes are off the hot path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.api.common import bearer_token, client_ip, read_json_body
from omnirelay.api.errors import error_response
from omnirelay.billing.money import micros_to_usd_str
from omnirelay.crypto import display_prefix
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.gateway import Gateway
from omnirelay.store import admin_repo
from omnirelay.store.models import Account, ApiKey
from omnirelay.store.snapshot import KeyRecord

UNLIMITED_USD = 100_000_000.0
"""What ``hard_limit_usd`` reports when nothing limits the key (new-api's convention)."""
REDEEM_BODY_LIMIT = 4096

Handler = Callable[[Request], Awaitable[Response]]


def usd(micros: int | None) -> str | None:
    return None if micros is None else micros_to_usd_str(micros)


def iso(value: datetime | None) -> str | None:
    return None if value is None else admin_repo.utc(value).isoformat()


def epoch_iso(value: float | None) -> str | None:
    """A Unix time (the tasks table keeps seconds) as an ISO 8601 UTC timestamp."""
    return None if value is None else iso(datetime.fromtimestamp(value, UTC))


def balance_micros(account: Account) -> int:
    return account.credits_micros - account.debits_micros


async def available_micros(gateway: Gateway, account: Account, record: KeyRecord | None) -> int | None:
    """Balance less what running calls hold right now (None: unlimited), through the live budget counter that
    billing reserves against; ``record`` is any loaded key of the account (without one nothing can be held)."""
    if account.unlimited:
        return None
    if record is None:
        return balance_micros(account)
    fresh = dataclasses.replace(record, account_credits_micros=account.credits_micros, account_unlimited=False)
    try:
        return await gateway.billing.available(fresh)
    except ConnectionError:  # the shared limiter is away: the settled balance is the best we know
        return balance_micros(account)


def _json(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _openai_error(status: int, code: str, message: str, param: str | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return _json(body, status)


def _parse_day(request: Request, name: str) -> date | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise GatewayError(ErrorCode.invalid_request, f"'{name}' must be a date as YYYY-MM-DD.", param=name) from None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Scope:
    """What the dashboard endpoints describe: the key (when its cap is the tighter limit) or its account."""

    hard_limit_usd: float
    usage_filter: admin_repo.UsageFilter


def _scope(key: ApiKey, account: Account) -> Scope:
    cap = key.spend_cap_micros
    if cap is not None and (account.unlimited or cap - key.spent_micros <= balance_micros(account)):
        return Scope(cap / 1_000_000, admin_repo.UsageFilter(key_id=key.id))
    hard = UNLIMITED_USD if account.unlimited else account.credits_micros / 1_000_000
    return Scope(hard, admin_repo.UsageFilter(account_id=account.id))


class AccountSurface:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[Route]:
        routes = []
        for prefix in ("/v1", ""):
            routes += [
                Route(f"{prefix}/dashboard/billing/subscription", self._guard(self.subscription), methods=["GET"]),
                Route(f"{prefix}/dashboard/billing/usage", self._guard(self.usage), methods=["GET"]),
            ]
        return [
            *routes,
            Route("/v1/key/info", self._guard(self.key_info), methods=["GET"]),
            Route("/v1/account/redeem", self._guard(self.redeem), methods=["POST"]),
        ]

    def _guard(self, handler: Handler) -> Handler:
        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except GatewayError as err:
                return error_response("openai", err)
            except (SQLAlchemyError, OSError):
                unavailable = "The account database is unavailable; try again shortly."
                return error_response("openai", GatewayError(ErrorCode.internal, unavailable, status=503))

        return handle

    async def _load(self, request: Request) -> tuple[KeyRecord, ApiKey, Account]:
        record = self.gateway.authenticate(bearer_token(request), client_ip(request))
        async with self.gateway.sessions() as session:
            key = await session.get(ApiKey, record.id)
            account = await session.get(Account, record.account_id)
        if key is None or account is None:  # deleted since the snapshot was loaded
            raise GatewayError(ErrorCode.authentication, "Incorrect API key provided.")
        return record, key, account

    async def subscription(self, request: Request) -> Response:
        _, key, account = await self._load(request)
        limit = _scope(key, account).hard_limit_usd
        return _json(
            {
                "object": "billing_subscription",
                "has_payment_method": True,
                "canceled": False,
                "canceled_at": None,
                "delinquent": None,
                "access_until": int(admin_repo.utc(key.expires_at).timestamp()) if key.expires_at else 0,
                "soft_limit_usd": limit,
                "hard_limit_usd": limit,
                "system_hard_limit_usd": limit,
                "plan": {"title": "Pay-as-you-go", "id": "payg"},
                "account_name": account.name,
            }
        )

    async def usage(self, request: Request) -> Response:
        start, end = _parse_day(request, "start_date"), _parse_day(request, "end_date")
        if start is not None and end is not None and end <= start:
            end = start + timedelta(days=1)
        _, key, account = await self._load(request)
        scope = _scope(key, account).usage_filter
        window = dataclasses.replace(
            scope, start=_midnight(start) if start else None, end=_midnight(end) if end else None
        )
        async with self.gateway.sessions() as session:
            rows = await admin_repo.usage_aggregate(session, window, bucket="day", by="model")
        days: dict[datetime, list[dict[str, Any]]] = {}
        for row in rows:
            days.setdefault(row.bucket_start, []).append({"name": row.group, "cost": row.cost_micros / 10_000})
        daily = [{"timestamp": day.timestamp(), "line_items": items} for day, items in sorted(days.items())]
        return _json({"object": "list", "daily_costs": daily, "total_usage": sum(r.cost_micros for r in rows) / 10_000})

    async def key_info(self, request: Request) -> Response:
        record, key, account = await self._load(request)
        available = await available_micros(self.gateway, account, record)
        left = None if key.spend_cap_micros is None else key.spend_cap_micros - key.spent_micros
        return _json(
            {
                "object": "key_info",
                "key": {
                    "id": key.id,
                    "name": key.name,
                    "prefix": key.key_prefix or display_prefix(bearer_token(request) or ""),
                    "label": key.label,
                    "models": key.models,
                    "allowed_ips": key.allowed_ips,
                    "expires_at": iso(key.expires_at),
                    "spend_cap_usd": usd(key.spend_cap_micros),
                    "spend_cap_micros": key.spend_cap_micros,
                    "spent_usd": usd(key.spent_micros),
                    "spent_micros": key.spent_micros,
                    "remaining_usd": usd(left),
                    "remaining_micros": left,
                    "rpm": key.rpm,
                    "tpm": key.tpm,
                    "max_concurrency": key.max_concurrency,
                },
                "account": self._account_view(account, record, available),
            }
        )

    @staticmethod
    def _account_view(account: Account, record: KeyRecord, available: int | None) -> dict[str, Any]:
        month = admin_repo.month_spend(account)
        return {
            "id": account.id,
            "name": account.name,
            "group": account.group_name,
            "multiplier": str(record.multiplier),
            "unlimited": account.unlimited,
            "balance_usd": usd(balance_micros(account)),
            "balance_micros": balance_micros(account),
            "available_usd": usd(available),
            "available_micros": available,
            "spent_usd": usd(account.debits_micros),
            "spent_micros": account.debits_micros,
            "monthly_budget_usd": usd(account.monthly_budget_micros),
            "monthly_budget_micros": account.monthly_budget_micros,
            "month_spend_usd": usd(month),
            "month_spend_micros": month,
            "rpm": account.rpm,
            "tpm": account.tpm,
        }

    async def redeem(self, request: Request) -> Response:
        record = self.gateway.authenticate(bearer_token(request), client_ip(request))
        _, body = await read_json_body(request, REDEEM_BODY_LIMIT)
        code = body.get("code")
        if not isinstance(code, str) or not code.strip():
            raise GatewayError(ErrorCode.invalid_request, "Missing required parameter: 'code'.", param="code")
        async with self.gateway.sessions.begin() as session:
            result = await admin_repo.redeem_code(session, code, record.account_id, record.id)
            account = await session.get(Account, record.account_id)
        if result.outcome is admin_repo.Redeemed.unknown:
            return _openai_error(404, "redemption_code_not_found", "Unknown redemption code.", "code")
        if result.outcome is admin_repo.Redeemed.already:
            return _openai_error(409, "redemption_code_used", "This redemption code has already been redeemed.", "code")
        await self.gateway.reload()
        assert account is not None
        return _json(
            {
                "object": "redemption",
                "amount_usd": usd(result.amount_micros),
                "amount_micros": result.amount_micros,
                "balance_usd": usd(balance_micros(account)),
                "balance_micros": balance_micros(account),
            }
        )


def account_routes(gateway: Gateway) -> list[Route]:
    return AccountSurface(gateway).routes()
