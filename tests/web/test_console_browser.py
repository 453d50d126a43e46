"""The admin console in a real browser (Debian's Chromium driven by Playwright), against a real gateway and database.

One operator's story, in order: a wrong token is refused; sign in; create a channel to the OpenAI simulator and test
it; create an account and a key, and use the key with the ``openai`` SDK; see the call on the dashboard chart and
in the logs; revoke the key and see the SDK refused; chat in the playground; every page renders without a script
error, on a laptop and a phone. Screenshots of each page go to the test's tmp dir, and also to
``$OMNIRELAY_SCREENSHOTS`` when set (that is how ``docs/screenshots/`` is made: see the README).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from omnirelay.config import Settings
from tests.conftest import UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_TOKEN = "browser-admin-token-0123456789"
PAGES = ["dashboard", "channels", "keys", "prices", "logs", "tasks", "playground"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs it with apt-get")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser(database_url: str) -> Iterator[Browser]:
    """Per database: Playwright's sync API keeps an event loop running in this thread while it lives, which would
    break every later ``asyncio.run`` (the PostgreSQL reset of ``database_url``, other modules' fixtures). Depending
    on ``database_url`` makes it start after that fixture and stop before the next parameter's."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def gw(database_url: str) -> Iterator[GatewayHarness]:
    # No channels in the config: the console creates the one the test uses.
    harness = start_gateway(Settings(database_url=database_url, admin_token=ADMIN_TOKEN, config_poll_s=0.2))
    yield harness
    harness.server.stop()


@pytest.fixture(scope="module")
def story() -> dict[str, Any]:
    """What earlier steps hand to later ones (the tests below run in file order)."""
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


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> list[Path]:
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("OMNIRELAY_SCREENSHOTS") and database_url.startswith("sqlite"):
        folders.append(Path(os.environ["OMNIRELAY_SCREENSHOTS"]))
        folders[-1].mkdir(parents=True, exist_ok=True)
    return folders


def screenshot(page: Page, shots: list[Path], name: str) -> None:
    page.evaluate("document.getElementById('toasts').replaceChildren()")  # passing notices would cover the page
    for folder in shots:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def open_page(page: Page, name: str) -> None:
    target = f"/admin/#/{name}"
    if page.url.endswith(target):
        page.reload()  # the same hash is no navigation: reload to read fresh data
    else:
        page.goto(target)
    expect(page.locator(f'#main [data-page="{name}"][data-ready]')).to_be_attached()


def sdk(gw: GatewayHarness, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gw.base_url, max_retries=0, timeout=30)


def test_a_wrong_token_is_refused(page: Page, shots: list[Path]) -> None:
    page.goto("/admin")
    page.get_by_label("Admin token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong admin token")
    expect(page.get_by_role("navigation", name="Console pages")).to_be_hidden()
    page.get_by_label("Admin token").fill("")
    screenshot(page, shots, "signin")


def test_sign_in_and_create_a_channel(page: Page, gw: GatewayHarness, openai_sim: ServerThread) -> None:
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Console pages")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "omnirelay_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    assert page.evaluate("document.cookie") == ""  # invisible to scripts

    page.get_by_role("link", name="Channels").click()
    page.get_by_role("button", name="New channel").click()
    dialog = page.get_by_role("dialog", name="New channel")
    dialog.get_by_label("Name").fill("sim-ui")
    dialog.get_by_label("Type").select_option("openai")
    dialog.get_by_label("Base URL").fill(openai_sim.url + "/v1")
    dialog.get_by_label("Upstream API keys").fill(UPSTREAM_KEY)
    dialog.get_by_label("Models").fill("gpt-4o-mini, gpt-4o")
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_be_hidden()
    row = page.get_by_role("row").filter(has_text="sim-ui")
    expect(row).to_contain_text("gpt-4o-mini, gpt-4o")
    expect(row).to_contain_text("enabled")

    row.get_by_role("button", name="Test sim-ui now").click()
    results = page.get_by_role("dialog", name="Test of sim-ui")
    expect(results.get_by_role("row").filter(has_text="gpt-4o-mini")).to_contain_text("ok")
    results.get_by_role("button", name="Close").click()
    expect(row).to_contain_text(re.compile(r"ok\s*\d+ ms"))  # the last test's latency
    assert UPSTREAM_KEY not in page.content()


def test_a_disabled_upstream_key_shows_why_and_can_be_put_back(page: Page, gw: GatewayHarness) -> None:
    admin = httpx.Client(base_url=gw.server.url + "/admin/api", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    channel = next(c for c in admin.get("/channels").json() if c["name"] == "sim-ui")
    key_id = channel["keys"][0]["id"]
    disabled = admin.post(f"/channels/{channel['id']}/keys/{key_id}/disable", json={"reason": "rotating it"})
    assert disabled.status_code == 200
    open_page(page, "channels")
    row = page.get_by_role("row").filter(has_text="sim-ui")
    expect(row).to_contain_text("0 / 1")
    expect(row).to_contain_text("rotating it")
    row.get_by_role("button", name=re.compile(r"Enable key .* of sim-ui")).click()
    expect(row).to_contain_text("1 / 1")
    expect(row).not_to_contain_text("rotating it")
    assert admin.get(f"/channels/{channel['id']}").json()["active_key_count"] == 1
    admin.close()


def test_create_a_key_and_use_it_with_the_sdk(page: Page, gw: GatewayHarness, story: dict[str, Any]) -> None:
    page.get_by_role("link", name="Keys & accounts").click()
    page.get_by_role("button", name="New account").click()
    dialog = page.get_by_role("dialog", name="New account")
    dialog.get_by_label("Name").fill("acme")
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_be_hidden()

    page.get_by_role("button", name="Top up acme").click()
    dialog = page.get_by_role("dialog", name="Top up acme")
    dialog.get_by_label("Amount, USD").fill("10")
    dialog.get_by_role("button", name="Top up").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("row").filter(has_text="acme").first).to_contain_text("$10.00")

    page.get_by_role("button", name="New key").click()
    dialog = page.get_by_role("dialog", name="New key")
    dialog.get_by_label("Account").select_option(label="acme")
    dialog.get_by_label("Name").fill("acme-app")
    dialog.get_by_role("button", name="Create key").click()
    shown = page.get_by_role("dialog", name="Your new key")
    key = shown.get_by_label("Your new key").input_value()
    assert key.startswith("sk-")
    expect(shown.get_by_role("button", name="Copy")).to_be_visible()
    shown.get_by_role("button", name="Close").click()
    expect(page.get_by_role("row").filter(has_text="acme-app")).to_contain_text("active")
    assert key not in page.content()  # shown once: the list holds only the prefix

    raw = sdk(gw, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello from the console test"}]
    )
    assert raw.parse().choices[0].message.content
    story["key"], story["request_id"] = key, raw.headers["x-request-id"]
    gw.flush_usage()


def test_the_call_appears_on_the_dashboard_and_in_the_logs(page: Page, story: dict[str, Any]) -> None:
    open_page(page, "dashboard")
    expect(page.locator('[data-tile="requests"] .value')).to_have_text("1")
    chart = page.get_by_role("img", name=re.compile("Requests by model"))
    expect(chart).to_have_attribute("aria-label", "Requests by model: 1 in total")
    expect(chart.locator("rect title")).to_contain_text("gpt-4o-mini")
    expect(page.get_by_role("region", name="Top channels")).to_contain_text("sim-ui")
    expect(page.get_by_role("region", name="Top keys")).to_contain_text("acme-app")
    expect(page.get_by_role("region", name="Top spenders (accounts)")).to_contain_text("acme")

    open_page(page, "logs")
    row = page.get_by_role("row", name=re.compile("Details of gpt-4o-mini request"))
    expect(row).to_have_count(1)
    expect(row).to_contain_text("200")
    row.click()
    detail = page.get_by_role("dialog", name=f"Request {story['request_id']}")
    expect(detail).to_contain_text("chat")
    assert "hello from the console test" not in detail.inner_text()  # no prompt content is logged
    detail.get_by_role("button", name="Close").click()

    page.get_by_label("Status").select_option("error")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("No requests match.")).to_be_visible()


