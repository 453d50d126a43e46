"""The account console (``/account/``) in Debian's Chromium, against a real gateway on SQLite (one database is
enough here: every call it makes is a System API call, tested on both databases in ``tests/api``).

One customer's story: sign up on the page, see the starting balance, create a key (shown once) and use it with the
``openai`` SDK, see the call in the logs and the dashboard, redeem a top-up code, read the models and prices, and
disable the key; no script error on any page.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from omnirelay.config import AccountsSettings, ChannelConfig, Settings
from tests.conftest import UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.web.test_console_browser import CHROMIUM, CHROMIUM_ARGS

ADMIN_TOKEN = "account-console-admin-token-0123"
PASSWORD = "correct horse battery staple"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs it with apt-get")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path_factory.mktemp('db') / 'omnirelay.db'}",
        admin_token=ADMIN_TOKEN,
        config_poll_s=0.2,
        accounts=AccountsSettings(signup="open", signup_credit_usd="5"),
        channels=[
            ChannelConfig(name="sim", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"])
        ],
    )
    harness = start_gateway(settings)
    yield harness
    harness.server.stop()


@pytest.fixture(scope="module")
def browser(gw: GatewayHarness) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def story() -> dict[str, Any]:
    return {}


@pytest.fixture(scope="module")
def page(browser: Browser, gw: GatewayHarness, story: dict[str, Any]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=gw.server.url)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    story["errors"] = errors
    yield tab
    context.close()


def open_page(page: Page, name: str) -> None:
    target = f"/account/#/{name}"
    if page.url.endswith(target):
        page.reload()
    else:
        page.goto(target)
    expect(page.locator(f'#main [data-page="{name}"][data-ready]')).to_be_attached()


def test_sign_up_and_see_the_starting_balance(page: Page) -> None:
    page.goto("/account")
    page.get_by_label("User name or email").fill("grace")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_text("New here? Create an account").click()
    page.get_by_label("Display name (optional)").fill("Grace H.")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("navigation", name="Account pages")).to_be_visible()
    expect(page.locator("#whoami")).to_have_text("signed in as Grace H.")
    cookie = next(c for c in page.context.cookies() if c["name"] == "omnirelay_user")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/api/v1"
    expect(page.locator('[data-tile="balance"] .value')).to_have_text("$5.00")


def test_create_a_key_use_it_and_see_the_call(page: Page, gw: GatewayHarness, story: dict[str, Any]) -> None:
    open_page(page, "keys")
    page.get_by_role("button", name="New key").click()
    dialog = page.get_by_role("dialog", name="New API key")
    dialog.get_by_label("Name").fill("notebook")
    dialog.get_by_role("button", name="Create").click()
    secret = page.get_by_role("dialog", name="Your new API key").locator("[data-secret]").input_value()
    assert secret.startswith("sk-or-")
    story["key"] = secret
    page.get_by_role("dialog", name="Your new API key").get_by_role("button", name="Close").click()
    row = page.get_by_role("row").filter(has_text="notebook")
    expect(row).to_contain_text(secret[:10] + "…")
    expect(row).not_to_contain_text(secret)

    client = openai.OpenAI(api_key=secret, base_url=gw.base_url, max_retries=0, timeout=30)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=16)
    gw.flush_usage()

    open_page(page, "logs")
    expect(page.get_by_role("row").filter(has_text="gpt-4o-mini")).to_contain_text("notebook")
    open_page(page, "dashboard")
    expect(page.locator('[data-tile="requests"] .value')).to_have_text("1")
    spend = page.locator("figure.chart").first.get_attribute("data-total")
    assert spend and spend != "$0.00"


def test_top_up_models_and_disable_the_key(page: Page, gw: GatewayHarness, story: dict[str, Any]) -> None:
    codes = httpx.post(
        gw.server.url + "/admin/api/redemption-codes",
        json={"count": 1, "amount_usd": "10", "batch": "web"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()["codes"]
    open_page(page, "topup")
    before = page.locator("[data-balance]").inner_text()
    page.get_by_label("Redemption code").fill(codes[0])
    page.get_by_role("button", name="Redeem").click()
    expect(page.get_by_role("row").filter(has_text="redemption")).to_contain_text("$10.00")
    expect(page.locator("[data-balance]")).not_to_have_text(before)

    open_page(page, "models")
    expect(page.get_by_role("row").filter(has_text="gpt-4o-mini")).to_be_visible()

    open_page(page, "keys")
    page.get_by_role("row").filter(has_text="notebook").get_by_role("button", name="Disable").click()
    expect(page.get_by_role("row").filter(has_text="notebook")).to_contain_text("disabled")
    client = openai.OpenAI(api_key=story["key"], base_url=gw.base_url, max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=16)

    open_page(page, "playground")  # chat with a temporary key of the account's own
    page.get_by_role("button", name="Create temporary key").click()
    expect(page.get_by_label("Client key")).not_to_have_value("")
    page.get_by_label("Message").fill('Say hi [sim reply="Hi from the simulator"]')
    page.get_by_role("button", name="Send").click()
    expect(page.locator('[data-role="assistant"]')).to_have_text("Hi from the simulator")

    open_page(page, "tasks")
    open_page(page, "tokens")
    page.get_by_role("button", name="New token").click()
    page.get_by_role("dialog", name="New access token").get_by_label("Name").fill("script")
    page.get_by_role("dialog", name="New access token").get_by_role("button", name="Create").click()
    token = page.get_by_role("dialog", name="Your new access token").locator("[data-secret]").input_value()
    account = httpx.get(gw.server.url + "/api/v1/account", headers={"Authorization": f"Bearer {token}"}).json()
    assert (account["username"], account["balance_micros"] > 10_000_000) == ("grace", True)
    assert page.evaluate("document.cookie") == ""
    # resource errors are the expected 401 of the first "am I signed in?" call and the favicon's 404
    assert [e for e in story["errors"] if "Failed to load resource" not in e] == []
