"""Budgets, limits and key restrictions through the gateway with the official SDK, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import func, select

from omnirelay.billing.cost import cost_of_tokens
from omnirelay.config import ChannelConfig, Settings
from omnirelay.formats.usage import Usage
from omnirelay.store import repo
from omnirelay.store.models import Account, LedgerEntry, UsageLog
from tests.conftest import UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread

MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url,
        channels=[
            ChannelConfig(
                name="main", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=[MODEL, "unpriced-x"]
            )
        ],
    )
    harness = start_gateway(settings)
    yield harness
    harness.server.stop()


def prepaid_account(gw: GatewayHarness, name: str, topup_micros: int) -> int:
    async def work() -> int:
        async with gw.gateway.sessions.begin() as session:
            account = await repo.ensure_account(session, name)
            if topup_micros:
                await repo.post_entry(session, account.id, topup_micros, kind="topup", reason="test")
            return account.id

    account_id: int = gw.run(work())
    gw.run(gw.gateway.reload())
    return account_id


def account_books(gw: GatewayHarness, account_id: int) -> dict[str, int]:
    gw.flush_usage()

    async def read() -> dict[str, int]:
        async with gw.gateway.sessions() as session:
            account = await session.get(Account, account_id)
            assert account is not None
            await session.refresh(account)
            ledger = await session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(
                    LedgerEntry.account_id == account_id
                )
            )
            usage_cost = await session.scalar(
                select(func.coalesce(func.sum(UsageLog.cost_micros), 0)).where(UsageLog.account_id == account_id)
            )
            settlements = await session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(
                    LedgerEntry.account_id == account_id, LedgerEntry.kind == "settlement"
                )
            )
            ok = await session.scalar(
                select(func.count()).where(UsageLog.account_id == account_id, UsageLog.status_code == 200)
            )
            return {
                "balance": account.credits_micros - account.debits_micros,
                "credits": account.credits_micros,
                "debits": account.debits_micros,
                "ledger": int(ledger or 0),
                "usage_cost": int(usage_cost or 0),
                "settlements": int(settlements or 0),
                "ok_rows": int(ok or 0),
            }

    return gw.run(read())  # type: ignore[no-any-return]


def one_call_cost(gw: GatewayHarness, key: str) -> int:
    """The exact cost of the deterministic call used below, from the usage the SDK reports."""
    reply = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "budget probe"}], max_tokens=16
    )
    assert reply.usage is not None
    price = gw.gateway.prices.get(MODEL)
    usage = Usage(input_tokens=reply.usage.prompt_tokens, output_tokens=reply.usage.completion_tokens)
    return cost_of_tokens(price, usage)


def test_concurrent_requests_never_overspend_and_books_agree(gw: GatewayHarness) -> None:
    probe_account = prepaid_account(gw, "probe", 10_000_000)
    probe_key = gw.create_key("probe", account="probe")
    cost = one_call_cost(gw, probe_key)
    assert cost > 0
    assert account_books(gw, probe_account)["usage_cost"] == cost

    # The worst case reserved per call (prompt counted offline + max_tokens) is close to the real cost; a budget
    # of 50 worst cases admits about 50 calls while all 200 race for it.
    price = gw.gateway.prices.get(MODEL)
    key_record = gw.gateway.snapshot.keys_by_hash[__import__("omnirelay.crypto").crypto.hash_key(probe_key)]
    prompt = __import__("omnirelay.billing.tokens").billing.tokens.count_openai_chat_prompt(
        MODEL, {"model": MODEL, "messages": [{"role": "user", "content": "budget probe"}], "max_tokens": 16}
    )
    worst = gw.gateway.billing.worst_case(price, key_record, prompt, 16)
    budget = 50 * worst
    account_id = prepaid_account(gw, "racer", budget)
    key = gw.create_key("racer", account="racer")
    client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=key, max_retries=0)

    async def one() -> str:
        try:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "budget probe"}], max_tokens=16
            )
            return "ok"
        except openai.RateLimitError as exc:
            assert exc.code == "insufficient_quota"
            assert "Insufficient balance" in exc.message
            return "refused"

    async def race() -> list[str]:
        return await asyncio.gather(*(one() for _ in range(200)))

    outcomes = asyncio.run(race())
    succeeded = outcomes.count("ok")
    assert succeeded + outcomes.count("refused") == 200
    assert 45 <= succeeded <= 50
    books = account_books(gw, account_id)
    assert books["ok_rows"] == succeeded
    assert books["usage_cost"] == succeeded * cost <= budget
    assert books["settlements"] == -books["usage_cost"]
    assert books["ledger"] == books["balance"] == budget - succeeded * cost
    assert books["debits"] == books["usage_cost"]


def test_unpriced_model_is_refused_clearly(gw: GatewayHarness) -> None:
    key = gw.create_key("unpriced")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0).chat.completions.create(
            model="unpriced-x", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.code == "model_not_priced"


def test_key_spend_cap_holds(gw: GatewayHarness) -> None:
    key = gw.create_key("capped", spend_cap_micros=1)
    with pytest.raises(openai.RateLimitError) as refused:
        openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    assert "spend cap" in refused.value.message
    assert refused.value.response.headers.get("x-should-retry") == "false"


def test_rpm_limit_answers_429_with_openai_headers(gw: GatewayHarness) -> None:
    key = gw.create_key("rpm3", rpm=3, tpm=100_000)
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
    remaining = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [2, 1, 0]
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    headers = limited.value.response.headers
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 60
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.type == "requests"


def test_tpm_limit_counts_prompt_and_max_tokens(gw: GatewayHarness) -> None:
    key = gw.create_key("tpm", tpm=300)
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=100)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=280)
    assert limited.value.type == "tokens"


def test_model_ip_and_expiry_restrictions(gw: GatewayHarness) -> None:
    from datetime import UTC, datetime, timedelta

    outsider = gw.create_key("outsider", allowed_ips=["10.0.0.0/8"])
    insider = gw.create_key("insider", allowed_ips=["127.0.0.0/8", "::1/128"])
    later = gw.create_key("later", expires_at=datetime.now(UTC) + timedelta(days=1))

    def call(key: str) -> Any:
        return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )

    with pytest.raises(openai.PermissionDeniedError):
        call(outsider)
    assert call(insider).choices
    assert call(later).choices


def test_concurrency_limit(gw: GatewayHarness) -> None:
    key = gw.create_key("one-at-a-time", max_concurrency=1)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "slow [sim latency_ms=800]"}], "max_tokens": 5}

    async def both() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            headers = {"Authorization": f"Bearer {key}"}
            first = asyncio.create_task(client.post(gw.base_url + "/chat/completions", json=body, headers=headers))
            await asyncio.sleep(0.3)
            second = await client.post(gw.base_url + "/chat/completions", json=body, headers=headers)
            return [(await first).status_code, second.status_code]

    assert asyncio.run(both()) == [200, 429]
