"""FAL through the gateway's ``/fal-ai/...`` routes, driven by the official ``fal-client`` with its queue URL at the
gateway, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import fal_client
import httpx
import pytest

from omnirelay.simulators.tasks.fal import create_fal_simulator
from tests.conftest import GatewayHarness
from tests.harness import ServerThread
from tests.tasks.conftest import Client, books, new_client, sim_fixture, task_row
from tests.tasks.vendor_gateway import HookReceiver, upstream_requests, vendor_gateway_fixture

FAL_KEY = "fal-upstream-key:0123456789"
MODELS = ["flux-kontext-pro", "flux-dev", "kling-v2-1-master"]
KONTEXT_MICROS = 40_000
FLUX_DEV_MICROS = 25_000
KLING_MASTER_5S_MICROS = 1_400_000


fal_sim = sim_fixture(create_fal_simulator, FAL_KEY)
gw = vendor_gateway_fixture("fal", "fal_sim", FAL_KEY, MODELS)


@pytest.fixture
def at_gateway(gw: GatewayHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    # fal-client builds queue URLs from a module constant (always https://queue.fal.run/); point it at the gateway.
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{gw.server.url}/")


def sdk(client: Client) -> fal_client.SyncClient:
    return fal_client.SyncClient(key=client.key)


@pytest.mark.usefixtures("at_gateway")
def test_sdk_submit_poll_and_result_with_images_charged_per_image(gw: GatewayHarness, fal_sim: ServerThread) -> None:
    client = new_client(gw, "fal-kontext")
    before = books(gw, client.account_id)
    handle = sdk(client).submit(
        "fal-ai/flux-pro/kontext", arguments={"prompt": "a boat", "image_size": "landscape_16_9", "num_images": 2}
    )
    assert handle.request_id.startswith("fal_")
    assert handle.status_url == f"{gw.server.url}/fal-ai/flux-pro/requests/{handle.request_id}/status"
    events = [type(e).__name__ for e in handle.iter_events(interval=0.03)]
    assert events[-1] == "Completed" and set(events) <= {"Queued", "InProgress", "Completed"}
    result = handle.get()
    assert len(result["images"]) == 2
    for image in result["images"]:
        assert (image["width"], image["height"], image["content_type"]) == (1024, 576, "image/png")
        assert httpx.get(image["url"], timeout=10).content.startswith(b"\x89PNG\r\n\x1a\n")
    upstream_id = task_row(gw, handle.request_id).upstream_id
    assert upstream_id.split(":")[-1] not in str(result)
    after = books(gw, client.account_id)
    assert after["entries"][handle.request_id] == [-2 * KONTEXT_MICROS]
    assert before["balance"] - after["balance"] == 2 * KONTEXT_MICROS
    # Upstream: submitted on the model path, polled on FAL's owner/alias URLs, with FAL's "Key" auth.
    assert upstream_requests(fal_sim, "/fal-ai/flux-pro/kontext")
    polls = upstream_requests(fal_sim, f"/fal-ai/flux-pro/requests/{upstream_id.split(':')[-1]}")
    assert any(p.path.endswith("/status") for p in polls) and any(not p.path.endswith("/status") for p in polls)
    assert all(p.headers["authorization"] == f"Key {FAL_KEY}" for p in polls)


def test_status_codes_follow_fal_and_unified_get_agrees(gw: GatewayHarness) -> None:
    client = new_client(gw, "fal-http")
    with httpx.Client(base_url=gw.server.url, headers={"Authorization": f"Key {client.key}"}, timeout=30) as http:
        queued = http.post("/fal-ai/flux/dev", json={"prompt": "x [sim duration=0.5]"}).json()
        assert queued["status"] == "IN_QUEUE" and queued["queue_position"] == 0
        status = http.get(queued["status_url"])
        assert status.status_code == 202 and status.json()["status"] in ("IN_QUEUE", "IN_PROGRESS")
        early = http.get(queued["response_url"])
        assert early.status_code == 400 and early.json() == {"detail": "Request is still in progress."}
        bearer = {"Authorization": f"Bearer {client.key}"}  # the unified API takes the key as a bearer token
        done = http.get(f"/task/{queued['request_id']}", params={"wait": 5}, headers=bearer).json()
        assert done["status"] == "SUCCESS"
        final = http.get(queued["status_url"])
        assert final.status_code == 200 and final.json()["status"] == "COMPLETED"
        result = http.get(queued["response_url"]).json()
        assert [i["url"] for i in result["images"]] == [i["url"] for i in done["task_result"]["images"]]

        video = http.post("/fal-ai/kling-video/v2.1/master/text-to-video", json={"prompt": "waves", "duration": "5"})
        video_id = video.json()["request_id"]
        clip = http.get(f"/task/{video_id}", params={"wait": 5}, headers=bearer).json()["task_result"]["videos"][0]
        assert httpx.get(clip["url"], timeout=10).content[4:8] == b"ftyp"
        assert http.get(video.json()["response_url"]).json()["video"]["url"] == clip["url"]
    entries = books(gw, client.account_id)["entries"]
    assert entries[queued["request_id"]] == [-FLUX_DEV_MICROS]
    assert entries[video_id] == [-KLING_MASTER_5S_MICROS]


@pytest.mark.usefixtures("at_gateway")
def test_failed_request_refunded_once_refusals_not_billed_and_ids_private(gw: GatewayHarness) -> None:
    client = new_client(gw, "fal-fail")
    other = new_client(gw, "fal-other")
    before = books(gw, client.account_id)
    handle = sdk(client).submit("fal-ai/flux/dev", arguments={"prompt": 'x [sim fail=1 fail_reason="GPU on fire"]'})
    final = list(handle.iter_events(interval=0.03))[-1]
    assert isinstance(final, fal_client.Completed) and final.error == "GPU on fire"
    with pytest.raises(fal_client.FalClientHTTPError) as failed:
        handle.get()
    assert failed.value.status_code == 422 and "GPU on fire" in str(failed.value)
    time.sleep(0.2)

    with pytest.raises(fal_client.FalClientHTTPError) as refused:
        sdk(client).submit("fal-ai/flux/dev", arguments={"prompt": "x [sim fault=400]"})
    assert refused.value.status_code == 400
    with pytest.raises(fal_client.FalClientHTTPError) as invalid:
        sdk(client).submit("fal-ai/flux/dev", arguments={"num_images": 1})
    assert invalid.value.status_code == 400 and "prompt" in str(invalid.value)
    with pytest.raises(fal_client.FalClientHTTPError) as foreign:
        sdk(other).status("fal-ai/flux/dev", handle.request_id)
    assert foreign.value.status_code == 404

    after = books(gw, client.account_id)
    assert after["entries"] == {handle.request_id: [-FLUX_DEV_MICROS, FLUX_DEV_MICROS]}
    assert after["balance"] == before["balance"]
    anonymous = httpx.get(f"{gw.server.url}/fal-ai/flux/requests/{handle.request_id}/status")
    assert anonymous.status_code == 401 and "detail" in anonymous.json()


def test_fal_webhook_is_signed_and_cancel_is_not_supported(gw: GatewayHarness) -> None:
    client = new_client(gw, "fal-hook")
    receiver = HookReceiver()
    try:
        with httpx.Client(base_url=gw.server.url, headers={"Authorization": f"Key {client.key}"}, timeout=30) as http:
            queued = http.post("/fal-ai/flux/dev", params={"fal_webhook": receiver.url}, json={"prompt": "owl"}).json()
            hooked = receiver.delivered(queued["request_id"])
            assert [i["url"] for i in hooked["images"]] == [
                i["url"] for i in http.get(queued["response_url"]).json()["images"]
            ]
            cancel = http.put(queued["cancel_url"])
            assert cancel.status_code == 501 and "not supported" in cancel.json()["detail"]
    finally:
        receiver.server.stop()
