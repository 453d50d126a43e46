"""The admin API over a real socket, on SQLite and PostgreSQL: auth, validation, money, usage, prices, channels, CLI.

Calls that generate usage go through the gateway with the official ``openai`` SDK to the OpenAI simulator.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import time
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from omnirelay.config import ChannelConfig, Settings
from omnirelay.store.admin_repo import percentile
from tests.conftest import TEST_MASTER_KEY, UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}-{time.monotonic_ns() % 1_000_000}"


def settings_for(database_url: str, sim: ServerThread) -> Settings:
    return Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        config_poll_s=0.2,
        channels=[
            ChannelConfig(
                name="sim", base_url=sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini", "gpt-4o"]
            )
        ],
    )


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    harness = start_gateway(settings_for(database_url, openai_sim))
    yield harness
    harness.server.stop()


@pytest.fixture(scope="module")
def admin(gw: GatewayHarness) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=gw.server.url + "/admin/api", headers=headers, timeout=30) as client:
        yield client


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def new_account(admin: httpx.Client, topup: str | None = "20", **fields: Any) -> dict[str, Any]:
    account = ok(admin.post("/accounts", json={"name": unique("acct"), **fields}), 201)
    if topup is not None:
        ok(admin.post(f"/accounts/{account['id']}/topup", json={"amount_usd": topup}), 201)
    return ok(admin.get(f"/accounts/{account['id']}"))  # type: ignore[no-any-return]


def new_key(admin: httpx.Client, account_id: int, **fields: Any) -> dict[str, Any]:
    return ok(admin.post("/keys", json={"account": account_id, "name": unique("key"), **fields}), 201)  # type: ignore[no-any-return]


def sdk(gw: GatewayHarness, key: str, base_url: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url or gw.base_url, api_key=key, max_retries=0)


def chat(gw: GatewayHarness, key: str, content: str = "hi", model: str = "gpt-4o-mini") -> Any:
    return sdk(gw, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=64
    )


def all_pages(admin: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = ok(admin.get(path, params={**params, **({"cursor": cursor} if cursor else {})}))
        rows += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


# --- auth, schema, validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}]
)
def test_missing_or_wrong_admin_token_is_401(gw: GatewayHarness, headers: dict[str, str]) -> None:
    base = gw.server.url + "/admin/api"
    for response in (
        httpx.get(base + "/accounts", headers=headers),
        httpx.post(base + "/accounts", headers=headers, json={"name": "intruder"}),
        httpx.post(base + "/accounts/1/topup", headers=headers, json={"amount_usd": "1000"}),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


def test_admin_api_disabled_without_a_token(gw: GatewayHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gw.gateway, "settings", gw.gateway.settings.model_copy(update={"admin_token": None}))
    for headers in ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}):
        response = httpx.get(gw.server.url + "/admin/api/accounts", headers=headers)
        assert response.status_code == 503
        assert response.json()["error"]["message"] == "admin API disabled: set admin_token"


def test_openapi_schema_documents_every_resource(gw: GatewayHarness) -> None:
    schema = ok(httpx.get(gw.server.url + "/admin/api/openapi.json"))
    paths = set(schema["paths"])
    for path in (
        "/accounts",
        "/accounts/{account_id}/topup",
        "/accounts/{account_id}/adjustments",
        "/accounts/{account_id}/ledger",
        "/groups/{name}",
        "/keys/{key_id}/revoke",
        "/channels/{channel_id}/disable",
        "/prices/{model}",
        "/redemption-codes",
        "/usage",
        "/usage/aggregate",
        "/usage/export.csv",
    ):
        assert path in paths
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "amount_usd" in schema["components"]["schemas"]["TopupIn"]["properties"]
    assert httpx.get(gw.server.url + "/admin/api/docs").status_code == 200


@pytest.fixture(scope="module")
def acct(admin: httpx.Client) -> int:
    return int(new_account(admin, topup=None)["id"])


BAD_INPUT = [
    ("post", "/accounts/{acct}/topup", {"amount_usd": "-5"}, "amount_usd"),
    ("post", "/accounts/{acct}/topup", {"amount_usd": "0.0000001"}, "amount_usd"),
    ("post", "/accounts/{acct}/topup", {"amount_usd": "lots"}, "amount_usd"),
    ("post", "/accounts/{acct}/topup", {}, "amount_usd"),
    ("post", "/accounts/{acct}/adjustments", {"amount_usd": 0, "reason": "nothing"}, "amount_usd"),
    ("post", "/accounts/{acct}/adjustments", {"amount_usd": "-1"}, "reason"),
    ("post", "/accounts", {"name": ""}, "name"),
    ("post", "/accounts", {"name": "n", "monthly_budget_usd": "-1"}, "monthly_budget_usd"),
    ("post", "/accounts", {"name": "n", "rpm": -1}, "rpm"),
    ("post", "/accounts", {"name": "n", "bogus": 1}, "bogus"),
    ("post", "/accounts", {"name": "n-unknown-group", "group": "no-such-group"}, "group"),
    ("patch", "/accounts/{acct}", {"name": None}, "name"),
    ("post", "/keys", {"account": "{acct}", "name": "k", "allowed_ips": ["10.0.0.0/8", "300.1.1.1"]}, "allowed_ips.1"),
    ("post", "/keys", {"account": "{acct}", "name": "k", "allowed_ips": ["10.0.0.0/40"]}, "allowed_ips.0"),
    ("post", "/keys", {"account": "no-such-account", "name": "k"}, "account"),
    ("post", "/keys", {"account": "{acct}", "name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ("post", "/keys", {"account": "{acct}", "name": "k", "max_concurrency": 0}, "max_concurrency"),
    ("post", "/keys", {"account": "{acct}", "name": "k", "spend_cap_usd": "-3"}, "spend_cap_usd"),
    ("put", "/prices/test-model", {"input_per_mtok": "-1"}, "input_per_mtok"),
    ("put", "/prices/test-model", {"input_per_mtok": "1", "inptu_per_mtok": "1"}, "inptu_per_mtok"),
    ("put", "/prices/test-model", {"per_image": {"hd": "0.1"}}, "per_image"),
    ("put", "/prices/test-model", {}, "body"),
    ("put", "/groups/vip", {"multiplier": "0"}, "multiplier"),
    ("put", "/groups/vip", {"multiplier": "0.1234567"}, "multiplier"),
    ("post", "/channels", {"name": "c", "base_url": "ftp://example.com"}, "base_url"),
    ("post", "/channels", {"name": "c", "base_url": "http://example.com", "type": "nope"}, "type"),
    ("post", "/channels", {"name": "c", "base_url": "http://example.com", "weight": -1}, "weight"),
    ("post", "/channels", {"name": "c", "base_url": "http://example.com", "api_keys": [""]}, "api_keys.0"),
    ("post", "/redemption-codes", {"count": 0, "amount_usd": 1, "batch": "b"}, "count"),
    ("post", "/redemption-codes", {"count": 1, "amount_usd": 0, "batch": "b"}, "amount_usd"),
    ("post", "/redemption-codes", {"count": 1, "amount_usd": 1, "batch": "bad batch/"}, "batch"),
    ("get", "/usage?status=weird", None, "status"),
    ("get", "/usage?start=not-a-date", None, "start"),
    ("get", "/usage?start=2030-01-02T00:00:00Z&end=2030-01-01T00:00:00Z", None, "end"),
    ("get", "/usage/aggregate?bucket=week", None, "bucket"),
    ("get", "/usage/aggregate?by=planet", None, "by"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), BAD_INPUT, ids=[f"{p}:{f}" for _, p, _, f in BAD_INPUT])
def test_bad_input_is_422_naming_the_field(
    admin: httpx.Client, acct: int, method: str, path: str, body: dict[str, Any] | None, field: str
) -> None:
    if body is not None and body.get("account") == "{acct}":
        body = {**body, "account": acct}
    kwargs = {} if body is None else {"json": body}
    response = admin.request(method.upper(), path.format(acct=acct), **kwargs)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert error["message"].startswith(field + ":")


def test_rejected_writes_change_nothing(admin: httpx.Client, acct: int) -> None:
    account = ok(admin.get(f"/accounts/{acct}"))
    assert (account["credits_micros"], account["balance_usd"]) == (0, "0.000000")
    assert ok(admin.get(f"/accounts/{acct}/ledger"))["data"] == []


def test_unknown_ids_are_404(admin: httpx.Client) -> None:
    for method, path in (
        ("GET", "/accounts/999999"),
        ("POST", "/accounts/999999/disable"),
        ("GET", "/keys/999999"),
        ("POST", "/keys/999999/revoke"),
        ("GET", "/channels/999999"),
        ("DELETE", "/prices/no-such-override"),
        ("DELETE", "/redemption-codes/999999"),
    ):
        response = admin.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    topup = admin.post("/accounts/999999/topup", json={"amount_usd": "1"})
    assert topup.status_code == 404


# --- money ----------------------------------------------------------------------------------------------------


def test_balance_is_topups_minus_usage_and_equals_the_ledger(gw: GatewayHarness, admin: httpx.Client) -> None:
    account = new_account(admin, topup="20")
    moved = ok(admin.post(f"/accounts/{account['id']}/adjustments", json={"amount_usd": "-1.5", "reason": "fix"}), 201)
    assert moved["entry"]["amount_micros"] == -1_500_000 and moved["account"]["balance_usd"] == "18.500000"
    key = new_key(admin, account["id"])
    for _ in range(3):
        assert chat(gw, key["key"]).choices[0].message.content
    gw.flush_usage()

    rows = ok(admin.get("/usage", params={"account_id": account["id"]}))["data"]
    spent = sum(r["cost_micros"] for r in rows)
    assert len(rows) == 3 and all(r["cost_micros"] > 0 and r["key_id"] == key["id"] for r in rows)
    after = ok(admin.get(f"/accounts/{account['id']}"))
    assert after["credits_micros"] == 18_500_000
    assert after["debits_micros"] == spent == after["month_spend_micros"]
    assert after["balance_micros"] == 18_500_000 - spent
    assert Decimal(after["balance_usd"]) == Decimal(18_500_000 - spent) / 1_000_000
    assert after["available_micros"] == after["balance_micros"]  # nothing in flight
    assert after["active_keys"] == 1

    ledger = all_pages(admin, f"/accounts/{account['id']}/ledger", limit=2)
    assert sum(e["amount_micros"] for e in ledger) == after["balance_micros"]
    kinds = sorted(e["kind"] for e in ledger)
    assert kinds == ["adjustment", "settlement", "settlement", "settlement", "topup"]
    settled = {e["ref"]: -e["amount_micros"] for e in ledger if e["kind"] == "settlement"}
    assert settled == {r["request_id"]: r["cost_micros"] for r in rows}
    assert ok(admin.get(f"/keys/{key['id']}"))["spent_micros"] == spent


def test_topup_with_a_ref_is_idempotent(admin: httpx.Client) -> None:
    account = new_account(admin, topup=None)
    path = f"/accounts/{account['id']}/topup"
    first = ok(admin.post(path, json={"amount_usd": 7.25, "ref": "invoice-42"}), 201)
    again = ok(admin.post(path, json={"amount_usd": "7.25", "ref": "invoice-42"}), 200)
    assert again["entry"]["id"] == first["entry"]["id"]
    assert again["account"]["balance_usd"] == "7.250000"
    clash = admin.post(path, json={"amount_usd": "8", "ref": "invoice-42"})
    assert clash.status_code == 409 and clash.json()["error"]["field"] == "ref"


def test_groups_upsert_and_accounts_move_between_them(admin: httpx.Client) -> None:
    name = unique("vip")
    assert ok(admin.put(f"/groups/{name}", json={"multiplier": "0.80"})) == {
        "name": name,
        "multiplier": "0.8",
        "accounts": 0,
    }
    assert ok(admin.put(f"/groups/{name}", json={"multiplier": 1.25}))["multiplier"] == "1.25"
    account = new_account(admin, topup=None, group=name)
    groups = {g["name"]: g for g in ok(admin.get("/groups"))}
    assert groups[name]["accounts"] == 1 and groups[name]["multiplier"] == "1.25"
    assert admin.delete(f"/groups/{name}").status_code == 409
    ok(admin.patch(f"/accounts/{account['id']}", json={"group": "default"}))
    assert admin.delete(f"/groups/{name}").status_code == 204


def test_account_patch_disable_and_enable(gw: GatewayHarness, admin: httpx.Client) -> None:
    account = new_account(admin, topup="5", rpm=100, monthly_budget_usd="50")
    assert (account["rpm"], account["monthly_budget_usd"]) == (100, "50.000000")
    patched = ok(admin.patch(f"/accounts/{account['id']}", json={"rpm": None, "tpm": 5000}))
    assert (patched["rpm"], patched["tpm"], patched["monthly_budget_micros"]) == (None, 5000, 50_000_000)
    taken = admin.patch(f"/accounts/{account['id']}", json={"name": "default"})
    assert taken.status_code == 409 and taken.json()["error"]["field"] == "name"

    key = new_key(admin, account["id"])
    ok(admin.post(f"/accounts/{account['id']}/disable"))
    with pytest.raises(openai.PermissionDeniedError):
        chat(gw, key["key"])
    assert ok(admin.post(f"/accounts/{account['id']}/enable"))["disabled"] is False
    assert chat(gw, key["key"]).choices


def test_keys_are_shown_once_and_listed_by_prefix(admin: httpx.Client) -> None:
    account = new_account(admin, topup=None)
    created = new_key(
        admin,
        account["id"],
        models=["gpt-4o-mini"],
        allowed_ips=["10.1.2.3", "192.168.0.0/16"],
        spend_cap_usd="2.5",
        rpm=10,
        label="ci",
    )
    secret = created["key"]
    assert created["prefix"] == secret[:10] and created["allowed_ips"] == ["10.1.2.3/32", "192.168.0.0/16"]
    assert (created["spend_cap_usd"], created["spend_cap_micros"]) == ("2.500000", 2_500_000)
    listing = admin.get("/keys", params={"account_id": account["id"]})
    assert secret not in listing.text and "key" not in listing.json()["data"][0]
    patched = ok(admin.patch(f"/keys/{created['id']}", json={"spend_cap_usd": None, "models": None, "tpm": 99}))
    assert (patched["spend_cap_micros"], patched["models"], patched["tpm"], patched["rpm"]) == (None, None, 99, 10)


def test_revoked_key_is_refused_by_every_instance_within_a_second(
    gw: GatewayHarness, admin: httpx.Client, database_url: str, openai_sim: ServerThread
) -> None:
    other = start_gateway(settings_for(database_url, openai_sim))
    try:
        account = new_account(admin, topup="5")
        key = new_key(admin, account["id"])
        _eventually(lambda: sdk(gw, key["key"], other.base_url).models.list() is not None, within=2.0)
        assert chat(gw, key["key"]).choices

        revoked = ok(admin.post(f"/keys/{key['id']}/revoke"))
        started = time.monotonic()
        assert revoked["status"] == "revoked" and revoked["revoked_at"]
        with pytest.raises(openai.AuthenticationError):  # this instance reloaded before answering
            chat(gw, key["key"])
        _eventually(lambda: _refused(sdk(gw, key["key"], other.base_url)), within=1.0)
        assert time.monotonic() - started < 1.0
        assert admin.post(f"/keys/{key['id']}/revoke").status_code == 409
    finally:
        other.server.stop()


def _refused(client: openai.OpenAI) -> bool:
    try:
        client.models.list()
    except openai.AuthenticationError:
        return True
    return False


def _eventually(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except openai.APIError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s")
        time.sleep(0.02)


# --- usage ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traffic(gw: GatewayHarness, admin: httpx.Client) -> dict[str, Any]:
    """One account, two keys: three mini calls at different latencies, one gpt-4o call and one upstream error."""
    account = new_account(admin, topup="20")
    first, second = new_key(admin, account["id"]), new_key(admin, account["id"])
    for latency in (0, 30, 60):
        chat(gw, first["key"], f"hello [sim latency_ms={latency}]")
    chat(gw, second["key"], "hello", model="gpt-4o")
    with pytest.raises(openai.InternalServerError):
        chat(gw, second["key"], "boom [sim fault=500]")
    gw.flush_usage()
    return {"account": account, "first": first, "second": second}


def test_usage_filters(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    account_id, first, second = traffic["account"]["id"], traffic["first"]["id"], traffic["second"]["id"]

    def count(**params: Any) -> int:
        return len(ok(admin.get("/usage", params={"account_id": account_id, **params}))["data"])

    assert count() == 5
    assert (count(key_id=first), count(key_id=second)) == (3, 2)
    assert (count(model="gpt-4o"), count(model="gpt-4o-mini")) == (1, 4)
    assert (count(status="ok"), count(status="error"), count(status="502"), count(status="200")) == (4, 1, 1, 4)
    sim_id = next(c["id"] for c in ok(admin.get("/channels")) if c["name"] == "sim")
    assert (count(channel_id=sim_id), count(channel_id=999_999)) == (5, 0)
    assert count(start="2000-01-01T00:00:00Z") == 5
    assert count(start=_iso_in(hours=1)) == 0 and count(end="2000-01-01T00:00:00+02:00") == 0
    paged = all_pages(admin, "/usage", account_id=account_id, limit=2)
    ids = [r["id"] for r in paged]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)


def _iso_in(hours: float) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


@pytest.mark.parametrize(("bucket", "by"), [("hour", "model"), ("day", "key"), ("hour", "channel")])
def test_usage_aggregates_agree_with_the_rows(
    admin: httpx.Client, traffic: dict[str, Any], bucket: str, by: str
) -> None:
    account_id = traffic["account"]["id"]
    rows = ok(admin.get("/usage", params={"account_id": account_id}))["data"]
    answer = ok(admin.get("/usage/aggregate", params={"account_id": account_id, "bucket": bucket, "by": by}))
    assert (answer["bucket"], answer["by"]) == (bucket, by)
    column = {"model": "model", "key": "key_id", "channel": "channel_id"}[by]
    expected: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        expected[str(row[column])].append(row)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for agg in answer["data"]:
        assert agg["bucket_start"].endswith("+00:00")
        assert agg["cost_usd"] == f"{agg['cost_micros'] / 1_000_000:.6f}"
        for name in ("requests", "prompt_tokens", "completion_tokens", "cost_micros", "errors"):
            totals[agg["group"]][name] += agg[name]
    assert set(totals) == set(expected)
    for group, members in expected.items():
        assert totals[group]["requests"] == len(members)
        assert totals[group]["prompt_tokens"] == sum(r["prompt_tokens"] for r in members)
        assert totals[group]["completion_tokens"] == sum(r["completion_tokens"] for r in members)
        assert totals[group]["cost_micros"] == sum(r["cost_micros"] for r in members)
        assert totals[group]["errors"] == sum(r["status_code"] >= 400 for r in members)
    for agg in answer["data"]:
        latencies = sorted(
            float(r["latency_ms"]) for r in expected[agg["group"]] if _same_bucket(r, agg["bucket_start"], bucket)
        )
        assert agg["p50_latency_ms"] == pytest.approx(percentile(latencies, 0.5))
        assert agg["p95_latency_ms"] == pytest.approx(percentile(latencies, 0.95))
        assert latencies[0] <= agg["p50_latency_ms"] <= agg["p95_latency_ms"] <= latencies[-1]
    if by == "key":
        labels = {a["group"]: a["label"] for a in answer["data"]}
        assert labels[str(traffic["first"]["id"])] == traffic["first"]["name"]


def _same_bucket(row: dict[str, Any], bucket_start: str, bucket: str) -> bool:
    width = 13 if bucket == "hour" else 10  # "YYYY-MM-DDTHH" or "YYYY-MM-DD"
    return bool(row["created_at"][:width] == bucket_start[:width])


def test_usage_csv_export_parses(admin: httpx.Client, traffic: dict[str, Any]) -> None:
    account_id = traffic["account"]["id"]
    response = admin.get("/usage/export.csv", params={"account_id": account_id})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(response.text)))
    rows = ok(admin.get("/usage", params={"account_id": account_id}))["data"]
    assert [int(r["id"]) for r in exported] == sorted(r["id"] for r in rows)
    assert sum(int(r["cost_micros"]) for r in exported) == sum(r["cost_micros"] for r in rows)
    assert sum(Decimal(r["cost_usd"]) for r in exported) == Decimal(sum(r["cost_micros"] for r in rows)) / 10**6
    assert {r["status_code"] for r in exported} == {"200", "502"}
    errors_only = admin.get("/usage/export.csv", params={"account_id": account_id, "status": "error"})
    assert len(list(csv.DictReader(io.StringIO(errors_only.text)))) == 1


# --- prices ---------------------------------------------------------------------------------------------------


def test_price_override_changes_the_cost_of_the_next_call(gw: GatewayHarness, admin: httpx.Client) -> None:
    account = new_account(admin, topup="20")
    key = new_key(admin, account["id"])
    shipped = ok(admin.get("/prices/gpt-4o"))
    assert shipped["source"] == "shipped"

    def cost_of_next_call() -> tuple[int, int, int]:
        chat(gw, key["key"], model="gpt-4o")
        gw.flush_usage()
        row = ok(admin.get("/usage", params={"key_id": key["id"], "limit": 1}))["data"][0]
        return row["prompt_tokens"], row["completion_tokens"], row["cost_micros"]

    prompt, completion, before = cost_of_next_call()
    try:
        spec = {"input_per_mtok": 100, "output_per_mtok": "200.5", "max_output_tokens": 4096}
        put = ok(admin.put("/prices/gpt-4o", json=spec))
        assert put["price"] == {"input_per_mtok": "100.00", "output_per_mtok": "200.50", "max_output_tokens": 4096}
        listed = {p["model"]: p for p in ok(admin.get("/prices"))["data"]}
        assert listed["gpt-4o"]["source"] == "override"
        assert ok(admin.get("/prices/gpt-4o-2024-11-20"))["resolved"] == "gpt-4o"
        prompt2, completion2, after = cost_of_next_call()
        assert (prompt2, completion2) == (prompt, completion)
        exact_micros_times_million = prompt * 100_000_000 + completion * 200_500_000
        assert after == -(-exact_micros_times_million // 1_000_000) != before
    finally:
        assert admin.delete("/prices/gpt-4o").status_code == 204
    assert cost_of_next_call()[2] == before
    assert ok(admin.get("/prices/gpt-4o"))["source"] == "shipped"


# --- channels -------------------------------------------------------------------------------------------------


def test_channel_lifecycle_through_the_api(gw: GatewayHarness, admin: httpx.Client, openai_sim: ServerThread) -> None:
    account = new_account(admin, topup="5")
    key = new_key(admin, account["id"])["key"]
    name, model = unique("extra"), unique("extra-model")
    created = ok(
        admin.post(
            "/channels",
            json={
                "name": name,
                "base_url": openai_sim.url + "/v1",
                "api_keys": [UPSTREAM_KEY],
                "model_map": {model: "gpt-4o-mini"},
                "headers": {"x-team": "secret-header-value"},
                "timeout_s": 30,
            },
        ),
        201,
    )
    assert (created["key_count"], created["from_config"], created["timeout_s"]) == (1, False, 30.0)
    assert created["header_names"] == ["x-team"] and created["keys_masked"] == ["sk-***ef"]
    listing = admin.get("/channels").text
    assert UPSTREAM_KEY not in listing and "secret-header-value" not in listing
    assert chat(gw, key, model=model).choices

    disabled = ok(admin.post(f"/channels/{created['id']}/disable", json={"reason": "maintenance"}))
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "maintenance")
    with pytest.raises(openai.NotFoundError):
        chat(gw, key, model=model)
    assert ok(admin.post(f"/channels/{created['id']}/enable"))["disabled_reason"] is None
    assert chat(gw, key, model=model).choices

    wrong = ok(admin.patch(f"/channels/{created['id']}", json={"api_keys": ["sk-wrong-upstream-key-000000"]}))
    assert wrong["keys_masked"] == ["sk-***00"] and wrong["timeout_s"] == 30.0
    with pytest.raises(openai.APIStatusError) as failed:
        chat(gw, key, model=model)
    assert failed.value.status_code == 502

    assert admin.delete(f"/channels/{created['id']}").status_code == 204
    assert admin.get(f"/channels/{created['id']}").status_code == 404
    duplicate = admin.post("/channels", json={"name": "sim", "base_url": "http://example.com"})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["field"] == "name"


def test_config_channels_may_be_disabled_but_not_edited_or_deleted(admin: httpx.Client) -> None:
    sim = next(c for c in ok(admin.get("/channels")) if c["name"] == "sim")
    assert sim["from_config"] is True
    assert admin.patch(f"/channels/{sim['id']}", json={"weight": 5}).status_code == 409
    assert admin.delete(f"/channels/{sim['id']}").status_code == 409
    try:
        assert ok(admin.post(f"/channels/{sim['id']}/disable"))["enabled"] is False
    finally:
        assert ok(admin.post(f"/channels/{sim['id']}/enable"))["enabled"] is True


# --- redemption codes -----------------------------------------------------------------------------------------


def test_redemption_batches_are_shown_once_and_listed_by_prefix(admin: httpx.Client) -> None:
    batch = unique("promo")
    created = ok(admin.post("/redemption-codes", json={"count": 3, "amount_usd": "2.5", "batch": batch}), 201)
    codes = created["codes"]
    assert (created["count"], created["amount_usd"], len(set(codes))) == (3, "2.500000", 3)
    listed = all_pages(admin, "/redemption-codes", batch=batch)
    assert sorted(r["prefix"] for r in listed) == sorted(c[:8] for c in codes)
    assert all(r["redeemed_at"] is None and r["amount_micros"] == 2_500_000 for r in listed)
    assert not any(code in admin.get("/redemption-codes", params={"batch": batch}).text for code in codes)

    as_csv = admin.post("/redemption-codes?format=csv", json={"count": 2, "amount_usd": 1, "batch": batch})
    assert as_csv.status_code == 201 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["amount_usd"], r["batch"]) for r in rows] == [("1.000000", batch)] * 2
    assert all(r["code"].startswith("ORC-") for r in rows)

    assert admin.delete(f"/redemption-codes/{listed[0]['id']}").status_code == 204
    assert len(all_pages(admin, "/redemption-codes", batch=batch, redeemed=False)) == 4


# --- CLI ------------------------------------------------------------------------------------------------------


def test_cli_accounts_topup_and_channels(tmp_path: Path) -> None:
    from omnirelay.cli import app

    database = tmp_path / "cli.db"
    config = tmp_path / "omnirelay.yaml"
    config.write_text(f"database_url: sqlite:///{database}\nmaster_key: {TEST_MASTER_KEY}\n")
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, [*args, "--config", str(config)])
        assert result.exit_code == code, result.output
        return result.output

    assert "created" in run("accounts", "create", "acme", "--rpm", "60", "--monthly-budget-usd", "100")
    assert "exists" in run("accounts", "create", "acme", code=1)
    assert "unknown group" in run("accounts", "create", "other", "--group", "nope", code=1)
    assert "balance 12.500000" in run("topup", "acme", "12.5", "--reason", "invoice 7")
    assert "balance 13.500000" in run("topup", "acme", "1")
    run("topup", "acme", "-1", code=2)
    run("topup", "acme", "0.0000001", code=2)
    assert "no account" in run("topup", "nobody", "1", code=1)
    listing = run("accounts", "list")
    assert "acme" in listing and "13.500000" in listing
    shown = run("accounts", "show", "acme")
    assert "balance_usd : 13.500000" in shown and "invoice 7" in shown and "rpm 60" in shown

    version_before = asyncio.run(_seed_channel(database))
    listing = run("channels", "list")
    assert "cli-chan" in listing and "sk-cli-upstream" not in listing and "enabled" in listing
    assert "disabled" in run("channels", "disable", "cli-chan", "--reason", "maintenance")
    listing = run("channels", "list")
    assert "disabled" in listing and "(maintenance)" in listing
    assert "enabled" in run("channels", "enable", "cli-chan")
    assert "no channel" in run("channels", "disable", "missing", code=1)
    assert asyncio.run(_config_version(database)) > version_before  # running gateways reload on this


async def _seed_channel(database: Path) -> int:
    from omnirelay.crypto import SecretBox
    from omnirelay.store import admin_repo, repo
    from omnirelay.store.db import create_engine, sessionmaker

    engine = create_engine(f"sqlite:///{database}")
    try:
        async with sessionmaker(engine).begin() as session:
            box = SecretBox(TEST_MASTER_KEY)
            keys = ["sk-cli-upstream-1", "sk-cli-upstream-2"]
            await admin_repo.create_channel(session, box, keys, name="cli-chan", type="openai", base_url="http://x/v1")
            return await repo.config_version(session)
    finally:
        await engine.dispose()


async def _config_version(database: Path) -> int:
    from omnirelay.store import repo
    from omnirelay.store.db import create_engine, sessionmaker

    engine = create_engine(f"sqlite:///{database}")
    try:
        async with sessionmaker(engine)() as session:
            return await repo.config_version(session)
    finally:
        await engine.dispose()
