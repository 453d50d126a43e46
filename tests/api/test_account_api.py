"""Self-service routes for a client key, on SQLite and PostgreSQL: the OpenAI-era dashboard endpoints, key info and
redemption codes; their numbers must be the ones the admin API shows."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.test_admin_api import ADMIN_TOKEN, chat, new_account, new_key, ok, settings_for
from tests.conftest import GatewayHarness, start_gateway
from tests.harness import ServerThread


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


def as_key(gw: GatewayHarness, key: str) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture(scope="module")
def used(gw: GatewayHarness, admin: httpx.Client) -> dict[str, Any]:
    """An account with $10 and two keys: one uncapped, one capped at $3; each made calls."""
    account = new_account(admin, topup="10")
    free, capped = new_key(admin, account["id"]), new_key(admin, account["id"], spend_cap_usd="3", rpm=30)
    for _ in range(2):
        chat(gw, free["key"])
    chat(gw, capped["key"], model="gpt-4o")
    gw.flush_usage()
    return {"account": account, "free": free, "capped": capped}


def test_key_info_matches_the_admin_api(gw: GatewayHarness, admin: httpx.Client, used: dict[str, Any]) -> None:
    with as_key(gw, used["capped"]["key"]) as client:
        info = ok(client.get("/key/info"))
    account = ok(admin.get(f"/accounts/{used['account']['id']}"))
    key = ok(admin.get(f"/keys/{used['capped']['id']}"))
    assert info["object"] == "key_info"
    assert {k: info["key"][k] for k in ("id", "name", "prefix", "spend_cap_usd", "spent_micros", "rpm")} == {
        k: key[k] for k in ("id", "name", "prefix", "spend_cap_usd", "spent_micros", "rpm")
    }
    assert info["key"]["remaining_micros"] == 3_000_000 - key["spent_micros"] and key["spent_micros"] > 0
    for name in ("balance_micros", "balance_usd", "available_micros", "month_spend_micros", "unlimited"):
        assert info["account"][name] == account[name], name
    assert info["account"]["spent_micros"] == account["debits_micros"]
    assert (info["account"]["id"], info["account"]["name"], info["account"]["multiplier"]) == (
        account["id"],
        account["name"],
        "1",
    )
    assert used["capped"]["key"] not in str(info)


def test_dashboard_endpoints_parse_with_the_admin_numbers(
    gw: GatewayHarness, admin: httpx.Client, used: dict[str, Any]
) -> None:
    account = ok(admin.get(f"/accounts/{used['account']['id']}"))
    rows = ok(admin.get("/usage", params={"account_id": account["id"]}))["data"]
    with as_key(gw, used["free"]["key"]) as client:
        subscription = ok(client.get("/dashboard/billing/subscription"))
        usage = ok(client.get("/dashboard/billing/usage"))
        today = datetime.now(UTC).date()
        window = {
            "start_date": (today - timedelta(days=99)).isoformat(),
            "end_date": (today + timedelta(1)).isoformat(),
        }
        in_window = ok(client.get("/dashboard/billing/usage", params=window))
        long_ago = {"start_date": "2001-01-01", "end_date": "2001-02-01"}
        empty = ok(client.get("/dashboard/billing/usage", params=long_ago))
        no_prefix = httpx.get(gw.server.url + "/dashboard/billing/subscription", headers=client.headers)
    # The uncapped key answers for its account: $10 of credits, usage in cents.
    assert subscription["object"] == "billing_subscription" and subscription["has_payment_method"] is True
    assert subscription["hard_limit_usd"] == subscription["soft_limit_usd"] == 10.0
    assert subscription["access_until"] == 0 and no_prefix.json() == subscription
    assert usage["object"] == "list"
    assert usage["total_usage"] == pytest.approx(account["debits_micros"] / 10_000)
    assert usage["total_usage"] == pytest.approx(sum(r["cost_micros"] for r in rows) / 10_000)
    assert in_window["total_usage"] == usage["total_usage"]
    assert subscription["hard_limit_usd"] - usage["total_usage"] / 100 == pytest.approx(account["balance_micros"] / 1e6)
    items = {i["name"]: i["cost"] for day in usage["daily_costs"] for i in day["line_items"]}
    assert set(items) == {"gpt-4o-mini", "gpt-4o"}
    assert sum(items.values()) == pytest.approx(usage["total_usage"])
    assert (empty["total_usage"], empty["daily_costs"]) == (0, [])


def test_dashboard_speaks_for_the_key_when_its_cap_is_tighter(gw: GatewayHarness, used: dict[str, Any]) -> None:
    with as_key(gw, used["capped"]["key"]) as client:
        subscription = ok(client.get("/dashboard/billing/subscription"))
        usage = ok(client.get("/dashboard/billing/usage"))
        info = ok(client.get("/key/info"))
        bad = client.get("/dashboard/billing/usage", params={"start_date": "yesterday"})
    assert subscription["hard_limit_usd"] == 3.0
    assert usage["total_usage"] == pytest.approx(info["key"]["spent_micros"] / 10_000)
    assert set(i["name"] for d in usage["daily_costs"] for i in d["line_items"]) == {"gpt-4o"}
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "start_date"


def test_unlimited_account_reports_no_limit_and_expiry_shows(gw: GatewayHarness, admin: httpx.Client) -> None:
    account = new_account(admin, topup=None, unlimited=True)
    expires = datetime.now(UTC) + timedelta(days=3)
    key = new_key(admin, account["id"], expires_at=expires.isoformat())
    with as_key(gw, key["key"]) as client:
        subscription = ok(client.get("/dashboard/billing/subscription"))
        info = ok(client.get("/key/info"))
    assert subscription["hard_limit_usd"] == 100_000_000.0
    assert subscription["access_until"] == int(expires.timestamp())
    assert info["account"]["unlimited"] is True and info["account"]["available_micros"] is None
    assert abs(datetime.fromisoformat(info["key"]["expires_at"]) - expires) < timedelta(seconds=1)


def test_account_routes_need_a_valid_key(gw: GatewayHarness) -> None:
    for path in ("/key/info", "/dashboard/billing/subscription", "/dashboard/billing/usage"):
        assert httpx.get(gw.base_url + path).status_code == 401
        wrong = httpx.get(gw.base_url + path, headers={"Authorization": "Bearer sk-or-not-a-key"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert httpx.post(gw.base_url + "/account/redeem", json={"code": "x"}).status_code == 401


def test_redeem_once_credits_the_account(gw: GatewayHarness, admin: httpx.Client) -> None:
    account = new_account(admin, topup="1")
    key = new_key(admin, account["id"])
    codes = ok(admin.post("/redemption-codes", json={"count": 2, "amount_usd": "2.5", "batch": "welcome"}), 201)
    code = codes["codes"][0]
    with as_key(gw, key["key"]) as client:
        redeemed = ok(client.post("/account/redeem", json={"code": f"  {code.lower()} "}))
        assert (redeemed["object"], redeemed["amount_usd"], redeemed["balance_usd"]) == (
            "redemption",
            "2.500000",
            "3.500000",
        )
        again = client.post("/account/redeem", json={"code": code})
        assert again.status_code == 409 and again.json()["error"]["code"] == "redemption_code_used"
        unknown = client.post("/account/redeem", json={"code": "ORC-NOPE"})
        assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "code"
        missing = client.post("/account/redeem", json={})
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "code"
        info = ok(client.get("/key/info"))

    after = ok(admin.get(f"/accounts/{account['id']}"))
    assert after["balance_micros"] == info["account"]["balance_micros"] == 3_500_000
    ledger = ok(admin.get(f"/accounts/{account['id']}/ledger", params={"kind": "redemption"}))["data"]
    assert [(e["amount_micros"], e["key_id"]) for e in ledger] == [(2_500_000, key["id"])]
    listed = {c["prefix"]: c for c in ok(admin.get("/redemption-codes", params={"batch": "welcome"}))["data"]}
    assert listed[code[:8]]["redeemed_by"] == account["id"] and listed[code[:8]]["redeemed_at"]
    assert admin.delete(f"/redemption-codes/{listed[code[:8]]['id']}").status_code == 409


def test_concurrent_redeems_of_one_code_credit_once(gw: GatewayHarness, admin: httpx.Client) -> None:
    accounts = [new_account(admin, topup=None) for _ in range(2)]
    keys = [new_key(admin, a["id"])["key"] for a in accounts for _ in range(3)]
    code = ok(admin.post("/redemption-codes", json={"count": 1, "amount_usd": 4, "batch": "race"}), 201)["codes"][0]

    def redeem(key: str) -> int:
        return httpx.post(
            gw.base_url + "/account/redeem", headers={"Authorization": f"Bearer {key}"}, json={"code": code}
        ).status_code

    with ThreadPoolExecutor(len(keys)) as pool:
        statuses = sorted(pool.map(redeem, keys))
    assert statuses == [200] + [409] * (len(keys) - 1)
    balances = [ok(admin.get(f"/accounts/{a['id']}"))["balance_micros"] for a in accounts]
    assert sorted(balances) == [0, 4_000_000]
