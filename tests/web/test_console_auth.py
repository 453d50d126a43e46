"""Console sign-in over a real socket, on SQLite and PostgreSQL: the session cookie's flags, wrong credentials,
CSRF on every change, sign-out, and the bearer token still working as before. Plus the console's own API routes
(``/usage/summary``, ``/channel-checks/latest``, ``/tasks``, minute buckets) checked against the usage rows."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from omnirelay import cli
from omnirelay.api.admin_auth import FAILURES_PER_WINDOW, hash_password, verify_password
from omnirelay.config import ChannelConfig, Settings
from omnirelay.store.admin_repo import percentile
from omnirelay.store.models import Task
from tests.conftest import UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread

ADMIN_TOKEN = "console-admin-token-0123456789"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        admin_users={"ops": hash_password(PASSWORD)},
        config_poll_s=0.2,
        channels=[
            ChannelConfig(name="sim", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"])
        ],
    )
    harness = start_gateway(settings)
    yield harness
    harness.server.stop()


@pytest.fixture(scope="module")
def bearer(gw: GatewayHarness) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=gw.server.url + "/admin/api", headers=headers, timeout=30) as client:
        yield client


@contextlib.contextmanager
def signed_in(gw: GatewayHarness, **credentials: str) -> Iterator[tuple[httpx.Client, str]]:
    """A browser-like client holding the session cookie, and the session's CSRF token."""
    with httpx.Client(base_url=gw.server.url, timeout=30) as client:
        answer = client.post("/admin/session", json=credentials)
        assert answer.status_code == 200, answer.text
        yield client, answer.json()["csrf_token"]


def test_password_hashes_verify_and_resist_tampering() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert not verify_password("s3cret", stored[:-4] + "AAA=")
    assert not verify_password("s3cret", "not-a-hash")
    assert hash_password("s3cret") != stored  # salted


