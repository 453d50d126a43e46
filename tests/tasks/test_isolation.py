"""Accounts are sealed from each other: a key of account A never reads or spends account B's data, through any
endpoint a client key opens (tasks by id in every family, key info, usage, balances), on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from omnirelay.store.models import Task
from tests.conftest import GatewayHarness
from tests.tasks.conftest import books, new_client, task_row, wait_until


def mj(key: str, gw: GatewayHarness) -> httpx.Client:
    return httpx.Client(base_url=gw.server.url, headers={"mj-api-secret": key}, timeout=30)


def test_one_account_cannot_see_or_spend_anothers(gw: GatewayHarness) -> None:
    alice, bob = new_client(gw, "iso-alice"), new_client(gw, "iso-bob")
    bob_before = books(gw, bob.account_id)
    with mj(alice.key, gw) as http:
        answer = http.post("/mj/submit/imagine", json={"prompt": "alice's private owl"})
        assert answer.status_code == 200 and answer.json()["code"] == 1, answer.text
        task_id = str(answer.json()["result"])
    wait_until(lambda: task_row(gw, task_id).status in ("SUCCESS", "FAILURE"))
    row: Task = task_row(gw, task_id)
    assert row.account_id == alice.account_id

    # Her task, by id, in every family's read route: the owner sees it, the other account gets not-found.
    with mj(alice.key, gw) as http:
        assert http.get(f"/mj/task/{task_id}/fetch").json()["id"] == task_id
    with alice.http() as http:
        assert http.get(f"/task/{task_id}").status_code == 200
    with bob.http() as http:
        unified = http.get(f"/task/{task_id}")
        assert unified.status_code == 404
        assert "alice" not in unified.text and "owl" not in unified.text
    with mj(bob.key, gw) as http:
        fetched = http.get(f"/mj/task/{task_id}/fetch")
        assert fetched.status_code == 404
        assert "owl" not in fetched.text
        listed = http.post("/mj/task/list-by-condition", json={"ids": [task_id]})
        assert listed.status_code == 200 and listed.json() == []

    # Key info and usage show the caller's own key and account only.
    with bob.http() as http:
        info = http.get("/v1/key/info").json()
        assert info["key"]["id"] == bob.key_id and info["key"]["name"] == "iso-bob-key"
        assert "iso-alice" not in http.get("/v1/key/info").text
        usage = http.get("/v1/dashboard/billing/usage").json()
        assert usage["total_usage"] == 0
        subscription = http.get("/v1/dashboard/billing/subscription").json()
        assert subscription["account_name"] == "iso-bob"
    with alice.http() as http:
        assert http.get("/v1/key/info").json()["key"]["id"] == alice.key_id

    # Alice's task was charged to Alice alone.
    alice_books, bob_after = books(gw, alice.account_id), books(gw, bob.account_id)
    assert alice_books["entries"].get(task_id)
    assert bob_after == bob_before
    # A key never acts for another account, whatever the body claims.
    with mj(bob.key, gw) as http:
        answer = http.post("/mj/submit/imagine", json={"prompt": "bob's", "accountId": alice.account_id})
        assert answer.status_code == 200, answer.text
        bobs = str(answer.json()["result"])
    assert task_row(gw, bobs).account_id == bob.account_id
