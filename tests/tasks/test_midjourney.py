"""Midjourney through the gateway's ``/mj`` routes (midjourney-proxy shape), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import httpx

from omnirelay.simulators.tasks.midjourney import create_midjourney_simulator
from tests.conftest import GatewayHarness
from tests.harness import ServerThread
from tests.tasks.conftest import Client, books, new_client, sim_requests, task_row

IMAGINE_MICROS = 100_000  # mj_imagine "default": 0.10
UPSCALE_MICROS = 50_000


def mj(client: Client) -> httpx.Client:
    """midjourney-proxy clients send the key in ``mj-api-secret``."""
    return httpx.Client(base_url=client.gw.server.url, headers={"mj-api-secret": client.key}, timeout=30)


def submit(http: httpx.Client, prompt: str, **extra: Any) -> str:
    answer = http.post("/mj/submit/imagine", json={"prompt": prompt, **extra})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["code"] == 1 and body["description"] and body["properties"] == {}
    return str(body["result"])


def fetch_until_done(http: httpx.Client, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = set()
    while True:
        task = http.get(f"/mj/task/{task_id}/fetch").json()
        seen.add(task["status"])
        if task["status"] in ("SUCCESS", "FAILURE"):
            task["_seen"] = seen
            return task
        assert time.monotonic() < deadline, f"task stuck in {task['status']}"
        time.sleep(0.03)


def test_imagine_succeeds_with_a_png_and_is_charged_once(gw: GatewayHarness, mj_sim: ServerThread) -> None:
    client = new_client(gw, "mj-imagine")
    before = books(gw, client.account_id)
    with mj(client) as http:
        task_id = submit(http, "a red fox [sim duration=0.4]")
        assert task_id.startswith("mj_")
        upstream_id = task_row(gw, task_id).upstream_id
        assert upstream_id != task_id and upstream_id not in http.get(f"/mj/task/{task_id}/fetch").text
        task = fetch_until_done(http, task_id)
        assert task["status"] == "SUCCESS" and task["progress"] == "100%"
        assert task["id"] == task_id and task["action"] == "IMAGINE" and task["prompt"].startswith("a red fox")
        assert [b["label"] for b in task["buttons"]][:4] == ["U1", "U2", "U3", "U4"]
        assert task["submitTime"] <= task["startTime"] <= task["finishTime"]
        image = httpx.get(task["imageUrl"], timeout=10)
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG\r\n\x1a\n")
    after = books(gw, client.account_id)
    assert after["entries"][task_id] == [-IMAGINE_MICROS]
    assert before["balance"] - after["balance"] == IMAGINE_MICROS
    assert after["key_spent"] - before["key_spent"] == IMAGINE_MICROS
    # The poller asked in batches (list-by-condition), with the upstream id, never the gateway's.
    batches = [
        r for r in sim_requests(mj_sim) if r.path == "/mj/task/list-by-condition" and upstream_id.encode() in r.body
    ]
    assert batches and all(task_id.encode() not in r.body for r in batches)
    assert all(r.headers.get("mj-api-secret") for r in batches)


def test_failed_task_is_refunded_exactly_once(gw: GatewayHarness) -> None:
    client = new_client(gw, "mj-fail")
    before = books(gw, client.account_id)
    with mj(client) as http:
        task_id = submit(http, 'a cat [sim fail=1 fail_reason="Job failed: bad luck"]')
        task = fetch_until_done(http, task_id)
        assert task["status"] == "FAILURE" and "bad luck" in task["failReason"]
        assert task["imageUrl"] == "" and task["buttons"] == []
        time.sleep(0.2)  # more poller ticks: nothing more may move
    after = books(gw, client.account_id)
    assert after["entries"][task_id] == [-IMAGINE_MICROS, IMAGINE_MICROS]
    assert after["balance"] == before["balance"] and after["key_spent"] == before["key_spent"]
    row = task_row(gw, task_id)
    assert row.billing == "refunded" and row.cost_micros == 0


def test_banned_prompt_is_refused_and_not_billed(gw: GatewayHarness) -> None:
    client = new_client(gw, "mj-banned")
    with mj(client) as http:
        answer = http.post("/mj/submit/imagine", json={"prompt": "something forbidden"})
        assert answer.status_code == 200  # midjourney-proxy answers its refusals 200, with the code saying why
        body = answer.json()
        assert body["code"] == 24 and body["result"] is None and "Banned prompt" in body["description"]
        full = http.post("/mj/submit/imagine", json={"prompt": "x [sim code=23]"})
        assert full.status_code == 429 and full.json()["code"] == 23  # queue full everywhere: retryable, 429
    after = books(gw, client.account_id)
    assert after["entries"] == {} and after["debits"] == 0


def test_upscale_of_a_finished_grid_and_list_by_condition(gw: GatewayHarness) -> None:
    client = new_client(gw, "mj-upscale")
    with mj(client) as http:
        grid = submit(http, "a lighthouse")
        assert fetch_until_done(http, grid)["status"] == "SUCCESS"
        answer = http.post("/mj/submit/change", json={"action": "UPSCALE", "index": 2, "taskId": grid})
        assert answer.status_code == 200 and answer.json()["code"] == 1, answer.text
        upscale = answer.json()["result"]
        task = fetch_until_done(http, upscale)
        assert task["status"] == "SUCCESS" and task["action"] == "UPSCALE"
        assert httpx.get(task["imageUrl"]).content.startswith(b"\x89PNG")
        listed = http.post("/mj/task/list-by-condition", json={"ids": [grid, upscale, "mj_unknown"]}).json()
        assert [t["id"] for t in listed] == [grid, upscale]
        bad = http.post("/mj/submit/change", json={"action": "UPSCALE", "index": 9, "taskId": grid})
        assert bad.status_code == 400 and bad.json()["code"] == 4
    entries = books(gw, client.account_id)["entries"]
    assert entries[grid] == [-IMAGINE_MICROS] and entries[upscale] == [-UPSCALE_MICROS]


def test_unified_get_agrees_and_wait_returns_when_the_task_ends(gw: GatewayHarness) -> None:
    client = new_client(gw, "mj-unified")
    with mj(client) as http, client.http() as unified:
        task_id = submit(http, "a tiny boat [sim duration=0.6]")
        started = time.monotonic()
        waited = unified.get(f"/task/{task_id}", params={"wait": 8})
        elapsed = time.monotonic() - started
        assert waited.status_code == 200
        body = waited.json()
        assert body["status"] == "SUCCESS" and 0.3 < elapsed < 4.0
        vendor = http.get(f"/mj/task/{task_id}/fetch").json()
        assert body["task_id"] == vendor["id"] == task_id
        assert body["task_result"]["images"][0]["url"] == vendor["imageUrl"]
        assert body["progress"] == vendor["progress"] == "100%"
        assert (
            body["submit_time"] == vendor["submitTime"] // 1000 and body["finish_time"] == vendor["finishTime"] // 1000
        )
        short = unified.get(f"/task/{submit(http, 'slow [sim duration=5]')}", params={"wait": 0.3}).json()
        assert short["status"] in ("SUBMITTED", "QUEUED", "IN_PROGRESS")


def test_another_accounts_task_is_not_found(gw: GatewayHarness) -> None:
    owner = new_client(gw, "mj-owner")
    stranger = new_client(gw, "mj-stranger")
    with mj(owner) as http:
        task_id = submit(http, "private")
    with stranger.http() as unified, mj(stranger) as other:
        answer = unified.get(f"/task/{task_id}")
        assert answer.status_code == 404 and answer.json() == {"error": "Task not found"}
        assert unified.get("/task/does-not-exist").json() == {"error": "Task not found"}
        assert other.get(f"/mj/task/{task_id}/fetch").status_code == 404
        assert other.post("/mj/task/list-by-condition", json={"ids": [task_id]}).json() == []
    assert httpx.get(gw.server.url + f"/task/{task_id}").status_code == 401


def test_submit_fails_over_to_the_next_channel(
    database_url: str, mj_sim: ServerThread, video_sim: ServerThread
) -> None:
    from omnirelay.config import ChannelConfig
    from omnirelay.simulators.common import SimKnobs, SimulatorState
    from tests.conftest import start_gateway
    from tests.tasks.conftest import MJ_KEY, gateway_settings

    broken_state = SimulatorState(defaults=SimKnobs(fault="503"))  # an upstream that answers every call 503
    broken = ServerThread(create_midjourney_simulator(broken_state)).start()
    settings = gateway_settings(database_url, mj_sim, video_sim)
    settings.channels = [
        # Ahead of the module's own "mj" channel, which the shared database still holds.
        ChannelConfig(
            name="mj-a", type="midjourney", base_url=broken.url, api_keys=[MJ_KEY], models=["mj_imagine"], priority=-2
        ),
        ChannelConfig(
            name="mj-b", type="midjourney", base_url=mj_sim.url, api_keys=[MJ_KEY], models=["mj_imagine"], priority=-1
        ),
    ]
    harness = start_gateway(settings)
    try:
        client = new_client(harness, "mj-failover")
        with mj(client) as http:
            task_id = submit(http, "failover please")
            assert fetch_until_done(http, task_id)["status"] == "SUCCESS"
        row = task_row(harness, task_id)
        channel = next(c for c in harness.gateway.snapshot.channels if c.id == row.channel_id)
        assert channel.name == "mj-b"
        assert books(harness, client.account_id)["entries"][task_id] == [-IMAGINE_MICROS]
        assert [r.path for r in broken_state.requests] == ["/mj/submit/imagine"]
    finally:
        harness.server.stop()
        broken.stop()


def test_button_action_blend_and_describe(gw: GatewayHarness) -> None:
    client = new_client(gw, "mj-more")
    png = "data:image/png;base64,iVBORw0KGgo="
    with mj(client) as http:
        grid = submit(http, "a garden")
        buttons = fetch_until_done(http, grid)["buttons"]
        v2 = next(b["customId"] for b in buttons if b["label"] == "V2")
        answer = http.post("/mj/submit/action", json={"customId": v2, "taskId": grid})
        assert answer.status_code == 200 and answer.json()["code"] == 1, answer.text
        variation = answer.json()["result"]
        assert fetch_until_done(http, variation)["action"] == "VARIATION"
        blend = http.post("/mj/submit/blend", json={"base64Array": [png, png], "dimensions": "SQUARE"}).json()
        assert fetch_until_done(http, blend["result"])["status"] == "SUCCESS"
        described = http.post("/mj/submit/describe", json={"base64": png}).json()
        task = fetch_until_done(http, described["result"])
        assert task["status"] == "SUCCESS" and task["action"] == "DESCRIBE"
        with client.http() as unified:
            text = unified.get(f"/task/{described['result']}").json()["task_result"]["text"]
        assert text
        one = http.post("/mj/submit/blend", json={"base64Array": [png]})
        assert one.status_code == 400 and one.json()["code"] == 4
    entries = books(gw, client.account_id)["entries"]
    assert entries[variation] == [-100_000] and entries[blend["result"]] == [-100_000]
    assert entries[described["result"]] == [-50_000]


def test_speed_prefix_sets_the_price_and_the_upstream_mode(gw: GatewayHarness, mj_sim: ServerThread) -> None:
    client = new_client(gw, "mj-relax")
    with mj(client) as http:
        answer = http.post("/relax/mj/submit/imagine", json={"prompt": "slow and cheap"})
        assert answer.status_code == 200 and answer.json()["code"] == 1
        task_id = answer.json()["result"]
        assert fetch_until_done(http, task_id)["status"] == "SUCCESS"
        assert http.post("/warp/mj/submit/imagine", json={"prompt": "x"}).status_code == 400
    assert books(gw, client.account_id)["entries"][task_id] == [-50_000]  # mj_imagine "relax": 0.05
    sent = [r for r in sim_requests(mj_sim) if r.path == "/mj/submit/imagine" and b"slow and cheap" in r.body]
    assert sent and all(b'"modes":["RELAX"]' in r.body for r in sent)
