"""The engine across instances and restarts: leases, resumed polling, timeouts, webhooks, stored results, budgets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.store.models import Task
from omnirelay.tasks.webhooks import SIGNATURE_HEADER, TASK_ID_HEADER, verify
from tests.conftest import GatewayHarness, start_gateway
from tests.harness import ServerThread
from tests.tasks.conftest import (
    Client,
    books,
    gateway_settings,
    new_client,
    sim_requests,
    task_row,
    wait_until,
)

IMAGINE_MICROS = 100_000


def mj(client: Client, gw: GatewayHarness | None = None) -> httpx.Client:
    target = gw or client.gw
    return httpx.Client(base_url=target.server.url, headers={"mj-api-secret": client.key}, timeout=30)


def imagine(http: httpx.Client, prompt: str, **extra: Any) -> str:
    answer = http.post("/mj/submit/imagine", json={"prompt": prompt, **extra})
    assert answer.status_code == 200 and answer.json()["code"] == 1, answer.text
    return str(answer.json()["result"])


def status_of(gw: GatewayHarness, public_id: str) -> str:
    return task_row(gw, public_id).status


def polled_by(sim: ServerThread, upstream_ids: set[str]) -> dict[str, set[str]]:
    """Upstream task id → the instances (User-Agent) that asked the upstream about it."""
    seen: dict[str, set[str]] = {}
    for request in sim_requests(sim):
        if request.path == "/mj/task/list-by-condition":
            ids = orjson.loads(request.body)["ids"]
        elif request.path.startswith("/mj/task/") and request.path.endswith("/fetch"):
            ids = [request.path.split("/")[3]]
        else:
            continue
        for upstream_id in ids:
            if upstream_id in upstream_ids:
                seen.setdefault(upstream_id, set()).add(request.headers.get("user-agent", ""))
    return seen


@pytest.fixture(scope="module")
def gw(database_url: str, mj_sim: ServerThread, video_sim: ServerThread) -> Iterator[GatewayHarness]:
    harness = start_gateway(gateway_settings(database_url, mj_sim, video_sim, instance_id="main"))
    yield harness
    harness.server.stop()


class HookReceiver:
    """A client's webhook endpoint: fails the first ``fail_first`` calls with 500, records every call."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first

        async def hook(request: Request) -> Response:
            self.calls.append((dict(request.headers), await request.body()))
            return Response(status_code=500 if len(self.calls) <= self.fail_first else 204)

        self.server = ServerThread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])).start()
        self.url = self.server.url + "/hook"


def test_webhook_is_signed_and_retried_until_delivered(gw: GatewayHarness) -> None:
    receiver = HookReceiver(fail_first=1)
    try:
        client = new_client(gw, "hooks")
        with mj(client) as http:
            task_id = imagine(http, "a signed owl", notifyHook=receiver.url)
        wait_until(lambda: len(receiver.calls) >= 2)
        time.sleep(0.2)
        assert len(receiver.calls) == 2  # one failure, one delivery, nothing after
        for headers, body in receiver.calls:
            assert verify(b"whsec-test", body, headers[SIGNATURE_HEADER.lower()])
            assert not verify(b"another-secret", body, headers[SIGNATURE_HEADER.lower()])
            assert headers[TASK_ID_HEADER.lower()] == task_id
        delivered = orjson.loads(receiver.calls[-1][1])
        assert delivered["id"] == task_id and delivered["status"] == "SUCCESS" and delivered["imageUrl"]
        assert task_row(gw, task_id).hook_state == "delivered"
    finally:
        receiver.server.stop()


