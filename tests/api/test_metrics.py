"""``GET /metrics``: what Prometheus scrapes after real calls through the official SDK, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from omnirelay.config import ChannelConfig, Settings
from omnirelay.formats.usage import Usage
from omnirelay.metrics import MAX_SERIES, CallStats, Snapshot, render
from omnirelay.store.models import LedgerEntry
from tests.conftest import UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread, free_port

METRICS_TOKEN = "metrics-secret-token"


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url,
        metrics_token=METRICS_TOKEN,
        channels=[
            ChannelConfig(
                name="main", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"]
            ),
            ChannelConfig(
                name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1", api_keys=["x" * 20], models=["dead-model"]
            ),
        ],
        prices={"dead-model": {"free": True}},
        max_attempts=1,
    )
    harness = start_gateway(settings)
    harness.keys["k"] = harness.create_key("metrics-key")
    yield harness
    harness.server.stop()


def scrape(gw: GatewayHarness) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by sample name (``omnirelay_requests_total``...)."""
    response = httpx.get(gw.server.url + "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == want for k, want in labels.items()))


def test_metrics_wants_its_token(gw: GatewayHarness) -> None:
    assert httpx.get(gw.server.url + "/metrics").status_code == 401
    wrong = httpx.get(gw.server.url + "/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert METRICS_TOKEN not in wrong.text


def test_counts_after_sdk_calls_are_exact(gw: GatewayHarness) -> None:
    before = scrape(gw)
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.keys["k"], max_retries=0)
    n_plain, n_stream = 5, 3
    input_tokens = output_tokens = 0
    for i in range(n_plain):
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {i}"}]
        )
        assert completion.usage is not None
        input_tokens += completion.usage.prompt_tokens
        output_tokens += completion.usage.completion_tokens
    for i in range(n_stream):
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"stream {i}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.usage is not None:
                input_tokens += chunk.usage.prompt_tokens
                output_tokens += chunk.usage.completion_tokens
    with pytest.raises(openai.InternalServerError):  # the dead channel: one 5xx, error code upstream_error
        client.chat.completions.create(model="dead-model", messages=[{"role": "user", "content": "x"}])
    gw.flush_usage()
    after = scrape(gw)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"surface": "openai", "endpoint": "chat", "status": "2xx"}
    assert delta("omnirelay_requests_total", **ok) == n_plain + n_stream
    assert delta("omnirelay_requests_total", surface="openai", endpoint="chat", status="5xx") == 1
    assert delta("omnirelay_errors_total", surface="openai") == 1
    assert (
        delta("omnirelay_request_duration_seconds_count", surface="openai", endpoint="chat") == n_plain + n_stream + 1
    )
    assert delta("omnirelay_time_to_first_token_seconds_count", surface="openai", endpoint="chat") == n_stream
    assert delta("omnirelay_tokens_total", model="gpt-4o-mini", channel="main", kind="input") == input_tokens
    assert delta("omnirelay_tokens_total", model="gpt-4o-mini", channel="main", kind="output") == output_tokens
    assert value(after, "omnirelay_in_flight_calls") == 0
    assert value(after, "omnirelay_in_flight_streams") == 0
    assert value(after, "omnirelay_usage_writer_pending") == 0

    async def ledger_total() -> int:
        async with gw.gateway.sessions() as session:
            total = await session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(LedgerEntry.kind == "settlement")
            )
        return -int(total)

    spent = value(after, "omnirelay_spend_micro_usd_total")
    assert spent > 0
    assert spent == gw.run(ledger_total())  # every call of this module went through the metered relay


def test_breakers_and_tasks_are_reported(gw: GatewayHarness) -> None:
    samples = scrape(gw)
    channels = {labels["channel"] for labels, _ in samples["omnirelay_breakers"]}
    assert channels == {"main", "dead"}
    # The channel's own breaker and its one key's, each in exactly one state.
    assert value(samples, "omnirelay_breakers", channel="main") == 2
    text = httpx.get(gw.server.url + "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert "# TYPE omnirelay_tasks gauge" in text  # no task submitted here: the family is there, without samples


def test_labels_never_carry_keys_or_request_ids(gw: GatewayHarness) -> None:
    text = httpx.get(gw.server.url + "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert gw.keys["k"] not in text
    assert UPSTREAM_KEY not in text
    assert "req_" not in text
    label_names = {name for family in text_string_to_metric_families(text) for s in family.samples for name in s.labels}
    assert label_names <= {"surface", "endpoint", "status", "code", "model", "channel", "kind", "state", "le"}


def test_label_sets_are_bounded() -> None:
    stats = CallStats()
    for i in range(MAX_SERIES + 500):
        stats.record("openai", "chat", f"model-{i}", "ch", 200, None, Usage(input_tokens=1), 1, 0.1, None, 0.001)
    text = render(stats, Snapshot(breakers={}, writer_pending=0, tasks={}))
    spend = {
        sample.labels["model"]: sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == "omnirelay_spend_micro_usd_total"
    }
    assert len(spend) == MAX_SERIES + 1  # the cap, plus one "other" series that takes the overflow
    assert spend["other"] == 500
    assert sum(spend.values()) == MAX_SERIES + 500