def test_a_revoked_key_is_refused(page: Page, gw: GatewayHarness, story: dict[str, Any]) -> None:
    open_page(page, "keys")
    page.get_by_role("button", name="Revoke acme-app").click()
    page.get_by_role("dialog", name="Please confirm").get_by_role("button", name="Yes").click()
    expect(page.get_by_role("row").filter(has_text="acme-app")).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, story["key"]).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_prices_and_groups_are_editable(page: Page, gw: GatewayHarness) -> None:
    open_page(page, "prices")
    page.get_by_role("button", name="New group").click()
    dialog = page.get_by_role("dialog", name="New group")
    dialog.get_by_label("Name").fill("vip")
    dialog.get_by_label("Price multiplier").fill("0.8")
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("row").filter(has_text="vip")).to_contain_text("\N{MULTIPLICATION SIGN} 0.8")

    page.get_by_label("Filter models").fill("gpt-4o-mini")
    page.get_by_role("button", name="Edit price of gpt-4o-mini", exact=True).click()
    dialog = page.get_by_role("dialog", name="Price of gpt-4o-mini")
    dialog.get_by_label("Price (JSON").fill('{"input_per_mtok": "0.20", "output_per_mtok": "0.80"}')
    dialog.get_by_role("button", name="Save override").click()
    row = page.get_by_role("row").filter(has=page.get_by_text("gpt-4o-mini", exact=True))
    expect(row).to_contain_text("override")
    expect(row).to_contain_text("in $0.2")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    price = httpx.get(gw.server.url + "/admin/api/prices/gpt-4o-mini", headers=headers).json()
    assert price["source"] == "override" and Decimal(price["price"]["input_per_mtok"]) == Decimal("0.20")
    row.get_by_role("button", name="Reset price of gpt-4o-mini").click()
    expect(row).to_contain_text("shipped")


