"""Self-service accounts and the System API (``/api/v1``) over a real socket, on SQLite and PostgreSQL.

A customer signs up, mints an access token, manages keys, calls a model with the official ``openai`` SDK and reads
its own logs, balance, tasks and ledger; a second customer can reach none of the first one's rows.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from omnirelay.api.admin_models import OwnTaskOut, TaskOut
from omnirelay.config import AccountsSettings, ChannelConfig, Settings
from omnirelay.crypto import hash_key
from omnirelay.simulators.tasks.midjourney import create_midjourney_simulator
from omnirelay.store.models import Task
from tests.conftest import UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread
from tests.tasks.conftest import MJ_KEY, MJ_MODELS, sim_fixture, task_settings

ADMIN_TOKEN = "admin-token-for-system-api-tests-0123"
SIGNUP_CREDIT = "5"
PASSWORD = "correct horse battery staple"
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}x{time.monotonic_ns() % 1_000_000}"


mj_sim = sim_fixture(create_midjourney_simulator, MJ_KEY)


def settings_for(database_url: str, sim: ServerThread, mj: ServerThread, **accounts: Any) -> Settings:
    return Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        config_poll_s=0.2,
        accounts=AccountsSettings(
            **{"signup": "open", "signup_credit_usd": SIGNUP_CREDIT, "signups_per_window": 1000, **accounts}
        ),
        channels=[
            ChannelConfig(
                name="sim", base_url=sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini", "gpt-4o"]
            ),
            ChannelConfig(name="mj", type="midjourney", base_url=mj.url, api_keys=[MJ_KEY], models=MJ_MODELS),
        ],
        tasks=task_settings(),
    )


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread, mj_sim: ServerThread) -> Iterator[GatewayHarness]:
    harness = start_gateway(settings_for(database_url, openai_sim, mj_sim))
    yield harness
    harness.server.stop()


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


class Customer:
    """One signed-up user: a browser-like client (cookie + CSRF) and, once minted, an access-token client."""

    def __init__(self, gw: GatewayHarness, username: str | None = None) -> None:
        self.gw = gw
        self.username = username or unique("user")
        self.browser = httpx.Client(base_url=gw.server.url + "/api/v1", timeout=30)
        signed_up = ok(
            self.browser.post(
                "/auth/signup", json={"username": self.username, "password": PASSWORD, "display_name": "Ada L."}
            ),
            201,
        )
        self.csrf = signed_up["csrf_token"]
        self.user = signed_up["user"]
        self.set_cookie = None
        token = ok(self.browser.post("/tokens", json={"name": "ci"}, headers={"x-csrf-token": self.csrf}), 201)
        self.token = token["token"]
        self.token_id = token["id"]
        self.api = httpx.Client(
            base_url=gw.server.url + "/api/v1", headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def close(self) -> None:
        self.browser.close()
        self.api.close()


@pytest.fixture
def alice(gw: GatewayHarness) -> Iterator[Customer]:
    customer = Customer(gw)
    yield customer
    customer.close()


@pytest.fixture
def bob(gw: GatewayHarness) -> Iterator[Customer]:
    customer = Customer(gw)
    yield customer
    customer.close()


def sdk(gw: GatewayHarness, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)


def chat(gw: GatewayHarness, key: str, model: str = "gpt-4o-mini") -> Any:
    return sdk(gw, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello there"}], max_tokens=32
    )


# --- the customer's journey -----------------------------------------------------------------------------------


def test_signup_token_key_call_logs_and_balance(gw: GatewayHarness, alice: Customer) -> None:
    start = ok(alice.api.get("/account"))
    assert start["username"] == alice.username.lower()
    assert start["display_name"] == "Ada L."
    assert (start["balance_usd"], start["used_micros"], start["request_count"]) == ("5.000000", 0, 0)
    assert (start["group"], start["ratio"]) == ("default", "1")

    created = ok(alice.api.post("/keys", json={"name": "laptop"}), 201)
    assert created["key"].startswith("sk-or-") and created["status"] == "active"
    listed = ok(alice.api.get("/keys"))["data"]
    assert [k["name"] for k in listed] == ["laptop"]
    assert created["key"] not in str(listed) and listed[0]["masked"] == created["key"][:10] + "…"

    answer = chat(gw, created["key"])
    assert answer.choices[0].message.content
    gw.flush_usage()

    logs = ok(alice.api.get("/logs"))["data"]
    assert len(logs) == 1
    row = logs[0]
    assert (row["type"], row["model"], row["key_name"], row["status_code"]) == (
        "consumption",
        "gpt-4o-mini",
        "laptop",
        200,
    )
    assert row["prompt_tokens"] == answer.usage.prompt_tokens
    assert row["completion_tokens"] == answer.usage.completion_tokens
    assert row["cost_micros"] > 0 and row["amount_micros"] == -row["cost_micros"]

    after = ok(alice.api.get("/account"))
    assert after["balance_micros"] == start["balance_micros"] - row["cost_micros"]
    assert (after["used_micros"], after["request_count"]) == (row["cost_micros"], 1)

    aggregate = ok(alice.api.get("/usage/aggregate"))
    assert aggregate["total"]["cost_micros"] == row["cost_micros"]
    assert [(m["model"], m["requests"]) for m in aggregate["by_model"]] == [("gpt-4o-mini", 1)]
    assert [d["day"] for d in aggregate["by_day"]] == [datetime.now(UTC).date().isoformat()]

    # filters: by model and key name (both match), another key name and another model (neither does)
    assert len(ok(alice.api.get("/logs", params={"model": "gpt-4o-mini", "key_name": "laptop"}))["data"]) == 1
    assert ok(alice.api.get("/logs", params={"key_name": "other"}))["data"] == []
    assert ok(alice.api.get("/logs", params={"model": "gpt-4o"}))["data"] == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert ok(alice.api.get("/logs", params={"start": future}))["data"] == []

    # the sign-up credit is a top-up in the ledger and in the top-up logs
    topups = ok(alice.api.get("/logs", params={"type": "topup"}))["data"]
    assert [(t["type"], t["amount_usd"]) for t in topups] == [("topup", "5.000000")]
    ledger = ok(alice.api.get("/ledger"))["data"]
    assert [(e["kind"], e["amount_micros"]) for e in ledger] == [
        ("settlement", -row["cost_micros"]),
        ("topup", 5_000_000),
    ]


def test_logs_paginate(gw: GatewayHarness, alice: Customer) -> None:
    key = ok(alice.api.post("/keys", json={"name": "pager"}), 201)["key"]
    for _ in range(3):
        chat(gw, key)
    gw.flush_usage()
    first = ok(alice.api.get("/logs", params={"limit": 2}))
    assert len(first["data"]) == 2 and first["next_cursor"] is not None
    second = ok(alice.api.get("/logs", params={"limit": 2, "cursor": first["next_cursor"]}))
    assert len(second["data"]) == 1 and second["next_cursor"] is None
    ids = [r["id"] for r in first["data"] + second["data"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 3


def test_topup_by_redemption_code(gw: GatewayHarness, alice: Customer) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    batch = ok(
        httpx.post(
            gw.server.url + "/admin/api/redemption-codes",
            json={"count": 1, "amount_usd": "2.5", "batch": unique("b")},
            headers=admin,
        ),
        201,
    )
    code = batch["codes"][0]
    redeemed = ok(alice.api.post("/topup", json={"code": code}), 201)
    assert (redeemed["amount_usd"], redeemed["balance_usd"]) == ("2.500000", "7.500000")
    again = alice.api.post("/topup", json={"code": code})
    assert (again.status_code, again.json()["error"]["field"]) == (409, "code")
    unknown = alice.api.post("/topup", json={"code": "ORC-NOPE"})
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (404, "code")
    kinds = [e["kind"] for e in ok(alice.api.get("/ledger"))["data"]]
    assert kinds == ["redemption", "topup"]
    assert ok(alice.api.get("/account"))["balance_micros"] == 7_500_000


# --- limits set through the API hold at once --------------------------------------------------------------------


def test_model_limit_cap_disable_and_delete_apply_at_once(gw: GatewayHarness, alice: Customer) -> None:
    key = ok(alice.api.post("/keys", json={"name": "limited", "models": ["gpt-4o"]}), 201)
    with pytest.raises(openai.PermissionDeniedError):
        chat(gw, key["key"], "gpt-4o-mini")
    chat(gw, key["key"], "gpt-4o")

    ok(alice.api.patch(f"/keys/{key['id']}", json={"models": None, "spend_cap_usd": "0"}))
    with pytest.raises(openai.RateLimitError) as refused:
        chat(gw, key["key"])
    assert refused.value.code == "insufficient_quota"

    unlimited = ok(alice.api.patch(f"/keys/{key['id']}", json={"spend_cap_usd": None}))
    assert (unlimited["spend_cap_usd"], unlimited["remaining_usd"]) == (None, None)
    chat(gw, key["key"])

    assert ok(alice.api.post(f"/keys/{key['id']}/disable"))["status"] == "disabled"
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key["key"])
    admin_view = httpx.get(
        f"{gw.server.url}/admin/api/keys/{key['id']}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert ok(admin_view)["status"] == "disabled"
    assert ok(alice.api.post(f"/keys/{key['id']}/enable"))["status"] == "active"
    chat(gw, key["key"])

    ok(alice.api.delete(f"/keys/{key['id']}"), 204)
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key["key"])
    assert key["id"] not in [k["id"] for k in ok(alice.api.get("/keys"))["data"]]
    assert alice.api.get(f"/keys/{key['id']}").status_code == 404
    gw.flush_usage()
    # the deleted key's calls stay in the account's logs, under its name
    assert {r["key_name"] for r in ok(alice.api.get("/logs"))["data"]} == {"limited"}


def test_key_ip_and_expiry_edits(gw: GatewayHarness, alice: Customer) -> None:
    key = ok(alice.api.post("/keys", json={"name": "ips", "allowed_ips": ["10.0.0.0/8"]}), 201)
    with pytest.raises(openai.PermissionDeniedError):
        chat(gw, key["key"])
    ok(alice.api.patch(f"/keys/{key['id']}", json={"allowed_ips": ["127.0.0.1"], "rpm": 100, "name": "ips2"}))
    chat(gw, key["key"])
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    edited = ok(alice.api.patch(f"/keys/{key['id']}", json={"expires_at": soon}))
    assert (edited["name"], edited["rpm"], edited["allowed_ips"]) == ("ips2", 100, ["127.0.0.1/32"])
    assert edited["expires_at"] is not None


# --- isolation: a second account reaches nothing of the first ---------------------------------------------------


def _task_of(gw: GatewayHarness, customer: Customer, key: str) -> str:
    """A Midjourney imagine submitted with the customer's key, followed through the System API to its end."""
    answer = httpx.post(
        gw.server.url + "/mj/submit/imagine", json={"prompt": "a private owl"}, headers={"mj-api-secret": key}
    )
    assert answer.status_code == 200 and answer.json()["code"] == 1, answer.text
    task_id = str(answer.json()["result"])
    deadline = time.monotonic() + 15
    while ok(customer.api.get(f"/tasks/{task_id}"))["status"] not in ("SUCCESS", "FAILURE"):
        assert time.monotonic() < deadline, "the task never ended"
        time.sleep(0.05)
    return task_id


