"""The generic video route ``/v1/video/generations`` (Runway, Luma, Veo... by model name), and MJ video through it."""

from __future__ import annotations

import struct
import time
import uuid
from typing import Any

import httpx

from tests.conftest import GatewayHarness
from tests.harness import ServerThread
from tests.tasks.conftest import books, new_client, sim_requests, task_row

GEN4_PER_SECOND = 50_000  # gen4_turbo: 0.05 per second


def boxes(data: bytes) -> list[bytes]:
    """Top-level MP4 box types."""
    found, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        found.append(kind)
        assert size >= 8
        offset += size
    assert offset == len(data)
    return found


def submit(http: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = http.post("/v1/video/generations", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def until_done(http: httpx.Client, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = http.get(f"/v1/video/generations/{task_id}").json()
        if task["status"] in ("succeeded", "failed"):
            return task  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, task
        time.sleep(0.03)


def test_runway_video_succeeds_with_an_mp4_and_is_priced_by_seconds(
    gw: GatewayHarness, video_sim: ServerThread
) -> None:
    client = new_client(gw, "video-ok")
    with client.http() as http:
        prompt = f"waves at dusk {uuid.uuid4()}"  # the simulator outlives this module: find our own request
        submitted = submit(http, model="gen4_turbo", prompt=prompt, duration=5, width=320, height=240)
        assert submitted["status"] == "queued" and submitted["task_id"].startswith("video_")
        task = until_done(http, submitted["task_id"])
        assert task["status"] == "succeeded" and task["error"] is None and task["format"] == "mp4"
        assert task["metadata"]["duration"] == 5 and task["metadata"]["width"] == 320
        video = httpx.get(task["url"], timeout=10)
        assert video.headers["content-type"] == "video/mp4"
        kinds = boxes(video.content)
        assert kinds[0] == b"ftyp" and b"moov" in kinds and b"mdat" in kinds
    assert books(gw, client.account_id)["entries"][submitted["task_id"]] == [-5 * GEN4_PER_SECOND]
    sent = [r for r in sim_requests(video_sim) if r.path == "/v1/video/generations" and prompt.encode() in r.body]
    assert len(sent) == 1 and sent[0].headers["authorization"].startswith("Bearer sk-video-upstream")


def test_real_duration_reprices_the_charge(gw: GatewayHarness) -> None:
    client = new_client(gw, "video-reprice")
    with client.http() as http:
        submitted = submit(http, model="gen4_turbo", prompt="short clip [sim length=3]", duration=5)
        task = until_done(http, submitted["task_id"])
        assert task["status"] == "succeeded" and task["metadata"]["duration"] == 3
    entries = books(gw, client.account_id)["entries"][submitted["task_id"]]
    assert entries == [-5 * GEN4_PER_SECOND, 2 * GEN4_PER_SECOND]  # charged 5 s, made 3 s: 2 s given back
    assert task_row(gw, submitted["task_id"]).cost_micros == 3 * GEN4_PER_SECOND


def test_per_task_model_uses_resolution_and_duration_keys(gw: GatewayHarness) -> None:
    client = new_client(gw, "video-luma")
    with client.http() as http:
        submitted = submit(http, model="ray-2", prompt="a comet", duration=5, resolution="720p")
        assert until_done(http, submitted["task_id"])["status"] == "succeeded"
    assert books(gw, client.account_id)["entries"][submitted["task_id"]] == [-1_000_000]  # ray-2 720p/5s: 1.00


def test_failed_video_is_refunded_and_rejected_submit_not_billed(gw: GatewayHarness) -> None:
    client = new_client(gw, "video-fail")
    with client.http() as http:
        failed = submit(http, model="veo-3.0-generate-001", prompt="[sim fail=1] a storm", duration=4)
        task = until_done(http, failed["task_id"])
        assert task["status"] == "failed" and task["error"]["message"] and task["url"] is None
        refused = http.post("/v1/video/generations", json={"model": "gen4_turbo", "prompt": "x [sim fault=400]"})
        assert refused.status_code == 400 and refused.json()["error"]["message"]
        missing = http.post("/v1/video/generations", json={"model": "gen4_turbo"})
        assert missing.status_code == 400 and "prompt" in missing.json()["error"]["message"]
        unknown = http.post("/v1/video/generations", json={"model": "no-such-video", "prompt": "x"})
        assert unknown.status_code == 404
    entries = books(gw, client.account_id)["entries"]
    assert entries == {failed["task_id"]: [-1_600_000, 1_600_000]}  # veo-3.0: 0.40 x 4 s, then refunded
    assert books(gw, client.account_id)["debits"] == 0


def test_mj_video_by_model_name_and_the_unified_api(gw: GatewayHarness, mj_sim: ServerThread) -> None:
    client = new_client(gw, "video-mj")
    with client.http() as http:
        submitted = submit(http, model="mj_video", prompt="a dancing robot")
        task = until_done(http, submitted["task_id"])
        assert task["status"] == "succeeded"
        assert boxes(httpx.get(task["url"]).content)[0] == b"ftyp"
        unified = http.get(f"/task/{submitted['task_id']}").json()
        assert unified["status"] == "SUCCESS" and unified["task_result"]["videos"][0]["url"] == task["url"]
        # The unified submit, then one synchronous call.
        made = http.post("/task/submit", json={"model": "gen4_turbo", "prompt": "rain", "config": {"duration": 2}})
        assert made.status_code == 200, made.text
        body = made.json()
        assert body["status"] == "SUBMITTED" and body["progress"] == "0%" and body["results"] == {}
        assert isinstance(body["created_at"], int) and isinstance(body["updated_at"], int)
        done = http.get(f"/task/{body['task_id']}", params={"wait": 8}).json()
        assert done["status"] == "SUCCESS" and done["task_result"]["videos"][0]["content_type"] == "video/mp4"
        assert done["task_result"]["videos"][0]["duration"] == 2 and done["err_reason"] is None
        assert http.get(f"/v1/video/generations/{body['task_id']}").json()["status"] == "succeeded"
    assert any(r.path == "/mj/submit/video" and b"dancing robot" in r.body for r in sim_requests(mj_sim))
    entries = books(gw, client.account_id)["entries"]
    assert entries[submitted["task_id"]] == [-800_000] and entries[body["task_id"]] == [-2 * GEN4_PER_SECOND]


def test_chat_call_on_a_task_model_is_a_clear_400(gw: GatewayHarness) -> None:
    import openai

    client = new_client(gw, "video-chat")
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=client.key, max_retries=0)
    try:
        sdk.chat.completions.create(model="gen4_turbo", messages=[{"role": "user", "content": "hi"}])
    except openai.BadRequestError as exc:
        assert "task model" in str(exc) and "/v1/video/generations" in str(exc)
    else:
        raise AssertionError("a chat call to a video model must be refused")
    assert books(gw, client.account_id)["entries"] == {}
