"""Scoped admin tokens and the audit log of admin writes, over real sockets on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from omnirelay.config import AdminTokenConfig, ChannelConfig, Settings
from tests.conftest import UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread

FULL = "admin-token-full-0123456789abcdef"
READER = "admin-token-read-0123456789abcdef"
OPS = "admin-token-ops-0123456789abcdefg"
NEW_UPSTREAM_KEY = "sk-audit-new-upstream-key-9876543210"


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url,
        admin_token=FULL,
        admin_tokens=[
            AdminTokenConfig(name="dashboards", token=READER, scope="read"),
            AdminTokenConfig(name="ops", token=OPS, scope="full"),
        ],
        channels=[
            ChannelConfig(name="sim", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"])
        ],
    )
    harness = start_gateway(settings)
    yield harness
    harness.server.stop()


def admin(gw: GatewayHarness, token: str) -> httpx.Client:
    return httpx.Client(base_url=gw.server.url + "/admin/api", headers={"authorization": f"Bearer {token}"}, timeout=30)


def audit(gw: GatewayHarness) -> list[dict[str, object]]:
    gw.server.wait_idle()  # a write's audit row is committed just after its answer is sent
    with admin(gw, READER) as client:
        answer = client.get("/audit", params={"limit": 500})
    assert answer.status_code == 200
    return answer.json()["data"]  # type: ignore[no-any-return]


def test_a_read_token_reads_and_may_not_write(gw: GatewayHarness) -> None:
    with admin(gw, READER) as client:
        assert client.get("/channels").status_code == 200
        before = len(audit(gw))
        refused = client.post("/accounts", json={"name": "by-reader"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "read_only_token"
        assert client.delete("/groups/default").status_code == 403
    with admin(gw, FULL) as client:
        names = [a["name"] for a in client.get("/accounts").json()["data"]]
    assert "by-reader" not in names
    assert len(audit(gw)) == before  # a refused write changed nothing and is not an admin change
    with admin(gw, "wrong-token-0000000000000000") as client:
        assert client.get("/channels").status_code == 401


def test_every_write_is_audited_with_who_what_and_before_after(gw: GatewayHarness) -> None:
    with admin(gw, OPS) as client:
        created = client.post(
            "/channels",
            json={"name": "audited", "base_url": "http://127.0.0.1:9/v1", "api_keys": [NEW_UPSTREAM_KEY]},
        )
        assert created.status_code == 201, created.text
        channel_id = created.json()["id"]
        patched = client.patch(f"/channels/{channel_id}", json={"weight": 7})
        assert patched.status_code == 200
        assert client.post(f"/channels/{channel_id}/disable", json={"reason": "audit test"}).status_code == 200
        account = client.post("/accounts", json={"name": "audited-account"}).json()
        key = client.post("/keys", json={"account": account["id"], "name": "audited-key"})
        assert key.status_code == 201
        client_key = key.json()["key"]
        assert client.delete(f"/channels/{channel_id}").status_code == 204

    rows = audit(gw)
    mine = [row for row in rows if row["actor"] == "token:ops"]
    by_path = {(row["method"], row["path"]): row for row in mine}
    create = by_path[("POST", "/channels")]
    assert create["target"] == f"/channels/{channel_id}"
    assert create["status"] == 201
    assert create["before"] is None
    assert create["after"]["name"] == "audited" and create["after"]["weight"] == 1  # type: ignore[index]

    patch = by_path[("PATCH", f"/channels/{channel_id}")]
    assert (patch["before"]["weight"], patch["after"]["weight"]) == (1, 7)  # type: ignore[index]
    disable = by_path[("POST", f"/channels/{channel_id}/disable")]
    assert (disable["before"]["enabled"], disable["after"]["enabled"]) == (True, False)  # type: ignore[index]
    delete = by_path[("DELETE", f"/channels/{channel_id}")]
    assert delete["before"]["name"] == "audited" and delete["after"] is None  # type: ignore[index]
    assert by_path[("POST", "/keys")]["target"].startswith("/keys/")  # type: ignore[union-attr]
    # Newest first, and timestamps are real.
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids, reverse=True)

    dump = json.dumps(rows)
    assert NEW_UPSTREAM_KEY not in dump and UPSTREAM_KEY not in dump
    assert client_key not in dump
    assert OPS not in dump and FULL not in dump


def test_the_main_admin_token_is_named_admin(gw: GatewayHarness) -> None:
    with admin(gw, FULL) as client:
        assert client.put("/groups/audit-group", json={"multiplier": "1.5"}).status_code == 200
    row = next(row for row in audit(gw) if row["path"] == "/groups/audit-group")
    assert row["actor"] == "token:admin"
    assert row["before"] is None and row["after"] == {"request": {"multiplier": "1.5"}}


def test_console_sessions_are_named_by_their_subject(gw: GatewayHarness) -> None:
    with httpx.Client(base_url=gw.server.url, timeout=30) as browser:
        signed_in = browser.post("/admin/session", json={"token": FULL})
        assert signed_in.status_code == 200, signed_in.text
        csrf = signed_in.json()["csrf_token"]
        changed = browser.put(
            "/admin/api/groups/console-group", json={"multiplier": "2"}, headers={"x-csrf-token": csrf}
        )
        assert changed.status_code == 200, changed.text
    row = next(row for row in audit(gw) if row["path"] == "/groups/console-group")
    assert row["actor"] == f"session:{signed_in.json()['subject']}"
