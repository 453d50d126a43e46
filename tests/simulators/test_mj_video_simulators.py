"""The midjourney-proxy and generic video simulators on their own: auth, lifecycle, files, refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.tasks.lifecycle import TaskKnobs
from omnirelay.simulators.tasks.midjourney import create_midjourney_simulator
from omnirelay.simulators.tasks.video import create_video_simulator
from tests.harness import ServerThread

KEY = "sim-key-123"


@pytest.fixture(scope="module")
def mj() -> Iterator[httpx.Client]:
    server = ServerThread(
        create_midjourney_simulator(SimulatorState(api_keys=frozenset({KEY})), TaskKnobs(duration=0.6, queue=0.2))
    ).start()
    with httpx.Client(base_url=server.url, headers={"mj-api-secret": KEY}, timeout=10) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module")
def video() -> Iterator[httpx.Client]:
    server = ServerThread(
        create_video_simulator(SimulatorState(api_keys=frozenset({KEY})), TaskKnobs(duration=0.6, queue=0.2))
    ).start()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as client:
        yield client
    server.stop()


def test_mj_checks_the_secret(mj: httpx.Client) -> None:
    answer = httpx.post(str(mj.base_url) + "/mj/submit/imagine", json={"prompt": "x"}, headers={"mj-api-secret": "no"})
    assert answer.status_code == 401 and answer.json()["code"] == 4


def test_mj_imagine_lifecycle_and_png(mj: httpx.Client) -> None:
    submitted = mj.post("/mj/submit/imagine", json={"prompt": "a fox", "state": "s1"}).json()
    assert submitted["code"] == 1 and submitted["result"].isdigit() and len(submitted["result"]) == 16
    task_id = submitted["result"]
    first = mj.get(f"/mj/task/{task_id}/fetch").json()
    assert first["status"] in ("NOT_START", "SUBMITTED") and first["progress"] == "0%" and first["imageUrl"] == ""
    progress = []
    while True:
        task = mj.get(f"/mj/task/{task_id}/fetch").json()
        if task["status"] == "IN_PROGRESS":
            progress.append(int(task["progress"].rstrip("%")))
        if task["status"] == "SUCCESS":
            break
        time.sleep(0.05)
    assert progress == sorted(progress) and progress[-1] > progress[0]
    assert task["state"] == "s1" and task["action"] == "IMAGINE" and len(task["buttons"]) == 9
    assert httpx.get(task["imageUrl"]).content.startswith(b"\x89PNG")
    listed = mj.post("/mj/task/list-by-condition", json={"ids": [task_id, "0"]}).json()
    assert [t["id"] for t in listed] == [task_id]


def test_mj_refusals(mj: httpx.Client) -> None:
    banned = mj.post("/mj/submit/imagine", json={"prompt": "a forbidden thing"}).json()
    assert banned["code"] == 24 and banned["properties"]["bannedWord"] == "forbidden"
    pending = mj.post("/mj/submit/imagine", json={"prompt": "slow [sim duration=5]"}).json()["result"]
    early = mj.post("/mj/submit/change", json={"action": "UPSCALE", "index": 1, "taskId": pending}).json()
    assert early["code"] == 4
    assert mj.get("/mj/task/404/fetch").status_code == 404


def test_video_auth_lifecycle_and_mp4(video: httpx.Client) -> None:
    denied = httpx.post(str(video.base_url) + "/v1/video/generations", json={"model": "m", "prompt": "x"})
    assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
    submitted = video.post("/v1/video/generations", json={"model": "gen4_turbo", "prompt": "sea", "duration": 2})
    assert submitted.json()["status"] == "queued"
    task_id = submitted.json()["task_id"]
    while (task := video.get(f"/v1/video/generations/{task_id}").json())["status"] != "succeeded":
        assert task["status"] in ("queued", "processing") and task["url"] is None
        time.sleep(0.05)
    assert task["metadata"]["duration"] == 2 and task["error"] is None
    data = httpx.get(task["url"]).content
    assert data[4:8] == b"ftyp" and b"moov" in data and b"mdat" in data
    failed = video.post("/v1/video/generations", json={"model": "m", "prompt": "[sim fail=1 duration=0] x"}).json()
    after = video.get(f"/v1/video/generations/{failed['task_id']}").json()
    assert after["status"] == "failed" and after["error"]["message"] and after["url"] is None
    assert video.post("/v1/video/generations", json={"prompt": "no model"}).status_code == 400
