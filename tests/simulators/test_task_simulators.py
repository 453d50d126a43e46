"""The task-vendor simulators (Suno, Kling, Replicate, FAL) over real sockets: lifecycle, auth, failure, and result
files that real decoders accept. Replicate and FAL are driven by their official SDKs as well as by plain HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import av
import fal_client
import httpx
import orjson
import pytest
import replicate

from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.tasks.fal import create_fal_simulator
from omnirelay.simulators.tasks.kling import create_kling_simulator
from omnirelay.simulators.tasks.lifecycle import TaskKnobs
from omnirelay.simulators.tasks.replicate import create_replicate_simulator
from omnirelay.simulators.tasks.suno import create_suno_simulator
from tests.harness import ServerThread, free_port

KEY = "sim-task-key"
ACCESS, SECRET = "ak-test", "sk-test-secret"


def _serve(app: Any) -> Iterator[ServerThread]:
    server = ServerThread(app).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def suno() -> Iterator[ServerThread]:
    yield from _serve(create_suno_simulator(SimulatorState(api_keys=frozenset({KEY})), TaskKnobs(length=2.0)))


@pytest.fixture(scope="module")
def kling() -> Iterator[ServerThread]:
    state = SimulatorState(api_keys=frozenset({f"{ACCESS}|{SECRET}"}))
    yield from _serve(create_kling_simulator(state, TaskKnobs(duration=0.3)))


@pytest.fixture(scope="module")
def replicate_sim() -> Iterator[ServerThread]:
    yield from _serve(create_replicate_simulator(SimulatorState(api_keys=frozenset({KEY}))))


@pytest.fixture(scope="module")
def fal() -> Iterator[ServerThread]:
    yield from _serve(create_fal_simulator(SimulatorState(api_keys=frozenset({KEY}))))


def wait_until(fetch: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], limit: float = 5) -> dict:
    deadline = time.monotonic() + limit
    while True:
        current = fetch()
        if done(current) or time.monotonic() > deadline:
            return current
        time.sleep(0.03)


# --- media checks: what a client that downloads a result would verify -----------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat = b""
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    assert len(zlib.decompress(idat)) == height * (1 + width * 3)  # RGB rows, one filter byte each
    return width, height


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    sof = data.index(b"\xff\xc0")
    height, width = struct.unpack(">HH", data[sof + 5 : sof + 9])
    return width, height


def decoded_seconds(data: bytes, kind: str) -> float:
    """Decode every frame with FFmpeg (PyAV); the length in seconds."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0] if kind == "audio" else container.streams.video[0]
        frames = list(container.decode(stream))
        assert frames
        if kind == "audio":
            return sum(f.samples for f in frames) / frames[0].sample_rate
        return float(container.duration or 0) / 1_000_000


# --- Suno -----------------------------------------------------------------------------------------------------------


def suno_client(sim: ServerThread, key: str = KEY) -> httpx.Client:
    return httpx.Client(base_url=sim.url, headers={"authorization": f"Bearer {key}"}, timeout=10)


