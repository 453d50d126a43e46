"""Screenshots of the admin console for the README (``docs/screenshots/``), taken from a running ``omnirelay demo``.

    .venv/bin/python scripts/console_screenshots.py [--out docs/screenshots] [--minutes 3]

Starts the demo (simulated upstreams, SQLite in a temp dir), sends real traffic through it with the official SDK
for a few minutes (several models, keys and accounts, some failures, a few async tasks), then signs in to
``/admin`` with Debian's Chromium and captures every page. Everything shown went through the gateway.
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
ADMIN_TOKEN = "screenshots-admin-token-0123"
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash", "gpt-4.1-mini"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_demo(port: int, data_dir: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "omnirelay", "demo", "--port", str(port), "--admin-token", ADMIN_TOKEN,
               "--data-dir", str(data_dir)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(url: str, demo: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            raise SystemExit(f"the demo exited: {demo.stdout.read() if demo.stdout else ''}")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the demo did not start")


def make_keys(base: str) -> list[str]:
    """Three customer accounts with a key or two each, through the admin API."""
    admin = httpx.Client(base_url=base + "/admin/api", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    keys = []
    for name, credit, key_names in (("acme", "50", ["acme-web", "acme-batch"]), ("globex", "20", ["globex-app"]),
                                    ("initech", "5", ["initech-bot"])):  # fmt: skip
        account = admin.post("/accounts", json={"name": name}).json()
        admin.post(f"/accounts/{account['id']}/topup", json={"amount_usd": credit, "reason": "welcome credit"})
        for key_name in key_names:
            keys.append(admin.post("/keys", json={"account": account["id"], "name": key_name}).json()["key"])
    admin.post("/redemption-codes", json={"count": 5, "amount_usd": "10", "batch": "launch-promo"})
    admin.put("/groups/vip", json={"multiplier": "0.8"})
    for channel in admin.get("/channels").json()[:4]:
        admin.post(f"/channels/{channel['id']}/test")
    return keys


def traffic(base: str, keys: list[str], minutes: float) -> None:
    rng = random.Random(8)
    clients = [openai.OpenAI(api_key=k, base_url=base + "/v1", max_retries=0, timeout=60) for k in keys]
    end = time.monotonic() + minutes * 60
    while time.monotonic() < end:
        client = rng.choice(clients)
        model = rng.choices(MODELS, weights=[5, 2, 3, 2, 1])[0]
        directive = f"[sim latency_ms={int(rng.lognormvariate(5, 0.7))} output_tokens={rng.randint(20, 400)}]"
        if rng.random() < 0.05:
            directive = "[sim fault=500]"
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"hi {directive}"}])
        except openai.APIError:
            pass
        time.sleep(rng.uniform(0.05, 0.6))


def tasks(base: str, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    for body in ({"model": "mj_imagine", "prompt": "a red fox in the snow"},
                 {"model": "mj_imagine", "prompt": "a lighthouse at dusk, oil painting"},
                 {"model": "suno_music", "prompt": "a calm piano piece"}):  # fmt: skip
        submitted = httpx.post(base + "/task/submit", json=body, headers=headers, timeout=60)
        if submitted.status_code == 200:
            httpx.get(f"{base}/task/{submitted.json()['task_id']}", params={"wait": 30}, headers=headers, timeout=60)


def capture(base: str, out: Path, playground_key: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, base_url=base)

        def shot(name: str, full_page: bool = True) -> None:
            page.evaluate("document.getElementById('toasts').replaceChildren()")
            page.screenshot(path=str(out / f"{name}.png"), full_page=full_page)

        def open_page(name: str) -> None:
            page.goto(f"/admin/#/{name}")
            expect(page.locator(f'#main [data-page="{name}"][data-ready]')).to_be_attached(timeout=15_000)

        page.goto("/admin")
        shot("signin", full_page=False)
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("navigation", name="Console pages")).to_be_visible()
        open_page("dashboard")
        page.get_by_role("button", name="Last hour").click()
        page.wait_for_timeout(1500)
        shot("dashboard")
        for name in ("channels", "keys", "prices", "logs", "tasks"):
            open_page(name)
            page.wait_for_timeout(500)  # task previews load their images
            shot(name, full_page=name in ("channels", "keys", "tasks"))  # long lists: the first screen is enough
        open_page("playground")
        page.get_by_label("Client key").fill(playground_key)
        page.get_by_label("Model").select_option("claude-sonnet-4-5")
        page.get_by_label("Message").fill("Write one sentence about gateways.")
        page.get_by_role("button", name="Send").click()
        expect(page.locator("#pg-stats")).to_contain_text("to first token", timeout=30_000)
        shot("playground", full_page=False)
        page.set_viewport_size({"width": 390, "height": 844})
        open_page("dashboard")
        shot("dashboard-phone", full_page=False)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--minutes", type=float, default=3.0, help="How long to send traffic (spreads the charts).")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="omnirelay-shots-") as data_dir:
        demo = start_demo(port, Path(data_dir))
        try:
            wait_for(base, demo)
            keys = make_keys(base)
            tasks(base, keys[0])
            traffic(base, keys, options.minutes)
            capture(base, options.out, keys[0])
        finally:
            demo.terminate()
            demo.wait(timeout=30)
    print("\n".join(sorted(str(p) for p in options.out.glob("*.png"))))


if __name__ == "__main__":
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium")
    main()
