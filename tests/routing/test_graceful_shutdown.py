"""SIGTERM to ``omnirelay serve`` while streams are running: they all finish, then usage and ledger are written."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import TEST_MASTER_KEY, UPSTREAM_KEY
from tests.harness import free_port
from tests.routing.conftest import Sims

CLIENT_KEY = "sk-or-graceful-shutdown-test-key-0123456789"
STREAMS = 20


def serve_command(config: Path, port: int) -> list[str]:
    serve = ["serve", "--config", str(config), "--port", str(port), "--graceful-timeout", "30"]
    return [sys.executable, "-m", "omnirelay", *serve]


def start_serve(tmp_path: Path, sims: Sims) -> tuple[subprocess.Popen[bytes], str, Path]:
    database = tmp_path / "omnirelay.db"
    config = tmp_path / "omnirelay.yaml"
    config.write_text(
        f"""
database_url: sqlite:///{database}
master_key: {TEST_MASTER_KEY}
channels:
  - name: sim
    base_url: {sims.healthy.url}/v1
    api_keys: [{UPSTREAM_KEY}]
    models: [gpt-4o-mini]
keys:
  - name: ci
    key: {CLIENT_KEY}
"""
    )
    port = free_port()
    process = subprocess.Popen(
        serve_command(config, port),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"omnirelay serve did not start: {process.communicate()[0].decode()}")
        time.sleep(0.1)
    return process, url, database


async def stream_one(client: httpx.AsyncClient, url: str, i: int, started: asyncio.Event, count: list[int]) -> str:
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": f"drain {i} [sim tokens_per_second=20 output_tokens=30]"}],
    }
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    lines: list[str] = []
    async with client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                lines.append(line)
                if len(lines) == 2:
                    count[0] += 1
                    if count[0] == STREAMS:
                        started.set()
    return "\n".join(lines)


def test_sigterm_lets_every_running_stream_finish_then_flushes_usage_and_ledger(tmp_path: Path, sims: Sims) -> None:
    process, url, database = start_serve(tmp_path, sims)
    try:

        async def run() -> tuple[list[str], bool]:
            started, count = asyncio.Event(), [0]
            async with httpx.AsyncClient(timeout=30) as client:
                streams = [asyncio.create_task(stream_one(client, url, i, started, count)) for i in range(STREAMS)]
                await asyncio.wait_for(started.wait(), 20)
                process.send_signal(signal.SIGTERM)
                refused = False
                for _ in range(50):  # new connections are refused while the streams go on
                    await asyncio.sleep(0.05)
                    try:
                        async with httpx.AsyncClient(timeout=1) as fresh:
                            await fresh.get(url + "/health")
                    except httpx.ConnectError:
                        refused = True
                        break
                return await asyncio.gather(*streams), refused

        bodies, refused = asyncio.run(run())
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    output = process.communicate()[0].decode()
    assert code in (0, -signal.SIGTERM), output
    assert refused
    assert len(bodies) == STREAMS
    assert all(body.endswith("data: [DONE]") and '"finish_reason":"stop"' in body for body in bodies)

    with sqlite3.connect(database) as db:
        usage = db.execute("SELECT request_id, status_code, completion_tokens, cost_micros FROM usage_logs").fetchall()
        settlements = db.execute("SELECT ref, amount_micros FROM ledger_entries WHERE kind = 'settlement'").fetchall()
        debits = db.execute("SELECT SUM(debits_micros) FROM accounts").fetchone()[0]
    assert len(usage) == STREAMS and {row[1] for row in usage} == {200}
    assert {row[2] for row in usage} == {30}
    assert sorted(ref for ref, _ in settlements) == sorted(row[0] for row in usage)
    assert -sum(amount for _, amount in settlements) == sum(row[3] for row in usage) == debits > 0