def test_suno_music_goes_queued_then_in_progress_then_success_with_two_playable_clips(suno: ServerThread) -> None:
    with suno_client(suno) as http:
        submitted = http.post(
            "/suno/submit/music",
            json={"gpt_description_prompt": "a calm song about rain [sim duration=0.6]", "mv": "chirp-v3-5"},
        )
        assert submitted.status_code == 200
        answer = submitted.json()
        assert answer["code"] == "success" and answer["message"] == ""
        task_id = answer["data"]

        first = http.get(f"/suno/fetch/{task_id}").json()["data"]
        assert first["status"] in {"SUBMITTED", "QUEUED"} and first["progress"] == "0%" and first["data"] == []
        assert first["action"] == "MUSIC" and first["task_id"] == task_id

        def fetch() -> dict[str, Any]:
            return http.get(f"/suno/fetch/{task_id}").json()["data"]

        running = wait_until(fetch, lambda t: t["status"] == "IN_PROGRESS")
        assert 0 < int(running["progress"].rstrip("%")) < 100
        assert [c["status"] for c in running["data"]] == ["streaming", "streaming"]
        assert running["data"][0]["audio_url"] == ""

        done = wait_until(fetch, lambda t: t["status"] == "SUCCESS")
        assert done["status"] == "SUCCESS" and done["progress"] == "100%"
        assert done["finish_time"] >= done["start_time"] >= done["submit_time"] > 0
        clips = done["data"]
        assert len(clips) == 2 and len({c["id"] for c in clips}) == 2
        for clip in clips:
            assert clip["status"] == "complete" and clip["model_name"] == "chirp-v3-5"
            assert clip["metadata"]["duration"] == 2.0
            audio = httpx.get(clip["audio_url"])
            assert audio.headers["content-type"] == "audio/mpeg"
            assert decoded_seconds(audio.content, "audio") == pytest.approx(2.0, abs=0.1)
            assert jpeg_size(httpx.get(clip["image_url"]).content) == (400, 400)
            assert decoded_seconds(httpx.get(clip["video_url"]).content, "video") == pytest.approx(2.0, abs=0.05)
        assert httpx.get(clips[0]["audio_url"]).content != httpx.get(clips[1]["audio_url"]).content


