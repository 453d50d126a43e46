"""Kling through the gateway's ``/kling/v1/...`` routes (Kling's own shapes), on SQLite and PostgreSQL. The channel
key is ``access_key|secret_key``; the simulator checks every call's HS256 JWT with the secret."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import av
import httpx
import orjson

from omnirelay.providers.task_vendors.kling import kling_jwt
from omnirelay.simulators.tasks.kling import check_jwt, create_kling_simulator
from tests.conftest import GatewayHarness
from tests.harness import ServerThread
from tests.tasks.conftest import books, new_client, sim_fixture, task_row
from tests.tasks.vendor_gateway import HookReceiver, poll, upstream_requests, vendor_gateway_fixture

ACCESS, SECRET = "ak-gateway-0123", "sk-gateway-secret-4567"
KLING_KEY = f"{ACCESS}|{SECRET}"
MODELS = ["kling-v1", "kling-v1-6", "kolors-virtual-try-on-v1"]
STD_5S_MICROS = 140_000  # kling-v1-6 "std/5s": 0.14
PRO_5S_MICROS = 490_000
IMAGE_MICROS = 3_500  # kling-v1 "image": 0.0035 each
TRY_ON_MICROS = 70_000


kling_sim = sim_fixture(create_kling_simulator, KLING_KEY)
gw = vendor_gateway_fixture("kling", "kling_sim", KLING_KEY, MODELS)


def submit(http: httpx.Client, path: str, body: dict[str, Any]) -> str:
    answer = http.post(f"/kling/v1/{path}", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["code"] == 0 and data["message"] == "SUCCEED" and data["request_id"]
    assert data["data"]["task_status"] == "submitted"
    return str(data["data"]["task_id"])


def fetch_until_done(http: httpx.Client, path: str, task_id: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        answer = http.get(f"/kling/v1/{path}/{task_id}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["code"] == 0
        return answer.json()["data"]  # type: ignore[no-any-return]

    return poll(fetch, lambda t: t["task_status"] in ("succeed", "failed"))


def claims_of(authorization: str) -> dict[str, Any]:
    token = authorization.removeprefix("Bearer ")
    payload = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def test_text2video_succeeds_with_a_playable_video_charged_by_mode_and_duration(
    gw: GatewayHarness, kling_sim: ServerThread
) -> None:
    client = new_client(gw, "kling-video")
    before = books(gw, client.account_id)
    with client.http() as http:
        body = {"model_name": "kling-v1-6", "prompt": "a red fox in snow", "duration": "5", "mode": "std"}
        task_id = submit(http, "videos/text2video", body)
        assert task_id.startswith("kling_")
        upstream = task_row(gw, task_id).upstream_id
        task = fetch_until_done(http, "videos/text2video", task_id)
        assert upstream.split(":")[-1] not in str(task)
    assert task["task_status"] == "succeed" and task["task_id"] == task_id
    video = task["task_result"]["videos"][0]
    assert video["duration"] == "5"
    data = httpx.get(video["url"], timeout=10).content
    with av.open(io.BytesIO(data)) as container:
        assert len(list(container.decode(video=0))) == 125  # 5 s at 25 fps, every frame decodes
    after = books(gw, client.account_id)
    assert after["entries"][task_id] == [-STD_5S_MICROS]
    assert before["balance"] - after["balance"] == STD_5S_MICROS
    # Every upstream call carried a fresh JWT for the access key, never the secret itself.
    calls = [r for r in upstream_requests(kling_sim, "/v1/videos/text2video") if r.method in ("POST", "GET")]
    assert calls
    for call in calls:
        assert SECRET not in str(call.headers)
        claims = claims_of(call.headers["authorization"])
        assert claims["iss"] == ACCESS and claims["nbf"] < time.time() < claims["exp"]


def test_images_are_counted_and_a_task_answers_only_on_its_own_path(gw: GatewayHarness) -> None:
    client = new_client(gw, "kling-images")
    with client.http() as http:
        task_id = submit(http, "images/generations", {"prompt": "a lighthouse", "n": 2, "aspect_ratio": "1:1"})
        task = fetch_until_done(http, "images/generations", task_id)
        images = task["task_result"]["images"]
        assert [i["index"] for i in images] == [0, 1]
        assert httpx.get(images[1]["url"], timeout=10).content.startswith(b"\x89PNG\r\n\x1a\n")
        elsewhere = http.get(f"/kling/v1/videos/text2video/{task_id}")
        assert elsewhere.status_code == 404 and elsewhere.json()["code"] == 1203

        try_on = submit(
            http, "images/kolors-virtual-try-on", {"human_image": "https://x.test/h.png", "cloth_image": "c.png"}
        )
        assert len(fetch_until_done(http, "images/kolors-virtual-try-on", try_on)["task_result"]["images"]) == 1
    entries = books(gw, client.account_id)["entries"]
    assert entries[task_id] == [-2 * IMAGE_MICROS]
    assert entries[try_on] == [-TRY_ON_MICROS]


def test_unified_submit_and_wait_agree_with_the_kling_route(gw: GatewayHarness) -> None:
    client = new_client(gw, "kling-unified")
    with client.http() as http:
        answer = http.post(
            "/task/submit", json={"model": "kling-v1-6", "prompt": "waves", "config": {"duration": 5, "mode": "pro"}}
        )
        assert answer.status_code == 200, answer.text
        task_id = answer.json()["task_id"]
        started = time.monotonic()
        unified = http.get(f"/task/{task_id}", params={"wait": 5}).json()
        assert unified["status"] == "SUCCESS" and time.monotonic() - started < 4
        vendor = http.get(f"/kling/v1/videos/text2video/{task_id}").json()["data"]
        assert vendor["task_status"] == "succeed"
        assert unified["task_result"]["videos"][0]["url"] == vendor["task_result"]["videos"][0]["url"]
        assert unified["task_result"]["videos"][0]["duration"] == 5
    assert books(gw, client.account_id)["entries"][task_id] == [-PRO_5S_MICROS]


def test_failed_task_refunded_once_and_refusals_not_billed(gw: GatewayHarness) -> None:
    client = new_client(gw, "kling-fail")
    other = new_client(gw, "kling-other")
    before = books(gw, client.account_id)
    with client.http() as http, other.http() as stranger:
        failed = submit(http, "videos/text2video", {"model_name": "kling-v1-6", "prompt": "x [sim fail=1]"})
        task = fetch_until_done(http, "videos/text2video", failed)
        assert task["task_status"] == "failed" and task["task_status_msg"] and "task_result" not in task
        time.sleep(0.2)
        assert stranger.get(f"/kling/v1/videos/text2video/{failed}").status_code == 404

        bad = http.post(
            "/kling/v1/videos/text2video", json={"model_name": "kling-v1-6", "prompt": "x", "duration": "7"}
        )
        assert bad.status_code == 400 and bad.json()["code"] == 1201
        refused = http.post(
            "/kling/v1/videos/text2video", json={"model_name": "kling-v1-6", "prompt": "x [sim fault=400]"}
        )
        assert refused.status_code == 400 and refused.json()["code"] != 0
        unknown = http.post("/kling/v1/videos/text2video", json={"model_name": "kling-v9", "prompt": "x"})
        assert unknown.status_code == 404 or unknown.status_code == 400
    after = books(gw, client.account_id)
    assert after["entries"] == {failed: [-STD_5S_MICROS, STD_5S_MICROS]}
    assert after["balance"] == before["balance"]


def test_callback_url_becomes_the_gateways_signed_webhook(gw: GatewayHarness, kling_sim: ServerThread) -> None:
    client = new_client(gw, "kling-hook")
    receiver = HookReceiver()
    try:
        with client.http() as http:
            body = {"model_name": "kling-v1-6", "prompt": "a kite", "callback_url": receiver.url}
            task_id = submit(http, "videos/text2video", body)
            hooked = receiver.delivered(task_id)
        assert hooked["code"] == 0 and hooked["data"]["task_id"] == task_id
        assert hooked["data"]["task_status"] == "succeed" and hooked["data"]["task_result"]["videos"]
        sent = upstream_requests(kling_sim, "/v1/videos/text2video")
        assert all(receiver.url.encode() not in r.body for r in sent)  # Kling itself never calls the client
    finally:
        receiver.server.stop()


def test_the_gateways_jwt_is_what_kling_accepts_and_only_for_its_lifetime() -> None:
    token = kling_jwt(ACCESS, SECRET, now=1_000_000)
    assert check_jwt(token, {ACCESS: SECRET}, now=1_000_000) == (0, "")
    assert check_jwt(token, {ACCESS: "another-secret"}, now=1_000_000)[0] == 1000
    assert check_jwt(token, {ACCESS: SECRET}, now=1_000_000 + 1_800)[0] == 1004  # 30 minutes, as Kling's docs
    assert check_jwt(token, {ACCESS: SECRET}, now=1_000_000 - 10)[0] == 1003  # valid from 5 s before signing
    assert claims_of(token)["iss"] == ACCESS and SECRET not in token


def test_the_openai_style_video_route_serves_kling_models_on_the_kling_channel(gw: GatewayHarness) -> None:
    client = new_client(gw, "kling-openai-video")
    with client.http() as http:
        answer = http.post("/v1/video/generations", json={"model": "kling-v1-6", "prompt": "a comet", "duration": 10})
        assert answer.status_code == 200, answer.text
        task_id = answer.json()["task_id"]
        done = poll(lambda: http.get(f"/v1/video/generations/{task_id}").json(), lambda t: t["status"] == "succeeded")
        assert done["url"] and done["metadata"]["duration"] == 10
        assert httpx.get(done["url"], timeout=10).content[4:8] == b"ftyp"
        assert http.get(f"/kling/v1/videos/text2video/{task_id}").json()["data"]["task_status"] == "succeed"
    assert books(gw, client.account_id)["entries"][task_id] == [-2 * STD_5S_MICROS]  # std/10s: 0.28
