"""Suno through the gateway's ``/suno`` routes (suno-api shape), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import httpx

from omnirelay.simulators.tasks.suno import create_suno_simulator
from tests.conftest import GatewayHarness
from tests.harness import ServerThread
from tests.tasks.conftest import books, new_client, sim_fixture, task_row
from tests.tasks.vendor_gateway import HookReceiver, poll, upstream_requests, vendor_gateway_fixture

SUNO_KEY = "suno-upstream-key-0123456789"
MUSIC_MICROS = 100_000  # suno_music "default": 0.10
LYRICS_MICROS = 10_000


suno_sim = sim_fixture(create_suno_simulator, SUNO_KEY)
gw = vendor_gateway_fixture("suno", "suno_sim", SUNO_KEY, ["suno_music", "suno_lyrics"])


def submit(http: httpx.Client, action: str, body: dict[str, Any]) -> str:
    answer = http.post(f"/suno/submit/{action}", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["code"] == "success" and data["message"] == ""
    return str(data["data"])


def fetch_until_done(http: httpx.Client, task_id: str) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        answer = http.get(f"/suno/fetch/{task_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]  # type: ignore[no-any-return]

    return poll(fetch, lambda t: t["status"] in ("SUCCESS", "FAILURE"))


def test_music_succeeds_with_two_playable_clips_and_is_charged_once(gw: GatewayHarness, suno_sim: ServerThread) -> None:
    client = new_client(gw, "suno-music")
    before = books(gw, client.account_id)
    with client.http() as http:
        task_id = submit(http, "music", {"gpt_description_prompt": "a calm song about rain", "mv": "chirp-v3-5"})
        assert task_id.startswith("suno_")
        upstream_id = task_row(gw, task_id).upstream_id
        assert upstream_id != task_id
        task = fetch_until_done(http, task_id)
        assert upstream_id not in str(task) and SUNO_KEY not in str(task)
    assert task["status"] == "SUCCESS" and task["progress"] == "100%" and task["action"] == "MUSIC"
    assert task["task_id"] == task_id and task["finish_time"] >= task["submit_time"]
    assert {seen["status"] for seen in task["_seen"]} >= {"SUCCESS"}
    clips = task["data"]
    assert len(clips) == 2
    for clip in clips:
        assert clip["status"] == "complete" and clip["metadata"]["duration"] == 2.0
        audio = httpx.get(clip["audio_url"], timeout=10)
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
        assert audio.content[:2] == b"\xff\xfb"  # an MPEG-1 Layer III frame header
        assert httpx.get(clip["image_url"], timeout=10).content[:2] == b"\xff\xd8"
        assert httpx.get(clip["video_url"], timeout=10).content[4:8] == b"ftyp"
    after = books(gw, client.account_id)
    assert after["entries"][task_id] == [-MUSIC_MICROS]
    assert before["balance"] - after["balance"] == MUSIC_MICROS
    # The poller asked Suno in batches, by the upstream id, with the channel's key.
    batches = [r for r in upstream_requests(suno_sim, "/suno/fetch") if upstream_id.encode() in r.body]
    assert batches and all(r.headers["authorization"] == f"Bearer {SUNO_KEY}" for r in batches)


def test_unified_get_agrees_and_batch_fetch_lists_only_own_tasks(gw: GatewayHarness) -> None:
    client = new_client(gw, "suno-unified")
    other = new_client(gw, "suno-other")
    with client.http() as http, other.http() as stranger:
        music = submit(http, "music", {"prompt": "[Verse] la la la", "title": "Rainy", "tags": "lofi"})
        lyrics = submit(http, "lyrics", {"prompt": "a song about tea"})
        theirs = submit(stranger, "lyrics", {"prompt": "mine"})
        unified = http.get(f"/task/{music}", params={"wait": 5}).json()
        assert unified["status"] == "SUCCESS" and len(unified["task_result"]["audio"]) == 2
        vendor_view = fetch_until_done(http, music)
        assert [a["url"] for a in unified["task_result"]["audio"]] == [c["audio_url"] for c in vendor_view["data"]]
        assert [c["title"] for c in vendor_view["data"]] == ["Rainy", "Rainy"]

        fetch_until_done(http, lyrics)
        listed = http.post("/suno/fetch", json={"ids": [music, lyrics, theirs, "suno_nope"]}).json()
        assert listed["code"] == "success"
        assert sorted(t["task_id"] for t in listed["data"]) == sorted([music, lyrics])
        words = next(t for t in listed["data"] if t["task_id"] == lyrics)
        assert words["action"] == "LYRICS" and "[Verse]" in words["data"]["text"]
        assert http.get(f"/task/{lyrics}").json()["task_result"]["text"] == words["data"]["text"]

        missing = http.get(f"/suno/fetch/{theirs}")
        assert missing.status_code == 404 and missing.json()["code"] == "task_not_exist"
    entries = books(gw, client.account_id)["entries"]
    assert entries[music] == [-MUSIC_MICROS] and entries[lyrics] == [-LYRICS_MICROS]


def test_continuation_goes_to_the_parent_upstream_task(gw: GatewayHarness, suno_sim: ServerThread) -> None:
    client = new_client(gw, "suno-extend")
    with client.http() as http:
        first = submit(http, "music", {"gpt_description_prompt": "a march [sim duration=0.1]"})
        clip = fetch_until_done(http, first)["data"][0]["id"]
        extended = submit(
            http,
            "music",
            {"prompt": "more", "task": "extend", "task_id": first, "continue_clip_id": clip, "continue_at": 1.5},
        )
        assert fetch_until_done(http, extended)["status"] == "SUCCESS"
        sent = [r for r in upstream_requests(suno_sim, "/suno/submit/music") if clip.encode() in r.body]
        assert len(sent) == 1 and task_row(gw, first).upstream_id.encode() in sent[0].body
        assert first.encode() not in sent[0].body  # the gateway's id never goes upstream

        unknown = http.post(
            "/suno/submit/music", json={"task": "extend", "task_id": "suno_nope", "continue_clip_id": "x"}
        )
        assert unknown.status_code == 404 and unknown.json()["data"] is None


def test_failed_task_refunded_once_and_refused_submits_not_billed(gw: GatewayHarness) -> None:
    client = new_client(gw, "suno-fail")
    before = books(gw, client.account_id)
    with client.http() as http:
        failed = submit(http, "music", {"gpt_description_prompt": 'x [sim fail=1 fail_reason="no voice today"]'})
        task = fetch_until_done(http, failed)
        assert task["status"] == "FAILURE" and task["fail_reason"] == "no voice today"
        assert all(c["audio_url"] == "" for c in task["data"])
        time.sleep(0.2)  # more poller ticks: nothing more may move

        invalid = http.post("/suno/submit/music", json={"mv": "chirp-v3-5"})
        assert invalid.status_code == 400 and invalid.json()["code"] == "invalid_request"
        refused = http.post("/suno/submit/music", json={"prompt": "x [sim fault=400]"})
        assert refused.status_code == 400 and refused.json()["data"] is None
        wrong = http.post("/suno/submit/dance", json={"prompt": "x"})
        assert wrong.status_code == 400 and "invalid_action" in wrong.json()["message"]
    after = books(gw, client.account_id)
    assert after["entries"] == {failed: [-MUSIC_MICROS, MUSIC_MICROS]}
    assert after["balance"] == before["balance"]
    assert task_row(gw, failed).billing == "refunded"

    anonymous = httpx.post(f"{gw.server.url}/suno/submit/music", json={"prompt": "x"})
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized"


def test_notify_hook_gets_the_suno_shaped_task(gw: GatewayHarness, suno_sim: ServerThread) -> None:
    client = new_client(gw, "suno-hook")
    receiver = HookReceiver()
    try:
        with client.http() as http:
            task_id = submit(http, "lyrics", {"prompt": "a song about bread", "notify_hook": receiver.url})
            hooked = receiver.delivered(task_id)
        assert hooked["code"] == "success" and hooked["data"]["task_id"] == task_id
        assert hooked["data"]["status"] == "SUCCESS" and hooked["data"]["data"]["text"]
        sent = upstream_requests(suno_sim, "/suno/submit/lyrics")
        assert all(receiver.url.encode() not in r.body for r in sent)
    finally:
        receiver.server.stop()