def test_suno_batch_fetch_lyrics_and_continuation(suno: ServerThread) -> None:
    with suno_client(suno) as http:
        music = http.post("/suno/submit/music", json={"prompt": "[Verse] la la [sim duration=0]", "title": "T"})
        lyrics = http.post("/suno/submit/lyrics", json={"prompt": "a song about tea [sim duration=0]"})
        music_id, lyrics_id = music.json()["data"], lyrics.json()["data"]

        both = http.post("/suno/fetch", json={"ids": [music_id, lyrics_id, "no-such-task"]}).json()
        assert both["code"] == "success"
        assert sorted(t["task_id"] for t in both["data"]) == sorted([music_id, lyrics_id])
        only_lyrics = http.post("/suno/fetch", json={"ids": [music_id, lyrics_id], "action": "LYRICS"}).json()["data"]
        assert [t["task_id"] for t in only_lyrics] == [lyrics_id]
        text = only_lyrics[0]["data"]
        assert text["status"] == "complete" and "[Verse]" in text["text"] and text["title"]

        clip = http.get(f"/suno/fetch/{music_id}").json()["data"]["data"][0]
        assert clip["title"] == "T"
        extend = http.post(
            "/suno/submit/music",
            json={
                "prompt": "more",
                "task": "extend",
                "task_id": music_id,
                "continue_clip_id": clip["id"],
                "continue_at": 1,
            },
        )
        assert extend.json()["code"] == "success"
        bad = http.post("/suno/submit/music", json={"task": "extend", "continue_clip_id": "nope", "prompt": "x"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"


def test_suno_failure_errors_and_auth(suno: ServerThread) -> None:
    with suno_client(suno) as http:
        failed_id = http.post("/suno/submit/music", json={"prompt": "x [sim duration=0.05 fail=1]"}).json()["data"]
        time.sleep(0.1)
        failed = http.get(f"/suno/fetch/{failed_id}").json()["data"]
        assert failed["status"] == "FAILURE" and failed["fail_reason"]
        assert all(c["audio_url"] == "" and c["status"] == "error" for c in failed["data"])

        empty = http.post("/suno/submit/music", json={"mv": "chirp-v3-5"})
        assert empty.status_code == 400 and empty.json()["data"] is None
        missing = http.get("/suno/fetch/does-not-exist")
        assert missing.status_code == 404 and missing.json()["code"] == "task_not_exist"
        throttled = http.post("/suno/submit/music", json={"prompt": "x [sim fault=429]"})
        assert throttled.status_code == 429 and throttled.json()["code"] == "too_many_requests"

    with suno_client(suno, "wrong-key") as http:
        refused = http.post("/suno/submit/music", json={"prompt": "x"})
        assert refused.status_code == 401 and refused.json() == {
            "code": "unauthorized",
            "message": "Invalid API key.",
            "data": None,
        }


# --- Kling ----------------------------------------------------------------------------------------------------------


def kling_token(access: str = ACCESS, secret: str = SECRET, exp_in: float = 1800, nbf_in: float = -5) -> str:
    """HS256 JWT exactly as Kling's docs build it (written out here, independently of the gateway's signer)."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    now = int(time.time())
    signing = (
        part({"alg": "HS256", "typ": "JWT"}) + "." + part({"iss": access, "exp": now + exp_in, "nbf": now + nbf_in})
    )
    signature = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def kling_client(sim: ServerThread, token: str | None = None) -> httpx.Client:
    headers = {"authorization": f"Bearer {token or kling_token()}"}
    return httpx.Client(base_url=sim.url, headers=headers, timeout=10)


def test_kling_text2video_lifecycle_and_a_playable_video(kling: ServerThread) -> None:
    with kling_client(kling) as http:
        body = {"model_name": "kling-v1", "prompt": "a red fox [sim duration=0.4]", "duration": "5", "mode": "std"}
        submitted = http.post("/v1/videos/text2video", json=body).json()
        assert submitted["code"] == 0 and submitted["message"] == "SUCCEED" and submitted["request_id"]
        task = submitted["data"]
        assert task["task_status"] == "submitted" and task["task_id"].isdigit()

        def fetch() -> dict[str, Any]:
            return http.get(f"/v1/videos/text2video/{task['task_id']}").json()["data"]

        assert wait_until(fetch, lambda t: t["task_status"] != "submitted")["task_status"] == "processing"
        done = wait_until(fetch, lambda t: t["task_status"] == "succeed")
        assert done["task_status"] == "succeed" and done["updated_at"] >= done["created_at"]
        video = done["task_result"]["videos"][0]
        assert video["duration"] == "5"
        data = httpx.get(video["url"]).content
        assert decoded_seconds(data, "video") == pytest.approx(5.0, abs=0.05)
        with av.open(io.BytesIO(data)) as container:
            assert (container.streams.video[0].width, container.streams.video[0].height) == (640, 360)

        other_kind = http.get(f"/v1/videos/image2video/{task['task_id']}")
        assert other_kind.status_code == 404 and other_kind.json()["code"] == 1203
        listed = http.get("/v1/videos/text2video", params={"pageNum": 1, "pageSize": 10}).json()["data"]
        assert task["task_id"] in [t["task_id"] for t in listed]


def test_kling_images_try_on_and_validation(kling: ServerThread) -> None:
    with kling_client(kling) as http:
        body = {"prompt": "a lighthouse [sim duration=0]", "n": 2, "aspect_ratio": "16:9"}
        task_id = http.post("/v1/images/generations", json=body).json()["data"]["task_id"]
        done = http.get(f"/v1/images/generations/{task_id}").json()["data"]
        images = done["task_result"]["images"]
        assert [i["index"] for i in images] == [0, 1] and done["final_unit_deduction"] == "2"
        assert png_size(httpx.get(images[0]["url"]).content) == (1024, 576)

        try_on = http.post(
            "/v1/images/kolors-virtual-try-on",
            json={"model_name": "kolors-virtual-try-on-v1", "human_image": "https://x/h.png", "cloth_image": "c"},
        ).json()["data"]
        fetched = wait_until(
            lambda: http.get(f"/v1/images/kolors-virtual-try-on/{try_on['task_id']}").json()["data"],
            lambda t: t["task_status"] == "succeed",
        )
        assert len(fetched["task_result"]["images"]) == 1

        bad = http.post("/v1/videos/text2video", json={"prompt": "x", "duration": "7"})
        assert bad.status_code == 400 and bad.json()["code"] == 1201 and "duration" in bad.json()["message"]
        assert http.post("/v1/videos/image2video", json={"prompt": "no image"}).json()["code"] == 1201
        failed_id = http.post("/v1/videos/text2video", json={"prompt": "x [sim duration=0 fail=1]"}).json()["data"]
        failed = http.get(f"/v1/videos/text2video/{failed_id['task_id']}").json()["data"]
        assert failed["task_status"] == "failed" and failed["task_status_msg"] and "task_result" not in failed


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("", 1001),
        ("not-a-jwt", 1002),
        (kling_token(secret="wrong"), 1000),
        (kling_token(access="someone-else"), 1000),
        (kling_token(exp_in=-10, nbf_in=-100), 1004),
        (kling_token(nbf_in=600), 1003),
    ],
)
def test_kling_rejects_bad_tokens_with_its_codes(kling: ServerThread, token: str, code: int) -> None:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{kling.url}/v1/videos/text2video", json={"prompt": "x"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == code and response.json()["request_id"]


# --- Replicate ------------------------------------------------------------------------------------------------------


def test_replicate_official_sdk_creates_waits_and_gets_a_png(replicate_sim: ServerThread) -> None:
    client = replicate.Client(api_token=KEY, base_url=replicate_sim.url)
    client.poll_interval = 0.05
    prediction = client.models.predictions.create(
        model="black-forest-labs/flux-pro", input={"prompt": "a cat [sim duration=0.3]", "aspect_ratio": "16:9"}
    )
    assert prediction.status == "starting" and prediction.output is None
    assert prediction.urls["get"] == f"{replicate_sim.url}/v1/predictions/{prediction.id}"
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.error is None
    assert prediction.metrics and prediction.metrics["predict_time"] > 0
    assert prediction.completed_at and prediction.started_at
    assert "100%" in (prediction.logs or "")
    assert png_size(httpx.get(prediction.output).content) == (1024, 576)


def test_replicate_prefer_wait_answers_the_finished_prediction(replicate_sim: ServerThread) -> None:
    started = time.monotonic()
    response = httpx.post(
        f"{replicate_sim.url}/v1/models/google/imagen-4/predictions",
        json={"input": {"prompt": "x [sim duration=0.3]", "output_format": "jpg", "num_outputs": 2}},
        headers={"authorization": f"Bearer {KEY}", "prefer": "wait=5"},
    )
    assert time.monotonic() - started >= 0.25
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "succeeded" and body["model"] == "google/imagen-4"
    assert isinstance(body["output"], list) and len(body["output"]) == 2
    assert jpeg_size(httpx.get(body["output"][1]).content) == (1024, 1024)


def test_replicate_failure_cancel_and_errors(replicate_sim: ServerThread) -> None:
    client = replicate.Client(api_token=KEY, base_url=replicate_sim.url)
    client.poll_interval = 0.05
    failed = client.models.predictions.create(
        model="black-forest-labs/flux-1.1-pro-ultra", input={"prompt": "x [sim duration=0.05 fail=1]"}
    )
    failed.wait()
    assert failed.status == "failed" and failed.error and failed.output is None

    slow = client.models.predictions.create(model="black-forest-labs/flux-pro", input={"prompt": "x [sim duration=5]"})
    slow.cancel()
    slow.reload()
    assert slow.status == "canceled"

    with pytest.raises(replicate.exceptions.ReplicateError) as invalid:
        client.models.predictions.create(model="black-forest-labs/flux-pro", input={"aspect_ratio": "1:1"})
    assert invalid.value.status == 422 and "prompt" in (invalid.value.detail or "")

    unauthenticated = httpx.get(
        f"{replicate_sim.url}/v1/predictions/{failed.id}", headers={"authorization": "Bearer x"}
    )
    assert unauthenticated.status_code == 401
    assert unauthenticated.json() == {
        "title": "Unauthenticated",
        "detail": "You did not pass a valid authentication token",
        "status": 401,
    }
    missing = httpx.get(f"{replicate_sim.url}/v1/predictions/nope", headers={"authorization": f"Bearer {KEY}"})
    assert missing.status_code == 404 and missing.json()["status"] == 404


# --- FAL ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fal_sdk(fal: ServerThread, monkeypatch: pytest.MonkeyPatch) -> fal_client.SyncClient:
    # fal-client builds queue URLs from a module constant (always https://queue.fal.run/); point it at the simulator.
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{fal.url}/")
    return fal_client.SyncClient(key=KEY)


def test_fal_official_sdk_submits_polls_and_gets_images(fal: ServerThread, fal_sdk: fal_client.SyncClient) -> None:
    handle = fal_sdk.submit(
        "fal-ai/flux-pro/kontext", arguments={"prompt": "a boat [sim duration=0.4]", "image_size": "landscape_16_9"}
    )
    assert handle.status_url == f"{fal.url}/fal-ai/flux-pro/requests/{handle.request_id}/status"
    assert isinstance(handle.status(), fal_client.Queued)
    seen = []
    for event in handle.iter_events(with_logs=True, interval=0.03):
        seen.append(type(event).__name__)
    assert seen[0] == "Queued" and "InProgress" in seen and seen[-1] == "Completed"
    result = handle.get()
    image = result["images"][0]
    assert (image["width"], image["height"], image["content_type"]) == (1024, 576, "image/png")
    assert png_size(httpx.get(image["url"]).content) == (1024, 576)
    assert result["has_nsfw_concepts"] == [False] and isinstance(result["seed"], int)


def test_fal_status_codes_failure_video_and_cancel(fal: ServerThread) -> None:
    with httpx.Client(base_url=fal.url, headers={"authorization": f"Key {KEY}"}, timeout=10) as http:
        queued = http.post("/fal-ai/flux/dev", json={"prompt": "x [sim duration=0.3]"}).json()
        status = http.get(f"/fal-ai/flux/requests/{queued['request_id']}/status")
        assert status.status_code == 202 and status.json()["status"] == "IN_QUEUE"
        early = http.get(f"/fal-ai/flux/requests/{queued['request_id']}")
        assert early.status_code == 400 and early.json() == {"detail": "Request is still in progress."}

        failing = http.post("/fal-ai/flux/dev", json={"prompt": "x [sim duration=0 fail=1]"}).json()
        failed = http.get(f"/fal-ai/flux/requests/{failing['request_id']}/status")
        assert failed.status_code == 200 and failed.json()["status"] == "COMPLETED" and failed.json()["error"]
        assert http.get(f"/fal-ai/flux/requests/{failing['request_id']}").status_code == 500

        video = http.post(
            "/fal-ai/kling-video/v2/master/text-to-video", json={"prompt": "waves [sim duration=0]", "duration": "5"}
        ).json()
        clip = http.get(video["response_url"]).json()["video"]
        assert clip["content_type"] == "video/mp4"
        assert decoded_seconds(httpx.get(clip["url"]).content, "video") == pytest.approx(5.0, abs=0.05)

        slow = http.post("/fal-ai/flux/dev", json={"prompt": "x [sim duration=5]"}).json()
        assert http.put(slow["cancel_url"]).json() == {"status": "CANCELLATION_REQUESTED"}
        assert http.put(video["cancel_url"]).status_code == 400

        missing_prompt = http.post("/fal-ai/flux/dev", json={})
        assert missing_prompt.status_code == 422 and missing_prompt.json()["detail"][0]["loc"] == ["body", "prompt"]

    refused = httpx.post(f"{fal.url}/fal-ai/flux/dev", json={"prompt": "x"}, headers={"authorization": "Key wrong"})
    assert refused.status_code == 401 and "detail" in refused.json()


# --- omnirelay simulate ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "path", "auth"),
    [
        ("suno", "/suno/submit/music", "Bearer"),
        ("kling", "/v1/videos/text2video", "Bearer"),
        ("replicate", "/v1/models/black-forest-labs/flux-pro/predictions", "Bearer"),
        ("fal", "/fal-ai/flux/dev", "Key"),
    ],
)
def test_cli_runs_each_simulator_alone(vendor: str, path: str, auth: str) -> None:
    port = free_port()
    command = [sys.executable, "-m", "omnirelay", "simulate", vendor, "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prompt = {"prompt": "a fox [sim duration=0]"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}{path}",
                    json={"input": prompt} if vendor == "replicate" else prompt,
                    headers={"authorization": f"{auth} {kling_token() if vendor == 'kling' else 'any-key'}"},
                )
                break
            except httpx.ConnectError:
                assert process.poll() is None and time.monotonic() < deadline, "simulator did not start"
                time.sleep(0.1)
        assert answer.status_code in (200, 201), answer.text
    finally:
        process.terminate()
        process.wait(timeout=10)