def test_the_playground_streams_an_answer(page: Page, shots: list[Path]) -> None:
    open_page(page, "playground")
    page.get_by_role("button", name="Create temporary key").click()
    expect(page.get_by_label("Client key")).not_to_have_value("")
    page.get_by_label("Model").select_option("gpt-4o-mini")
    page.get_by_label("Message").fill('Say hi [sim reply="Hi from the simulator" tokens_per_second=50]')
    page.get_by_role("button", name="Send").click()
    answer = page.locator('[data-role="assistant"]')
    expect(answer).to_have_text("Hi from the simulator")
    expect(page.locator("#pg-stats")).to_contain_text("to first token")
    screenshot(page, shots, "playground")


def test_every_page_renders_and_is_captured(
    page: Page, gw: GatewayHarness, story: dict[str, Any], shots: list[Path]
) -> None:
    # A little more traffic, so the screenshots show something: two keys, several latencies, one failure.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    keys = [
        httpx.post(gw.server.url + "/admin/api/keys", json={"account": "acme", "name": name}, headers=admin).json()[
            "key"
        ]
        for name in ("acme-batch", "acme-web")
    ]
    for i, latency in enumerate((30, 120, 60, 240, 90)):
        sdk(gw, keys[i % 2]).chat.completions.create(
            model=("gpt-4o-mini", "gpt-4o")[i % 2],
            messages=[{"role": "user", "content": f"hello [sim latency_ms={latency}]"}],
        )
    with pytest.raises(openai.APIStatusError):
        sdk(gw, keys[0]).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "[sim fault=500]"}]
        )
    gw.flush_usage()
    for name in PAGES:
        open_page(page, name)
        expect(page.locator("#main .error")).to_have_count(0)
        if name != "playground":  # captured with a conversation above
            screenshot(page, shots, name)
    open_page(page, "dashboard")
    expect(page.locator('[data-tile="requests"] .value')).not_to_have_text("1")

    page.set_viewport_size({"width": 390, "height": 844})
    open_page(page, "dashboard")
    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_be_visible()
    expect(page.get_by_role("link", name="Logs")).to_be_hidden()
    screenshot(page, shots, "dashboard-phone")
    menu.click()
    page.get_by_role("link", name="Logs").click()
    expect(page.locator('#main [data-page="logs"][data-ready]')).to_be_attached()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling of the page

    # Refused sign-ins and the failed call above log "Failed to load resource"; nothing else may.
    unexpected = [e for e in story["errors"] if "Failed to load resource" not in e]
    assert unexpected == []


def test_signing_out_returns_to_the_sign_in_form(page: Page) -> None:
    page.set_viewport_size({"width": 1280, "height": 860})
    open_page(page, "dashboard")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Admin token")).to_be_visible()
    page.goto("/admin/#/keys")
    expect(page.get_by_label("Admin token")).to_be_visible()
    assert page.request.get("/admin/api/accounts").status == 401