def test_second_account_reaches_none_of_the_first(gw: GatewayHarness, alice: Customer, bob: Customer) -> None:
    key = ok(alice.api.post("/keys", json={"name": "secret-project"}), 201)
    chat(gw, key["key"])
    gw.flush_usage()
    task_id = _task_of(gw, alice, key["key"])
    assert [t["id"] for t in ok(alice.api.get("/tasks"))["data"]] == [task_id]
    task = ok(alice.api.get(f"/tasks/{task_id}"))
    assert (task["status"], task["model"], task["key_id"]) == ("SUCCESS", "mj_imagine", key["id"])
    assert "account_id" not in task and "channel_id" not in task  # the admin view's fields, not the account's
    assert task["results"]["images"] and task["cost_micros"] > 0
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    in_window = {"start": today.isoformat(), "end": (today + timedelta(days=1)).isoformat(), "status": "SUCCESS"}
    assert [t["id"] for t in ok(alice.api.get("/tasks", params=in_window))["data"]] == [task_id]
    yesterday = {"start": (today - timedelta(days=1)).isoformat(), "end": today.isoformat()}
    assert ok(alice.api.get("/tasks", params=yesterday))["data"] == []

    kid, tid = key["id"], alice.token_id
    # every route that names a row, by bob's token and by bob's session (with its CSRF token)
    attempts = [
        ("get", f"/keys/{kid}", None),
        ("patch", f"/keys/{kid}", {"spend_cap_usd": "0"}),
        ("post", f"/keys/{kid}/disable", None),
        ("post", f"/keys/{kid}/enable", None),
        ("delete", f"/keys/{kid}", None),
        ("get", f"/tasks/{task_id}", None),
        ("delete", f"/tokens/{tid}", None),
    ]
    for client, headers in ((bob.api, {}), (bob.browser, {"x-csrf-token": bob.csrf})):
        for method, path, body in attempts:
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 404, (method, path, response.text)
        # the lists and filters show bob's own (empty) world
        assert ok(client.get("/keys"))["data"] == []
        assert ok(client.get("/logs"))["data"] == []
        assert ok(client.get("/logs", params={"key_name": "secret-project"}))["data"] == []
        assert ok(client.get("/tasks"))["data"] == []
        assert ok(client.get("/usage/aggregate"))["total"]["requests"] == 0
        assert [e["kind"] for e in ok(client.get("/ledger"))["data"]] == ["topup"]
        assert [t["id"] for t in ok(client.get("/tokens"))] == [bob.token_id]
        assert ok(client.get("/account"))["id"] == bob.user["account_id"]

    # nothing of alice's changed: the key works, her token works, her rows are there
    after = ok(alice.api.get(f"/keys/{kid}"))
    assert (after["status"], after["spend_cap_usd"]) == ("active", None)
    chat(gw, key["key"])
    assert ok(alice.api.get(f"/tasks/{task_id}"))["id"] == task_id
    gw.flush_usage()
    models = sorted(r["model"] for r in ok(alice.api.get("/logs"))["data"])
    assert models == ["gpt-4o-mini", "gpt-4o-mini", "mj_imagine"]  # two chats and the task's submission


