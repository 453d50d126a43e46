"""Replicate through the gateway's ``/replicate/v1/...`` routes, driven by the official ``replicate`` SDK with its
``base_url`` at the gateway, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import httpx
import pytest
import replicate
from replicate.exceptions import ReplicateError

from omnirelay.simulators.tasks.replicate import create_replicate_simulator
from tests.conftest import GatewayHarness
from tests.harness import ServerThread
from tests.tasks.conftest import Client, books, new_client, sim_fixture, task_row
from tests.tasks.vendor_gateway import HookReceiver, upstream_requests, vendor_gateway_fixture

REPLICATE_KEY = "r8_upstream_0123456789abcdef"
MODELS = ["flux-kontext-pro", "flux-pro-1.1-ultra", "flux-schnell", "imagen-4.0-generate-001"]
KONTEXT_MICROS = 40_000  # flux-kontext-pro: 0.04 per image
SCHNELL_MICROS = 3_000


replicate_sim = sim_fixture(create_replicate_simulator, REPLICATE_KEY)
gw = vendor_gateway_fixture("replicate", "replicate_sim", REPLICATE_KEY, MODELS)


def sdk(client: Client) -> replicate.Client:
    official = replicate.Client(api_token=client.key, base_url=f"{client.gw.server.url}/replicate")
    official.poll_interval = 0.05
    return official


def test_sdk_prediction_succeeds_with_a_png_and_is_charged_per_image(
    gw: GatewayHarness, replicate_sim: ServerThread
) -> None:
    client = new_client(gw, "rep-kontext")
    before = books(gw, client.account_id)
    prediction = sdk(client).models.predictions.create(
        model="black-forest-labs/flux-kontext-pro", input={"prompt": "a cat in a hat", "aspect_ratio": "16:9"}
    )
    assert prediction.id.startswith("rep_") and prediction.status == "starting"
    assert prediction.urls["get"] == f"{gw.server.url}/replicate/v1/predictions/{prediction.id}"
    upstream_id = task_row(gw, prediction.id).upstream_id
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.error is None
    assert prediction.model == "black-forest-labs/flux-kontext-pro"
    assert prediction.input == {"prompt": "a cat in a hat", "aspect_ratio": "16:9"}
    assert prediction.completed_at and prediction.created_at
    assert upstream_id not in str(prediction.dict()) and REPLICATE_KEY not in str(prediction.dict())
    image = httpx.get(prediction.output, timeout=10)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG\r\n\x1a\n")
    after = books(gw, client.account_id)
    assert after["entries"][prediction.id] == [-KONTEXT_MICROS]
    assert before["balance"] - after["balance"] == KONTEXT_MICROS
    created = upstream_requests(replicate_sim, "/v1/models/black-forest-labs/flux-kontext-pro/predictions")
    assert created and created[-1].headers["authorization"] == f"Bearer {REPLICATE_KEY}"


def test_several_outputs_are_billed_as_images_and_unified_get_agrees(gw: GatewayHarness) -> None:
    client = new_client(gw, "rep-many")
    prediction = sdk(client).models.predictions.create(
        model="black-forest-labs/flux-schnell", input={"prompt": "dots", "num_outputs": 3, "output_format": "jpg"}
    )
    prediction.wait()
    assert prediction.status == "succeeded" and isinstance(prediction.output, list) and len(prediction.output) == 3
    assert all(httpx.get(url, timeout=10).content[:2] == b"\xff\xd8" for url in prediction.output)
    with httpx.Client(base_url=gw.server.url, headers={"Authorization": f"Bearer {client.key}"}) as http:
        unified = http.get(f"/task/{prediction.id}").json()
    assert unified["status"] == "SUCCESS"
    assert [i["url"] for i in unified["task_result"]["images"]] == prediction.output
    assert [i["content_type"] for i in unified["task_result"]["images"]] == ["image/jpeg"] * 3
    assert books(gw, client.account_id)["entries"][prediction.id] == [-3 * SCHNELL_MICROS]


def test_unified_submit_runs_on_replicate_and_waits(gw: GatewayHarness) -> None:
    client = new_client(gw, "rep-unified")
    with httpx.Client(base_url=gw.server.url, headers={"Authorization": f"Bearer {client.key}"}, timeout=30) as http:
        answer = http.post("/task/submit", json={"model": "imagen-4.0-generate-001", "prompt": "a red barn"})
        assert answer.status_code == 200, answer.text
        task_id = answer.json()["task_id"]
        finished = http.get(f"/task/{task_id}", params={"wait": 5}).json()
    assert finished["status"] == "SUCCESS" and len(finished["task_result"]["images"]) == 1
    again = sdk(client).predictions.get(task_id)
    assert again.status == "succeeded" and again.model == "google/imagen-4"
    # replicate.run: asks with Prefer: wait (answered at once by the gateway), polls, then gives the output URL.
    output = sdk(client).run("black-forest-labs/flux-kontext-pro", input={"prompt": "a red barn"})
    assert httpx.get(str(output), timeout=10).content.startswith(b"\x89PNG\r\n\x1a\n")


def test_failed_prediction_refunded_once_refusals_not_billed_and_ids_private(gw: GatewayHarness) -> None:
    client = new_client(gw, "rep-fail")
    other = new_client(gw, "rep-other")
    before = books(gw, client.account_id)
    failed = sdk(client).models.predictions.create(
        model="black-forest-labs/flux-1.1-pro-ultra", input={"prompt": 'x [sim fail=1 fail_reason="NSFW"]'}
    )
    failed.wait()
    assert failed.status == "failed" and failed.error == "NSFW" and failed.output is None
    time.sleep(0.2)

    with pytest.raises(ReplicateError) as refused:  # the simulator's 422: no prompt
        sdk(client).models.predictions.create(model="black-forest-labs/flux-schnell", input={"aspect_ratio": "1:1"})
    assert refused.value.status is not None and 400 <= refused.value.status < 500
    assert "prompt" in (refused.value.detail or "")
    with pytest.raises(ReplicateError) as unknown:
        sdk(client).models.predictions.create(model="acme/not-served", input={"prompt": "x"})
    assert unknown.value.status is not None and unknown.value.status >= 400
    with pytest.raises(ReplicateError) as foreign:
        sdk(other).predictions.get(failed.id)
    assert foreign.value.status == 404

    after = books(gw, client.account_id)
    assert after["entries"] == {failed.id: [-60_000, 60_000]}  # flux-pro-1.1-ultra 0.06, refunded
    assert after["balance"] == before["balance"]
    with pytest.raises(ReplicateError) as anonymous:
        replicate.Client(api_token="r8_wrong", base_url=f"{gw.server.url}/replicate").predictions.get(failed.id)
    assert anonymous.value.status == 401


def test_prefer_wait_answers_the_finished_prediction_and_webhook_gets_it(gw: GatewayHarness) -> None:
    client = new_client(gw, "rep-wait")
    receiver = HookReceiver()
    try:
        with httpx.Client(base_url=gw.server.url, headers={"Authorization": f"Bearer {client.key}"}, timeout=30) as h:
            started = time.monotonic()
            answer = h.post(
                "/replicate/v1/models/black-forest-labs/flux-schnell/predictions",
                json={"input": {"prompt": "a quick fox"}, "webhook": receiver.url},
                headers={"Prefer": "wait=10"},
            )
            assert answer.status_code == 201 and time.monotonic() - started < 8
            prediction = answer.json()
            assert prediction["status"] == "succeeded" and prediction["output"]
            cancel = h.post(f"/replicate/v1/predictions/{prediction['id']}/cancel")
            assert cancel.status_code == 501 and cancel.json()["status"] == 501 and cancel.json()["detail"]
        hooked = receiver.delivered(prediction["id"])
        assert hooked["id"] == prediction["id"] and hooked["status"] == "succeeded"
        assert hooked["output"] == prediction["output"]
    finally:
        receiver.server.stop()
