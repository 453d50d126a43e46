"""Smoke test of the load benchmark (``python -m benchmarks.run``): a short, low-concurrency run must start every
server, fill every row with sane positive numbers and clean up. It checks that the harness works, not how fast
anything is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
from benchmarks import canned, wrk
from benchmarks.scenarios import SCENARIOS, select

ROOT = Path(__file__).resolve().parents[1]


def run_bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "benchmarks.run", "--concurrency", "4", "--json", str(out), *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text())


def check_rows(rows: list[dict], names: list[str]) -> None:
    assert [r["name"] for r in rows] == names
    for row in rows:
        load = row["load"]
        assert load["errors"] == 0, row
        assert load["requests"] > 0 and row["rps"] > 0, row
        assert 0 < load["latency_p50_ms"] <= load["latency_p99_ms"], row
        assert row["cpu_ms_per_request"] > 0 and row["peak_rss_mb"] > 0, row
        if row["target"] == "omnirelay":
            assert row["rps_ratio"] > 0 and row["cpu_ratio"] > 0, row
        if load["driver"] == "python" and row["name"].startswith("chat-stream"):
            assert 0 < load["ttfb_p50_ms"] <= load["latency_p99_ms"], row


def test_every_row_fills_with_sane_numbers(tmp_path: Path) -> None:
    # --driver auto: wrk for plain responses when installed, the Python driver for streams (and for all without wrk)
    done, result = run_bench(tmp_path, "--duration", "1", "--warmup", "0")
    rows = result["rows"]
    check_rows(rows, [s.name for s in SCENARIOS if s.default])
    plain_driver = "wrk" if wrk.available() else "python"
    assert {r["load"]["driver"] for r in rows if not r["name"].startswith("chat-stream")} == {plain_driver}
    assert {r["load"]["driver"] for r in rows if r["name"].startswith("chat-stream")} == {"python"}
    table = [line for line in done.stdout.splitlines() if line.startswith("| chat")]
    assert len(table) == len([s for s in SCENARIOS if s.default])
    assert "omnirelay usage rows in its database" in done.stdout
    assert "ERRORS" not in done.stdout


def test_selecting_a_row_brings_its_floor() -> None:
    assert [s.name for s in select(["chat/omnirelay"])] == ["chat/bare", "chat/omnirelay"]


def test_static_upstream_stream_is_a_complete_openai_stream() -> None:
    knobs = canned.Knobs(output_tokens=5)
    events = canned.chat_events("gpt-4o-mini", knobs, include_usage=True)
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(e[len(b"data: ") :]) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.split() == ["the", "quick", "brown", "fox", "jump"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert all(c["usage"] is None for c in chunks[:-1])
    body = orjson.loads(canned.chat_body("gpt-4o-mini", knobs))
    assert body["usage"]["completion_tokens"] == 5