def test_restart_mid_task_resumes_polling(
    database_url: str, mj_sim: ServerThread, video_sim: ServerThread, gw: GatewayHarness
) -> None:
    gw.server.stop()  # this module's gateway steps aside: only A, then B, poll
    first = start_gateway(gateway_settings(database_url, mj_sim, video_sim, instance_id="before-restart"))
    client = new_client(first, "restart")
    with mj(client, first) as http:
        task_id = imagine(http, "through a restart [sim duration=1.2]")
    time.sleep(0.2)
    assert status_of(first, task_id) in ("SUBMITTED", "QUEUED", "IN_PROGRESS")
    first.server.stop()
    second = start_gateway(gateway_settings(database_url, mj_sim, video_sim, instance_id="after-restart"))
    try:
        with client.http(second) as http:
            done = http.get(f"/task/{task_id}", params={"wait": 8}).json()
        assert done["status"] == "SUCCESS" and done["task_result"]["images"]
        upstream_id = task_row(second, task_id).upstream_id
        agents = polled_by(mj_sim, {upstream_id})[upstream_id]
        assert "omnirelay-tasks/after-restart" in agents
        assert books(second, client.account_id)["entries"][task_id] == [-IMAGINE_MICROS]
        # An instance that died without letting go: its lease runs out, then another instance takes over.
        with mj(client, second) as http:
            orphan = imagine(http, "orphaned [sim duration=0.2]")

        async def crash_lease() -> None:
            async with second.gateway.sessions.begin() as session:
                await session.execute(
                    update(Task)
                    .where(Task.public_id == orphan)
                    .values(lease_owner="dead-instance", lease_until=time.time() + 0.5)
                )

        second.run(crash_lease())
        time.sleep(0.3)
        assert status_of(second, orphan) != "SUCCESS"
        wait_until(lambda: status_of(second, orphan) == "SUCCESS", timeout=5)
    finally:
        second.server.stop()


@pytest.fixture(scope="module")
def strict_gw(
    database_url: str, mj_sim: ServerThread, video_sim: ServerThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayHarness]:
    """Private webhooks refused, results stored by the gateway, MJ tasks timing out after ~0.7 s."""
    storage = tmp_path_factory.mktemp("files")
    settings = gateway_settings(
        database_url,
        mj_sim,
        video_sim,
        instance_id="strict",
        webhook_allow_private=False,
        store_results=True,
        storage_dir=str(storage),
        timeout_scale=0.0002,
    ).model_copy(update={"media_fetch_allow_private": True})  # results are kept from the simulator on 127.0.0.1
    harness = start_gateway(settings)
    harness.storage = storage  # type: ignore[attr-defined]
    yield harness
    harness.server.stop()


def test_task_that_never_finishes_times_out_and_is_refunded(strict_gw: GatewayHarness) -> None:
    client = new_client(strict_gw, "timeout")
    with mj(client) as http, client.http() as unified:
        task_id = imagine(http, "never ends [sim duration=100]")
        done = unified.get(f"/task/{task_id}", params={"wait": 8}).json()
    assert done["status"] == "FAILURE" and "did not finish in time" in done["err_reason"]
    time.sleep(0.2)
    assert books(strict_gw, client.account_id)["entries"][task_id] == [-IMAGINE_MICROS, IMAGINE_MICROS]


def test_results_are_stored_and_served_by_the_gateway(strict_gw: GatewayHarness) -> None:
    client = new_client(strict_gw, "stored")
    with mj(client) as http, client.http() as unified:
        task_id = imagine(http, "keep me")
        done = unified.get(f"/task/{task_id}", params={"wait": 8}).json()
        assert done["status"] == "SUCCESS"
        url = done["task_result"]["images"][0]["url"]
        assert url.startswith(strict_gw.server.url + "/files/tasks/" + task_id + "/")
        assert http.get(f"/mj/task/{task_id}/fetch").json()["imageUrl"] == url
        image = httpx.get(url)
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        stored = list((strict_gw.storage / task_id).iterdir())  # type: ignore[attr-defined]
        assert [p.read_bytes() for p in stored] == [image.content]
        assert httpx.get(strict_gw.server.url + f"/files/tasks/{task_id}/..%2F..%2Fetc").status_code == 404


def test_private_webhook_refused_and_budget_enforced(strict_gw: GatewayHarness, mj_sim: ServerThread) -> None:
    client = new_client(strict_gw, "strict-hooks")
    with mj(client) as http:
        refused = http.post("/mj/submit/imagine", json={"prompt": "hook", "notifyHook": "http://127.0.0.1:9/hook"})
        assert refused.status_code == 400 and "non-public" in refused.json()["description"]
    poor = new_client(strict_gw, "poor", topup_micros=50_000)
    with mj(poor) as http:
        answer = http.post("/mj/submit/imagine", json={"prompt": "too dear for me"})
        assert answer.status_code == 429 and "Insufficient balance" in answer.json()["description"]
    assert not any(b"too dear for me" in r.body for r in sim_requests(mj_sim))
    assert books(strict_gw, poor.account_id)["entries"] == {}
    assert books(strict_gw, client.account_id)["entries"] == {}