def test_the_cli_prints_a_hash_that_signs_in() -> None:
    result = CliRunner().invoke(cli.app, ["admin-password", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    stored = result.output.strip()
    assert verify_password(PASSWORD, stored) and PASSWORD not in stored
    assert CliRunner().invoke(cli.app, ["admin-password", "--password", "short"]).exit_code == 1


def test_token_sign_in_sets_a_hardened_session_cookie(gw: GatewayHarness) -> None:
    answer = httpx.post(gw.server.url + "/admin/session", json={"token": ADMIN_TOKEN})
    assert answer.status_code == 200
    body = answer.json()
    assert body["subject"] == "token" and len(body["csrf_token"]) >= 32
    cookie = answer.headers["set-cookie"]
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert cookie.startswith("omnirelay_admin=")
    assert {"httponly", "samesite=strict", "path=/admin"} <= flags
    assert "secure" not in flags  # plain http here; see the https test below
    assert ADMIN_TOKEN not in cookie and body["csrf_token"] not in cookie


def test_cookie_is_secure_when_the_request_came_over_https(gw: GatewayHarness) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (a TLS-terminating proxy on the same host).
    answer = httpx.post(
        gw.server.url + "/admin/session", json={"token": ADMIN_TOKEN}, headers={"x-forwarded-proto": "https"}
    )
    assert answer.status_code == 200
    assert "secure" in {part.strip().lower() for part in answer.headers["set-cookie"].split(";")}


@pytest.mark.parametrize(
    "credentials",
    [
        {"token": "wrong-token"},
        {"token": ADMIN_TOKEN[:-1]},
        {"username": "ops", "password": "wrong password"},
        {"username": "nobody", "password": PASSWORD},
        {},
    ],
    ids=["wrong-token", "token-prefix", "wrong-password", "unknown-user", "nothing"],
)
def test_wrong_credentials_are_refused_without_a_cookie(gw: GatewayHarness, credentials: dict[str, str]) -> None:
    answer = httpx.post(gw.server.url + "/admin/session", json=credentials)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert "set-cookie" not in answer.headers


def test_a_cross_site_form_cannot_sign_in(gw: GatewayHarness) -> None:
    answer = httpx.post(gw.server.url + "/admin/session", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 415
    assert "set-cookie" not in answer.headers


def test_password_sign_in_names_the_user(gw: GatewayHarness) -> None:
    with signed_in(gw, username="ops", password=PASSWORD) as (client, _):
        assert client.get("/admin/session").json()["subject"] == "ops"
        assert client.get("/admin/api/accounts").status_code == 200


def test_changes_need_the_csrf_header(gw: GatewayHarness, bearer: httpx.Client) -> None:
    name = f"csrf-{time.monotonic_ns()}"
    with signed_in(gw, token=ADMIN_TOKEN) as (client, csrf):
        assert client.get("/admin/api/accounts").status_code == 200  # reads need only the cookie
        refused = client.post("/admin/api/accounts", json={"name": name})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_failed"
        wrong = client.post("/admin/api/accounts", json={"name": name}, headers={"x-csrf-token": csrf[:-2] + "xx"})
        assert wrong.status_code == 403
        names = {a["name"] for a in bearer.get("/accounts", params={"limit": 1000}).json()["data"]}
        assert name not in names  # nothing was created by the refused calls
        created = client.post("/admin/api/accounts", json={"name": name}, headers={"x-csrf-token": csrf})
        assert created.status_code == 201, created.text
        # Another session's token does not fit this session.
        with signed_in(gw, token=ADMIN_TOKEN) as (_, other_csrf):
            pass
        assert client.delete(f"/admin/api/groups/{name}", headers={"x-csrf-token": other_csrf}).status_code == 403


def test_sign_out_needs_csrf_and_ends_the_session(gw: GatewayHarness) -> None:
    with signed_in(gw, token=ADMIN_TOKEN) as (client, csrf):
        cookie = client.cookies["omnirelay_admin"]
        assert client.delete("/admin/session").status_code == 403
        assert client.get("/admin/api/accounts").status_code == 200
        out = client.delete("/admin/session", headers={"x-csrf-token": csrf})
        assert out.status_code == 204
        assert "omnirelay_admin=" in out.headers["set-cookie"]  # cleared in the browser...
    # ...and dead on the server, even for someone who kept a copy of the cookie.
    stale = httpx.get(gw.server.url + "/admin/api/accounts", cookies={"omnirelay_admin": cookie})
    assert stale.status_code == 401
    assert httpx.get(gw.server.url + "/admin/session", cookies={"omnirelay_admin": cookie}).status_code == 401


def test_a_forged_cookie_is_refused(gw: GatewayHarness) -> None:
    answer = httpx.get(gw.server.url + "/admin/api/accounts", cookies={"omnirelay_admin": "made-up"})
    assert answer.status_code == 401


def test_bearer_token_works_as_before_without_csrf(bearer: httpx.Client) -> None:
    answer = bearer.post("/accounts", json={"name": f"bearer-{time.monotonic_ns()}"})
    assert answer.status_code == 201
    assert httpx.get(str(bearer.base_url) + "accounts").status_code == 401


def test_console_page_and_modules_are_served_with_a_strict_policy(gw: GatewayHarness) -> None:
    page = httpx.get(gw.server.url + "/admin", follow_redirects=True)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script type="module" src="/admin/static/app.js">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    for module in (
        "app.js",
        "core.js",
        "charts.js",
        "dashboard.js",
        "channels.js",
        "keys.js",
        "prices.js",
        "logs.js",
        "tasks.js",
        "playground.js",
    ):
        answer = httpx.get(f"{gw.server.url}/admin/static/{module}")
        assert answer.status_code == 200, module
        assert "javascript" in answer.headers["content-type"], module
        assert "content-security-policy" in answer.headers
    assert httpx.get(gw.server.url + "/admin/static/../console.py").status_code == 404


# --- the console's API routes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traffic(gw: GatewayHarness, bearer: httpx.Client) -> dict[str, Any]:
    account = bearer.post("/accounts", json={"name": f"traffic-{time.monotonic_ns()}"}).json()
    bearer.post(f"/accounts/{account['id']}/topup", json={"amount_usd": "5"})
    key = bearer.post("/keys", json={"account": account["id"], "name": "traffic"}).json()["key"]
    client = openai.OpenAI(api_key=key, base_url=gw.base_url, max_retries=0)
    for latency in (5, 40, 10, 80, 20):  # spread, so the percentiles interpolate between distinct values
        content = f"hello [sim latency_ms={latency}]"
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "[sim fault=500]"}])
    gw.flush_usage()
    return {"account_id": account["id"]}


def test_usage_summary_matches_the_rows(bearer: httpx.Client, traffic: dict[str, Any]) -> None:
    rows = bearer.get("/usage", params={"account_id": traffic["account_id"], "limit": 1000}).json()["data"]
    summary = bearer.get("/usage/summary", params={"account_id": traffic["account_id"]}).json()
    assert summary["requests"] == len(rows) >= 6
    assert summary["errors"] == sum(1 for r in rows if r["status_code"] >= 400) >= 1
    assert summary["error_rate"] == pytest.approx(summary["errors"] / summary["requests"])
    assert summary["prompt_tokens"] == sum(r["prompt_tokens"] for r in rows)
    assert summary["cost_micros"] == sum(r["cost_micros"] for r in rows) > 0
    latencies = sorted(float(r["latency_ms"]) for r in rows)
    assert summary["p50_latency_ms"] == pytest.approx(percentile(latencies, 0.5))
    assert summary["p95_latency_ms"] == pytest.approx(percentile(latencies, 0.95))
    empty = bearer.get(
        "/usage/summary",
        params={"account_id": traffic["account_id"], "start": "2001-01-01T00:00:00Z", "end": "2001-01-02T00:00:00Z"},
    ).json()
    assert empty["requests"] == 0 and empty["error_rate"] is None and empty["p95_latency_ms"] is None