# --- tokens, sessions, CSRF ---------------------------------------------------------------------------------------


def test_revoked_and_expired_tokens_are_refused(gw: GatewayHarness, alice: Customer) -> None:
    spare = ok(alice.api.post("/tokens", json={"name": "spare"}), 201)
    assert spare["token"].startswith("ort-")
    listed = ok(alice.api.get("/tokens"))
    assert {t["name"] for t in listed} == {"ci", "spare"} and spare["token"] not in str(listed)
    used = {t["name"]: t["last_used_at"] for t in listed}
    assert used["ci"] is not None and used["spare"] is None  # this very listing used "ci"
    spare_client = httpx.Client(base_url=alice.api.base_url, headers={"Authorization": f"Bearer {spare['token']}"})
    with spare_client:
        ok(spare_client.get("/account"))
        assert ok(alice.api.delete(f"/tokens/{spare['id']}"))["status"] == "revoked"
        refused = spare_client.get("/account")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert spare_client.post("/keys", json={"name": "x"}).status_code == 401
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = alice.api.post("/tokens", json={"name": "old", "expires_at": past})
    assert (response.status_code, response.json()["error"]["field"]) == (422, "expires_at")
    assert alice.api.get("/account", headers={"Authorization": "Bearer ort-made-up"}).status_code == 401


