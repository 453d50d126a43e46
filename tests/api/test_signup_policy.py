"""Who may sign up (``accounts.signup``: open, invite, closed), invitation codes, and the per-address throttles
on sign-up and sign-in; on SQLite and PostgreSQL, over a real socket."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from omnirelay.api.users import hash_password
from omnirelay.config import AccountsSettings, Settings
from omnirelay.store import user_repo
from tests.conftest import GatewayHarness, start_gateway

ADMIN_TOKEN = "admin-token-for-signup-tests-0123456"
PASSWORD = "correct horse battery staple"
SIGNUPS_PER_WINDOW = 6
SIGNIN_FAILURES = 3


@pytest.fixture(scope="module")
def gw(database_url: str) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        accounts=AccountsSettings(
            signup="invite",
            signup_group="trial",
            signups_per_window=SIGNUPS_PER_WINDOW,
            signin_failures_per_window=SIGNIN_FAILURES,
            throttle_window_s=600,
        ),
    )
    harness = start_gateway(settings)
    yield harness
    harness.server.stop()


def invitations(gw: GatewayHarness, count: int) -> list[str]:
    response = httpx.post(
        gw.server.url + "/admin/api/invitations",
        json={"count": count, "note": "beta"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 201, response.text
    return list(response.json()["codes"])


def test_invitations_closed_mode_and_signup_throttle(gw: GatewayHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    url = gw.server.url + "/api/v1/auth/signup"
    code, spare = invitations(gw, 2)
    name = f"invited{time.monotonic_ns() % 1_000_000}"

    without = httpx.post(url, json={"username": name, "password": PASSWORD})  # attempt 1
    assert (without.status_code, without.json()["error"]["field"]) == (422, "invitation_code")
    made_up = httpx.post(url, json={"username": name, "password": PASSWORD, "invitation_code": "ORI-FAKE"})  # 2
    assert (made_up.status_code, made_up.json()["error"]["code"]) == (403, "invalid_invitation")
    joined = httpx.post(url, json={"username": name, "password": PASSWORD, "invitation_code": code})  # 3
    assert joined.status_code == 201, joined.text
    token = joined.cookies["omnirelay_user"]
    account = httpx.get(gw.server.url + "/api/v1/account", cookies={"omnirelay_user": token}).json()
    assert (account["group"], account["balance_usd"]) == ("trial", "0.000000")
    reused = httpx.post(url, json={"username": name + "b", "password": PASSWORD, "invitation_code": code})  # 4
    assert reused.status_code == 403

    listed = httpx.get(gw.server.url + "/admin/api/invitations", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    used = [i for i in listed.json()["data"] if i["used_at"] is not None]
    assert [i["used_by"] for i in used] == [joined.json()["user"]["id"]]
    assert code not in listed.text and spare not in listed.text

    closed = gw.gateway.settings.model_copy(
        update={"accounts": gw.gateway.settings.accounts.model_copy(update={"signup": "closed"})}
    )
    monkeypatch.setattr(gw.gateway, "settings", closed)
    refused = httpx.post(url, json={"username": name + "c", "password": PASSWORD, "invitation_code": spare})  # 5
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "signup_closed")
    monkeypatch.undo()

    sixth = httpx.post(url, json={"username": name + "d", "password": PASSWORD, "invitation_code": spare})  # 6
    assert sixth.status_code == 201
    throttled = httpx.post(url, json={"username": name + "e", "password": PASSWORD, "invitation_code": "x"})  # 7
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "too_many_attempts"
    assert int(throttled.headers["retry-after"]) > 0


def test_sign_in_failures_are_throttled_per_address(gw: GatewayHarness) -> None:
    url = gw.server.url + "/api/v1/auth/session"
    name = f"guarded{time.monotonic_ns() % 1_000_000}"

    async def create_user() -> None:  # not through sign-up: the test above used up this address's sign-ups
        async with gw.gateway.sessions.begin() as session:
            await user_repo.create_user(
                session,
                username=name,
                email=None,
                display_name=name,
                password_hash=hash_password(PASSWORD),
                group="default",
            )

    gw.run(create_user())
    ok_once = httpx.post(url, json={"username": name, "password": PASSWORD})
    assert ok_once.status_code == 200  # successes do not count
    for _ in range(SIGNIN_FAILURES):
        assert httpx.post(url, json={"username": name, "password": "guess-guess"}).status_code == 401
    blocked = httpx.post(url, json={"username": name, "password": PASSWORD})  # even the right password, now
    assert (blocked.status_code, blocked.json()["error"]["code"]) == (429, "too_many_attempts")
    assert "retry-after" in blocked.headers
