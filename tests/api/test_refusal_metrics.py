"""``/metrics`` for what never reached an upstream: refusals before a call existed (wrong key, model not allowed or
not served, body too large) and at admission (a rate limit), and asynchronous task submits and finishes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from omnirelay.config import ChannelConfig, Settings
from tests.conftest import UPSTREAM_KEY, GatewayHarness, database_url_for, start_gateway
from tests.harness import ServerThread
from tests.tasks.conftest import MJ_KEY, MJ_MODELS, mj_sim, task_settings, wait_until

__all__ = ["mj_sim"]  # the simulator fixture, used by name

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, openai_sim: ServerThread, mj_sim: ServerThread
) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url_for("sqlite", tmp_path_factory.mktemp("db")),
        max_body_bytes=64 * 1024,
        channels=[
            ChannelConfig(
                name="main",
                base_url=openai_sim.url + "/v1",
                api_keys=[UPSTREAM_KEY],
                models=["gpt-4o-mini", "gpt-4o"],
            ),
            ChannelConfig(name="mj", type="midjourney", base_url=mj_sim.url, api_keys=[MJ_KEY], models=MJ_MODELS),
        ],
        tasks=task_settings(),
    )
    harness = start_gateway(settings)
    harness.keys["any"] = harness.create_key("any-model")
    harness.keys["mini"] = harness.create_key("mini-only", models=["gpt-4o-mini"])
    harness.keys["slow"] = harness.create_key("one-a-minute", rpm=1)
    yield harness
    harness.server.stop()


def scrape(gw: GatewayHarness) -> Samples:
    response = httpx.get(gw.server.url + "/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def sdk(gw: GatewayHarness, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)


def chat(client: openai.OpenAI, model: str = "gpt-4o-mini", text: str = "hello") -> None:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])


def test_refusals_before_a_call_count_by_status(gw: GatewayHarness) -> None:
    before = scrape(gw)
    for _ in range(2):
        with pytest.raises(openai.AuthenticationError):
            chat(sdk(gw, "sk-or-not-a-key"))
    with pytest.raises(openai.PermissionDeniedError):
        chat(sdk(gw, gw.keys["mini"]), model="gpt-4o")
    with pytest.raises(openai.NotFoundError):
        chat(sdk(gw, gw.keys["any"]), model="no-such-model")
    too_big = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gw.keys['any']}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 70_000}]},
    )
    assert too_big.status_code == 413
    chat(sdk(gw, gw.keys["any"]))  # a call that went through: not a refusal
    after = scrape(gw)
    for status, count in (("401", 2), ("403", 1), ("404", 1), ("413", 1)):
        assert delta(before, after, "omnirelay_refusals_total", stage="request", status=status) == count, status
    assert delta(before, after, "omnirelay_refusals_total", stage="admission", status="429") == 0
    # they never became calls: the call counters saw only the one that went through
    calls = delta(before, after, "omnirelay_requests_total", surface="openai", endpoint="chat", status="2xx")
    assert calls == 1
    assert delta(before, after, "omnirelay_requests_total", surface="openai", endpoint="chat", status="4xx") == 0


def test_rate_limit_refusal_counts_at_admission(gw: GatewayHarness) -> None:
    before = scrape(gw)
    client = sdk(gw, gw.keys["slow"])
    chat(client)
    with pytest.raises(openai.RateLimitError):
        chat(client)
    after = scrape(gw)
    assert delta(before, after, "omnirelay_refusals_total", stage="admission", status="429") == 1
    assert delta(before, after, "omnirelay_errors_total", surface="openai", code="rate_limited") == 1
    assert delta(before, after, "omnirelay_refusals_total", stage="request", status="429") == 0


def test_task_submits_and_finishes(gw: GatewayHarness) -> None:
    before = scrape(gw)
    http = httpx.Client(base_url=gw.server.url, headers={"mj-api-secret": gw.keys["any"]}, timeout=30)
    ids = []
    for prompt in ("a calm lake", "a stormy sea [sim fail=1]"):
        answer = http.post("/mj/submit/imagine", json={"prompt": prompt})
        assert answer.status_code == 200 and answer.json()["code"] == 1, answer.text
        ids.append(answer.json()["result"])
    mini = httpx.post(
        gw.server.url + "/mj/submit/imagine", headers={"mj-api-secret": gw.keys["mini"]}, json={"prompt": "a cat"}
    )
    assert mini.json().get("code") != 1, mini.text  # Midjourney's API refuses in its body

    def finished() -> bool:
        now = scrape(gw)
        return sum(delta(before, now, "omnirelay_task_finishes_total", vendor="midjourney", status=s)
                   for s in ("SUCCESS", "FAILURE")) >= 2  # fmt: skip

    wait_until(finished)
    after = scrape(gw)
    assert delta(before, after, "omnirelay_task_submits_total", surface="midjourney", result="accepted") == 2
    assert delta(before, after, "omnirelay_task_submits_total", surface="midjourney", result="permission") == 1
    assert delta(before, after, "omnirelay_task_finishes_total", vendor="midjourney", status="SUCCESS") == 1
    assert delta(before, after, "omnirelay_task_finishes_total", vendor="midjourney", status="FAILURE") == 1
    http.close()