def test_minute_buckets_cover_the_last_hour(bearer: httpx.Client, traffic: dict[str, Any]) -> None:
    answer = bearer.get("/usage/aggregate", params={"bucket": "minute", "account_id": traffic["account_id"]}).json()
    assert sum(r["requests"] for r in answer["data"]) >= 6
    for row in answer["data"]:
        start = datetime.fromisoformat(row["bucket_start"])
        assert start.second == 0 and start.microsecond == 0
        assert datetime.now(UTC) - start < timedelta(hours=1, minutes=1)
    cheap = bearer.get(
        "/usage/aggregate", params={"bucket": "minute", "account_id": traffic["account_id"], "latency": "false"}
    ).json()
    assert [(r["bucket_start"], r["requests"]) for r in cheap["data"]] == [
        (r["bucket_start"], r["requests"]) for r in answer["data"]
    ]
    assert all(r["p50_latency_ms"] is None and r["p95_latency_ms"] is None for r in cheap["data"])
    assert all(r["p95_latency_ms"] is not None for r in answer["data"])
    too_long = bearer.get("/usage/aggregate", params={"bucket": "minute", "start": "2001-01-01T00:00:00Z"})
    assert too_long.status_code == 422 and too_long.json()["error"]["field"] == "bucket"


def test_latest_checks_has_one_row_per_channel(gw: GatewayHarness, bearer: httpx.Client) -> None:
    channel = bearer.get("/channels").json()[0]
    for _ in range(2):
        assert bearer.post(f"/channels/{channel['id']}/test").status_code == 200
    newest = bearer.get(f"/channels/{channel['id']}/checks", params={"limit": 1}).json()[0]
    latest = [c for c in bearer.get("/channel-checks/latest").json() if c["channel_id"] == channel["id"]]
    assert latest == [newest]
    assert latest[0]["ok"] is True


def test_tasks_are_listed_newest_first_with_results(gw: GatewayHarness, bearer: httpx.Client) -> None:
    now = time.time()

    async def insert() -> None:
        async with gw.gateway.sessions.begin() as session:
            for i, status in enumerate(["SUCCESS", "IN_PROGRESS"]):
                session.add(
                    Task(
                        public_id=f"task-console-{i}-{time.monotonic_ns()}",
                        vendor="midjourney",
                        surface="unified",
                        action="imagine",
                        model="mj_imagine",
                        account_id=1,
                        channel_id=1,
                        upstream_id=f"up-{i}",
                        status=status,
                        progress=100 if status == "SUCCESS" else 40,
                        prompt="a red fox",
                        results={"images": [{"url": "https://img.example/fox.png", "content_type": "image/png"}]}
                        if status == "SUCCESS"
                        else {},
                        cost_micros=100_000,
                        next_poll_at=now,
                        submitted_at=now + i,
                        updated_at=now + i,
                    )
                )

    gw.run(insert())
    page = bearer.get("/tasks", params={"limit": 2}).json()
    assert [t["status"] for t in page["data"]] == ["IN_PROGRESS", "SUCCESS"]
    done = page["data"][1]
    assert done["results"]["images"][0]["url"] == "https://img.example/fox.png"
    assert done["cost_usd"] == "0.100000" and done["progress"] == 100
    only = bearer.get("/tasks", params={"status": "SUCCESS"}).json()["data"]
    assert only and all(t["status"] == "SUCCESS" for t in only)
    assert bearer.get("/tasks", params={"status": "NOPE"}).status_code == 422


def test_repeated_failures_are_throttled(tmp_path: Path) -> None:
    # Its own gateway: the limit is per client address, and every test here comes from 127.0.0.1.
    harness = start_gateway(Settings(database_url=f"sqlite:///{tmp_path / 'throttle.db'}", admin_token=ADMIN_TOKEN))
    try:
        url = harness.server.url + "/admin/session"
        statuses = [httpx.post(url, json={"token": f"guess-{i}"}).status_code for i in range(FAILURES_PER_WINDOW)]
        assert statuses == [401] * FAILURES_PER_WINDOW
        # Now even the right token waits: the window has to pass first.
        blocked = httpx.post(url, json={"token": ADMIN_TOKEN})
        assert blocked.status_code == 429 and "set-cookie" not in blocked.headers
    finally:
        harness.server.stop()