def test_session_cookie_is_httponly_strict_and_needs_csrf(gw: GatewayHarness) -> None:
    name = unique("cookie")
    with httpx.Client(base_url=gw.server.url + "/api/v1") as browser:
        signed = browser.post("/auth/signup", json={"username": name, "password": PASSWORD})
        assert signed.status_code == 201
        cookie = signed.headers["set-cookie"].lower()
        assert "omnirelay_user=" in cookie
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/api/v1" in cookie
        csrf = signed.json()["csrf_token"]
        assert ok(browser.get("/account"))["username"] == name
        refused = browser.post("/keys", json={"name": "k"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "csrf_failed")
        assert browser.post("/keys", json={"name": "k"}, headers={"x-csrf-token": "wrong"}).status_code == 403
        ok(browser.post("/keys", json={"name": "k"}, headers={"x-csrf-token": csrf}), 201)
        assert ok(browser.get("/auth/session"))["csrf_token"] == csrf
        # the user cookie is no admin session, whatever it is called
        token = browser.cookies["omnirelay_user"]
        admin = httpx.get(gw.server.url + "/admin/api/accounts", cookies={"omnirelay_admin": token})
        assert admin.status_code == 401
        ok(browser.delete("/auth/session", headers={"x-csrf-token": csrf}), 204)
        browser.cookies.set("omnirelay_user", token, path="/api/v1")  # a stolen cookie after sign-out
        assert browser.get("/account").status_code == 401


def test_sign_in_and_password_change(gw: GatewayHarness, alice: Customer) -> None:
    base = gw.server.url + "/api/v1"
    with httpx.Client(base_url=base) as laptop, httpx.Client(base_url=base) as phone:
        wrong = laptop.post("/auth/session", json={"username": alice.username, "password": "not it at all"})
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "unauthorized")
        unknown = laptop.post("/auth/session", json={"username": "nobody-" + alice.username, "password": PASSWORD})
        assert unknown.status_code == 401
        csrf = ok(laptop.post("/auth/session", json={"username": alice.username.upper(), "password": PASSWORD}))[
            "csrf_token"
        ]
        ok(phone.post("/auth/session", json={"username": alice.username, "password": PASSWORD}))
        bad = laptop.put(
            "/auth/password",
            json={"current_password": "nope", "new_password": "n3w-passw0rd!"},
            headers={"x-csrf-token": csrf},
        )
        assert (bad.status_code, bad.json()["error"]["field"]) == (422, "current_password")
        short = laptop.put(
            "/auth/password",
            json={"current_password": PASSWORD, "new_password": "short"},
            headers={"x-csrf-token": csrf},
        )
        assert (short.status_code, short.json()["error"]["field"]) == (422, "new_password")
        ok(
            laptop.put(
                "/auth/password",
                json={"current_password": PASSWORD, "new_password": "n3w-passw0rd!"},
                headers={"x-csrf-token": csrf},
            ),
            204,
        )
        assert ok(laptop.get("/account"))["username"] == alice.username.lower()  # this session stays
        assert phone.get("/account").status_code == 401  # every other session ended
        assert laptop.post("/auth/session", json={"username": alice.username, "password": PASSWORD}).status_code == 401
        ok(laptop.post("/auth/session", json={"username": alice.username, "password": "n3w-passw0rd!"}))
    ok(alice.api.get("/account"))  # access tokens survive a password change


