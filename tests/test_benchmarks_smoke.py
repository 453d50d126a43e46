"""Smoke test of the load benchmark (``python -m benchmarks.run``): a short, low-concurrency run must start every
server, fill every row with sane positive numbers and clean up. It checks that the harness works, not how fast
anything is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from benchmarks import canned, servers, wrk
from benchmarks.scenarios import PACED_TTFT_MS, SCENARIOS, select

from omnirelay.config import Settings
from tests.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parents[1]
STREAM_ROWS_FILLED = ("ttft_p50_ms", "ttfb_p50_ms")


def redis_reachable() -> bool:
    import redis

    try:
        with redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise  # in CI Redis must be there
        return False
    return True


def run_bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "benchmarks.run", "--concurrency", "4", "--json", str(out)]
    command += ["--redis-url", REDIS_URL, *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text())


def is_gateway(row: dict[str, Any]) -> bool:
    return servers.SERVERS[row["target"]].gateway is not None


def check_rows(rows: list[dict[str, Any]], names: list[str]) -> None:
    assert [r["name"] for r in rows] == names
    for row in rows:
        load = row["load"]
        if not row["name"].split("/")[0].endswith("-faults"):
            assert load["errors"] == 0, row
        assert load["requests"] > 0 and row["rps"] > 0, row
        assert 0 < load["latency_p50_ms"] <= load["latency_p99_ms"], row
        # The upstream itself costs a few µs a request: in a one-second paced row it can stay under the kernel's
        # 10 ms CPU tick and read as 0. Every relay's CPU is well above that.
        assert row["cpu_ms_per_request"] > 0 or row["target"] == "upstream", row
        assert row["peak_rss_mb"] > 0, row
        if row["floor"]:
            assert row["rps_ratio"] > 0 and row["cpu_ratio"] > 0, row
        if row["baseline"]:
            assert row["baseline_ratio"] > 0, row
        if row["stream"]:
            assert load["driver"] == "python", row
            for name in STREAM_ROWS_FILLED:
                assert 0 < load[name] <= load["latency_p99_ms"], (name, row)
            assert row["cpu_us_per_token"] > 0, row
        else:
            assert row["cpu_us_per_token"] is None, row


def test_every_default_row_fills_with_sane_numbers(tmp_path: Path) -> None:
    # --driver auto: wrk for plain responses when installed, the Python driver for streams (and for all without wrk)
    with_redis = redis_reachable()
    done, result = run_bench(tmp_path, "--duration", "0.5", "--warmup", "0")  # wrk rows still run its 1 s minimum
    rows = result["rows"]
    expected = [s.name for s in SCENARIOS if s.default and (with_redis or "redis" not in s.target)]
    check_rows(rows, expected)
    plain_driver = "wrk" if wrk.available() else "python"
    assert {r["load"]["driver"] for r in rows if not r["stream"]} == {plain_driver}
    table = [line for line in done.stdout.splitlines() if line.startswith(("| chat", "| anthropic"))]
    assert len(table) == len(expected)
    assert "ERRORS" not in done.stdout
    # metering and billing ran in every omnirelay variant; the budgeted ones carried their limits
    for row in rows:
        if is_gateway(row):
            assert f"{row['target']}: " in done.stdout and " ledger settlements " in done.stdout
    assert done.stdout.count("key limits: spend cap $100,000, rpm 10000000, tpm 1000000000") == 1 + with_redis
    if with_redis:
        assert "budget holds still open" in done.stdout and ", 0 budget holds still open" in done.stdout
    else:
        assert "SKIPPED chat/omnirelay-budget-redis" in done.stdout
    verdicts = "\n".join(line for line in done.stdout.splitlines() if "(target ≤ 1.5x)" in line)
    assert "anthropic-stream/omnirelay: CPU per streamed token" in verdicts


def test_paced_stream_rows_measure_added_time_to_first_token(tmp_path: Path) -> None:
    done, result = run_bench(tmp_path, "--duration", "1", "--warmup", "0", "--scenarios", "*-paced")
    rows = result["rows"]
    check_rows(rows, [s.name for s in select(["*-paced"])])
    for row in rows:
        # the upstream holds the first token back for ttft_ms: nothing can see it sooner
        assert row["load"]["ttft_p50_ms"] >= PACED_TTFT_MS, row
        if row["ttft_reference"]:
            assert row["added_ttft_ms"] is not None, row
    assert "anthropic-stream-paced/omnirelay: TTFT p50" in done.stdout


def test_fault_rows_show_failover_success_rate_and_added_latency(tmp_path: Path) -> None:
    """10% of upstream calls fail: through the bare relay about that share fails for the client; through omnirelay
    with three channels almost none does, and the latency it adds over its clean row is reported."""
    done, result = run_bench(tmp_path, "--duration", "1", "--warmup", "0", "--scenarios", "chat-faults/*")
    by_name = {row["name"]: row for row in result["rows"]}
    assert list(by_name) == ["chat/bare", "chat/omnirelay-3ch", "chat-faults/bare", "chat-faults/omnirelay-3ch"]
    check_rows(result["rows"], list(by_name))
    bare, relayed = by_name["chat-faults/bare"], by_name["chat-faults/omnirelay-3ch"]
    assert 0.03 <= bare["load"]["errors"] / bare["load"]["requests"] <= 0.2, bare
    assert relayed["load"]["requests"] > 100, relayed
    assert relayed["success_rate"] >= 0.98, relayed  # all three attempts fail for ~0.1% of calls
    assert relayed["added_p99_ms"] is not None and relayed["added_p50_ms"] is not None, relayed
    assert "chat-faults/omnirelay-3ch: " in done.stdout and "requests succeeded for the client" in done.stdout
    assert "ERRORS" not in done.stdout  # expected failures are the measurement, not a broken run


def test_static_upstream_fails_the_share_of_calls_it_is_told_to() -> None:
    import random

    responses = canned.CannedResponses(random.Random(7))
    body = b'{"model": "m", "messages": [{"role": "user", "content": "[sim fault=500 fault_rate=0.1]"}]}'
    heads = [responses.for_chat(body).head for _ in range(5000)]
    failed = [head for head in heads if head.startswith(b"HTTP/1.1 500 ")]
    assert 400 <= len(failed) <= 600
    assert all(head.startswith(b"HTTP/1.1 200 ") for head in heads if head not in failed)
    error = orjson.loads(responses.for_chat(b'{"model": "m", "x": "[sim fault=503]"}').pieces[0])
    assert error["error"]["type"] == "server_error"


def test_selecting_a_row_brings_what_it_is_compared_with() -> None:
    assert [s.name for s in select(["chat/omnirelay"])] == ["chat/bare", "chat/omnirelay"]
    assert [s.name for s in select(["anthropic-stream/omnirelay"])] == [
        "chat-stream/bare",
        "chat-stream/omnirelay",
        "anthropic-stream/omnirelay",
    ]
    billing = [s.name for s in select(["billing"])]
    assert {"chat/bare", "chat/omnirelay", "chat/omnirelay-budget-memory", "chat/omnirelay-budget-redis"} <= set(
        billing
    )
    assert all(s.workload.stream for s in select(["streams"]))


def test_omnirelay_variant_configs_are_valid_settings(tmp_path: Path) -> None:
    context = servers.LaunchContext(tmp_path, "http://127.0.0.1:9", "sk-or-bench-test", "static")
    for spec in servers.SERVERS.values():
        if spec.gateway is None:
            continue
        settings = Settings.model_validate(yaml.safe_load(yaml.safe_dump(spec.gateway.config(context))))
        assert (settings.redis_url is not None) == spec.gateway.redis
        assert (settings.keys[0].quota_usd is not None) == (spec.gateway.spend_cap_usd is not None)
        argv = spec.argv(context, 9999)
        assert ("--key-rpm" in argv) == (spec.gateway.rpm is not None)


@pytest.mark.parametrize("include_usage", [True, False])
def test_static_upstream_stream_is_a_complete_openai_stream(include_usage: bool) -> None:
    knobs = canned.Knobs(output_tokens=5)
    events = canned.chat_events("gpt-4o-mini", knobs, include_usage=include_usage)
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(e[len(b"data: ") :]) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.split() == ["the", "quick", "brown", "fox", "jump"]
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
        assert all(c["usage"] is None for c in chunks[:-1])
    body = orjson.loads(canned.chat_body("gpt-4o-mini", knobs))
    assert body["usage"]["completion_tokens"] == 5


def test_paced_directive_is_read_by_the_static_upstream() -> None:
    knobs = canned.knobs_of(b"hi [sim output_tokens=16 ttft_ms=100 tokens_per_second=100]")
    assert knobs == canned.Knobs(output_tokens=16, ttft_ms=100.0, tokens_per_second=100.0) and knobs.paced
