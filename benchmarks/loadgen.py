"""The Python load driver: closed-loop asyncio + aiohttp, ``--concurrency`` connections each sending the
next request as soon as the last one finished, for ``--duration`` seconds. Runs in its own process and prints
one JSON object (:class:`DriverResult` fields) on stdout.

For streams it reads the body chunk by chunk and records the time to the first body byte (TTFB), to the first
appearance of a marker text (``--first-token``: the first output token in the client's format, TTFT) and to the
end; a stream counts as an error unless it answered 200 and ended with the expected text (``--stream-end``,
default ``data: [DONE]``) and, when a marker is given, contained it. A plain response is an error unless it answered
200 with a complete JSON body.

    python -m benchmarks.loadgen --url http://127.0.0.1:9300/v1/chat/completions --body-file body.json \
        --header 'Authorization: Bearer sk-...' --concurrency 32 --duration 10 [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

_DONE = b"data: [DONE]\n\n"
MAX_ERROR_SAMPLES = 5


@dataclass
class DriverResult:
    driver: str
    requests: int
    """Requests that completed (successfully or not) inside the measured window."""
    completed: int
    """All requests the server finished, including those in flight when the window closed."""
    errors: int
    duration_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    error_samples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StreamCheck:
    """How a stream is judged: the bytes it must end with, and the marker of its first output token."""

    end: bytes = _DONE
    first_token: bytes | None = None


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _Tally:
    deadline: float
    requests: int = 0
    completed: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    ttfb_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(what)


@dataclass(slots=True)
class _Outcome:
    first_byte: float | None = None
    first_token: float | None = None
    error: str | None = None


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], stream: StreamCheck | None
) -> _Outcome:
    """Send one request; returns when its first body byte and first token arrived, and what was wrong with it."""
    outcome = _Outcome()
    async with session.post(url, data=body, headers=headers) as response:
        if stream is None:
            payload = await response.read()
            if response.status != 200:
                outcome.error = f"HTTP {response.status}: {payload[:200]!r}"
            elif not payload.endswith(b"}"):
                outcome.error = f"incomplete body ({len(payload)} bytes)"
            return outcome
        marker = stream.first_token
        keep = max(len(stream.end), len(marker or b""))
        head = tail = b""
        async for chunk in response.content.iter_any():
            if outcome.first_byte is None:
                outcome.first_byte = time.perf_counter()
                head = chunk[:200]
            window = tail + chunk
            if marker is not None and outcome.first_token is None and marker in window:
                outcome.first_token = time.perf_counter()
            tail = window[-keep:]
        if response.status != 200:
            outcome.error = f"HTTP {response.status}: {head!r}"
        elif not tail.endswith(stream.end):
            outcome.error = f"stream ended without {stream.end!r} (tail {tail!r})"
        elif marker is not None and outcome.first_token is None:
            outcome.error = f"stream without its first token {marker!r}"
        return outcome


async def _worker(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    stream: StreamCheck | None,
    tally: _Tally,
) -> None:
    while time.perf_counter() < tally.deadline:
        started = time.perf_counter()
        try:
            outcome = await _one(session, url, body, headers, stream)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            outcome = _Outcome(error=f"{type(exc).__name__}: {exc}")
        ended = time.perf_counter()
        tally.completed += 1
        if ended > tally.deadline:
            continue  # finished after the window: the server did it, the window does not count it
        tally.requests += 1
        if outcome.error is not None:
            tally.errors += 1
            tally.error(outcome.error)
            continue
        tally.latencies_ms.append((ended - started) * 1000)
        if outcome.first_byte is not None:
            tally.ttfb_ms.append((outcome.first_byte - started) * 1000)
        if outcome.first_token is not None:
            tally.ttft_ms.append((outcome.first_token - started) * 1000)


async def drive(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration: float,
    stream: StreamCheck | None,
) -> DriverResult:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, skip_auto_headers=("User-Agent",)
    ) as session:
        started = time.perf_counter()
        tally = _Tally(deadline=started + duration)
        await asyncio.gather(*(_worker(session, url, body, headers, stream, tally) for _ in range(concurrency)))
    return DriverResult(
        driver="python-aiohttp",
        requests=tally.requests,
        completed=tally.completed,
        errors=tally.errors,
        duration_s=duration,
        latency_p50_ms=percentile(tally.latencies_ms, 50),
        latency_p99_ms=percentile(tally.latencies_ms, 99),
        ttfb_p50_ms=percentile(tally.ttfb_ms, 50),
        ttfb_p99_ms=percentile(tally.ttfb_ms, 99),
        ttft_p50_ms=percentile(tally.ttft_ms, 50),
        ttft_p99_ms=percentile(tally.ttft_ms, 99),
        error_samples=tally.error_samples,
    )


def parse_headers(values: list[str]) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    for value in values:
        name, _, content = value.partition(":")
        headers[name.strip()] = content.strip()
    return headers


def stream_check(job: dict[str, Any]) -> StreamCheck | None:
    if not job.get("stream"):
        return None
    marker = job.get("first_token")
    return StreamCheck(str(job.get("stream_end") or _DONE.decode()).encode(), marker.encode() if marker else None)


def run_job(job: dict[str, Any]) -> DriverResult:
    """One load as ``--serve`` receives it: url, body_file, headers, concurrency, duration, stream, and for streams
    stream_end and first_token."""
    headers = {"Content-Type": "application/json", **job.get("headers", {})}
    body = Path(job["body_file"]).read_bytes()
    return uvloop.run(
        drive(
            job["url"],
            body,
            headers,
            concurrency=int(job["concurrency"]),
            duration=float(job["duration"]),
            stream=stream_check(job),
        )
    )


def serve_jobs() -> None:
    """Persistent mode for the runner: one JSON job per stdin line, one JSON result per stdout line. Saves the
    interpreter start per row and keeps the server's measured window tight around the load."""
    print(orjson.dumps({"ready": True}).decode(), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(orjson.dumps(asdict(run_job(orjson.loads(line)))).decode(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="Read jobs from stdin (used by benchmarks.run).")
    parser.add_argument("--url")
    parser.add_argument("--body-file", type=Path)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--stream-end", default=_DONE.decode(), help="What a complete stream ends with.")
    parser.add_argument("--first-token", default=None, help="Text marking the first output token (TTFT).")
    args = parser.parse_args()
    if args.serve:
        serve_jobs()
        return
    if not args.url or not args.body_file:
        parser.error("--url and --body-file are required")
    job = {
        "url": args.url,
        "body_file": str(args.body_file),
        "headers": parse_headers(args.header),
        "concurrency": args.concurrency,
        "duration": args.duration,
        "stream": args.stream,
        "stream_end": args.stream_end,
        "first_token": args.first_token,
    }
    print(orjson.dumps(asdict(run_job(job))).decode())


if __name__ == "__main__":
    main()