# --- validation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "field"),
    [
        ("post", "/keys", {}, None, "name"),
        ("post", "/keys", {"name": "k", "spend_cap_usd": "-1"}, None, "spend_cap_usd"),
        ("post", "/keys", {"name": "k", "spend_cap_usd": "0.0000001"}, None, "spend_cap_usd"),
        ("post", "/keys", {"name": "k", "allowed_ips": ["not-an-ip"]}, None, "allowed_ips.0"),
        ("post", "/keys", {"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, None, "expires_at"),
        ("post", "/keys", {"name": "k", "rpm": -5}, None, "rpm"),
        ("post", "/keys", {"name": "k", "owner": 1}, None, "owner"),
        ("post", "/keys", {"name": "k", "models": "gpt-4o"}, None, "models"),
        ("post", "/tokens", {"name": ""}, None, "name"),
        ("post", "/topup", {}, None, "code"),
        ("get", "/logs", None, {"type": "everything"}, "type"),
        ("get", "/logs", None, {"start": "yesterday"}, "start"),
        ("get", "/logs", None, {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        ("get", "/logs", None, {"limit": 0}, "limit"),
        ("get", "/tasks", None, {"status": "DONE"}, "status"),
        ("get", "/ledger", None, {"kind": "gift"}, "kind"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    gw: GatewayHarness, alice: Customer, method: str, path: str, body: Any, params: Any, field: str
) -> None:
    response = alice.api.request(method, path, json=body, params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_input", field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD}, "username"),
        ({"username": "ab", "password": PASSWORD}, "username"),
        ({"username": "has space", "password": PASSWORD}, "username"),
        ({"username": "okname", "password": "short"}, "password"),
        ({"username": "okname", "password": PASSWORD, "email": "not-an-email"}, "email"),
    ],
)
def test_bad_signup_is_422_naming_the_field(gw: GatewayHarness, body: dict[str, Any], field: str) -> None:
    response = httpx.post(gw.server.url + "/api/v1/auth/signup", json=body)
    assert (response.status_code, response.json()["error"]["field"]) == (422, field)


def test_duplicate_username_and_no_credentials(gw: GatewayHarness, alice: Customer) -> None:
    again = httpx.post(gw.server.url + "/api/v1/auth/signup", json={"username": alice.username, "password": PASSWORD})
    assert (again.status_code, again.json()["error"]["field"]) == (409, "username")
    anonymous = httpx.get(gw.server.url + "/api/v1/keys")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    # an API key is not an access token
    key = ok(alice.api.post("/keys", json={"name": "k"}), 201)["key"]
    assert httpx.get(gw.server.url + "/api/v1/account", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_models_and_openapi(gw: GatewayHarness, alice: Customer) -> None:
    models = {m["model"]: m for m in ok(alice.api.get("/models"))}
    assert set(models) == {"gpt-4o", "gpt-4o-mini", *MJ_MODELS}
    assert models["gpt-4o-mini"]["price"]["input_per_mtok"] and models["gpt-4o-mini"]["ratio"] == "1"
    spec = ok(httpx.get(gw.server.url + "/api/v1/openapi.json"))
    for path in ("/account", "/keys", "/keys/{key_id}", "/logs", "/usage/aggregate", "/tasks", "/topup", "/ledger"):
        assert path in spec["paths"]


def test_key_changes_reach_another_instance_within_a_second(
    gw: GatewayHarness, alice: Customer, database_url: str, openai_sim: ServerThread, mj_sim: ServerThread
) -> None:
    other = start_gateway(settings_for(database_url, openai_sim, mj_sim))  # a second instance on the same database

    def seen_by_other(secret: str, revoked: bool) -> float:
        """Seconds until the second instance's in-memory keys show the change (polled there: failed calls would
        count against this address's auth throttle)."""
        began = time.monotonic()
        while True:
            record = other.gateway.snapshot.keys_by_hash.get(hash_key(secret))
            if record is not None and record.revoked == revoked:
                return time.monotonic() - began
            assert time.monotonic() - began < 2, "the second instance never saw the change"
            time.sleep(0.02)

    try:
        key = ok(alice.api.post("/keys", json={"name": "shared"}), 201)
        assert seen_by_other(key["key"], revoked=False) < 1.0
        chat(other, key["key"])
        ok(alice.api.post(f"/keys/{key['id']}/disable"))
        assert seen_by_other(key["key"], revoked=True) < 1.0
        with pytest.raises(openai.AuthenticationError):
            chat(other, key["key"])
    finally:
        other.server.stop()


def test_keys_per_account_are_capped(gw: GatewayHarness, alice: Customer, monkeypatch: pytest.MonkeyPatch) -> None:
    accounts = gw.gateway.settings.accounts.model_copy(update={"keys_per_account": 2})
    monkeypatch.setattr(gw.gateway, "settings", gw.gateway.settings.model_copy(update={"accounts": accounts}))
    first = ok(alice.api.post("/keys", json={"name": "one"}), 201)
    ok(alice.api.post("/keys", json={"name": "two"}), 201)
    refused = alice.api.post("/keys", json={"name": "three"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "conflict")
    ok(alice.api.delete(f"/keys/{first['id']}"), 204)  # a deleted key frees its place
    ok(alice.api.post("/keys", json={"name": "three"}), 201)


def test_an_access_token_stops_working_when_it_expires(gw: GatewayHarness, alice: Customer) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    brief = ok(alice.api.post("/tokens", json={"name": "brief", "expires_at": soon.isoformat()}), 201)
    headers = {"Authorization": f"Bearer {brief['token']}"}
    ok(httpx.get(gw.server.url + "/api/v1/account", headers=headers))
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    assert httpx.get(gw.server.url + "/api/v1/account", headers=headers).status_code == 401
    assert {t["name"]: t["status"] for t in ok(alice.api.get("/tokens"))}["brief"] == "expired"


def test_one_task_model_a_view_per_audience() -> None:
    """The account sees its whole prompt and nothing of the gateway's insides; the admin sees whose task it is and
    which channel ran it, with the prompt cut to 500 characters."""
    row = Task(
        public_id="task_0123",
        vendor="midjourney",
        action="imagine",
        model="mj_imagine",
        account_id=7,
        key_id=3,
        channel_id=2,
        status="SUCCESS",
        progress=100,
        prompt="a fox " * 200,
        results={"images": [{"url": "https://img.example/fox.png"}]},
        error=None,
        cost_micros=50_000,
        billing="settled",
        submitted_at=1_700_000_000.0,
        finished_at=1_700_000_060.0,
    )
    own = OwnTaskOut.from_row(row).model_dump()
    admin = TaskOut.from_row(row).model_dump()
    assert own["prompt"] == row.prompt and "account_id" not in own and "channel_id" not in own
    assert len(admin["prompt"]) == 500 and (admin["account_id"], admin["channel_id"]) == (7, 2)
    assert {k: v for k, v in admin.items() if k not in ("account_id", "channel_id", "prompt")} == {
        k: v for k, v in own.items() if k != "prompt"
    }
    assert own["cost_usd"] == "0.050000" and own["submitted_at"] == admin["submitted_at"]
