"""Soak run: mixed traffic at a moderate, fixed rate for a long time, with the gateway's memory and open file
descriptors sampled, to show that nothing grows beyond noise.

    python -m benchmarks.run soak [--duration S] [--rate R] [--sample-every S] [--settle S] [--json FILE]

omnirelay (SQLite, one OpenAI channel to omnirelay's own OpenAI simulator, which also serves embeddings) gets an
open-loop load of ``--rate`` requests a second (a request is sent every 1/rate s whether or not the earlier ones
finished; at most ``MAX_IN_FLIGHT`` at once, past which a tick is counted as skipped). The mix is data
(:data:`MIX`): plain and streamed chat, embeddings, and a few refusals and failures (a wrong key, an unknown model,
a body that is not JSON, an upstream 500). Every ``--sample-every`` seconds the gateway process's RSS
(``VmRSS``) and open file descriptors (``/proc/<pid>/fd``) are read. The report gives, for each, the value at the
first sample after ``--settle`` seconds (imports, tokenizers and caches fill up first), at the end, the maximum,
and the slope of a least-squares line through the settled samples, per hour. Traffic goes to 127.0.0.1 only and
stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import sqlite3
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from benchmarks import machine, procstat, servers
from benchmarks.scenarios import MODEL, PROMPT

EMBEDDING_MODEL = "text-embedding-3-small"
MAX_IN_FLIGHT = 256
GATEWAY = servers.Omnirelay(
    "omnirelay-soak",
    models=(MODEL, EMBEDDING_MODEL),
    # Every request comes from 127.0.0.1, the wrong-key ones too: the per-address throttle of failed
    # authentications would soon refuse the whole run.
    extra_config=(("auth_failures_per_minute", 1_000_000),),
)


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix."""

    name: str
    weight: int
    path: str
    body: bytes
    status: int
    """What a correct gateway answers."""
    stream: bool = False
    key: bool = True
    """Send the run's key (False: a wrong one)."""


def _json(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


_CHAT = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
MIX: tuple[Kind, ...] = (
    Kind("chat", 45, "/v1/chat/completions", _json(_CHAT), 200),
    Kind("chat-stream", 30, "/v1/chat/completions", _json(_CHAT | {"stream": True}), 200, stream=True),
    Kind("embeddings", 15, "/v1/embeddings", _json({"model": EMBEDDING_MODEL, "input": "soak test input"}), 200),
    Kind("wrong-key", 3, "/v1/chat/completions", _json(_CHAT), 401, key=False),
    Kind("unknown-model", 3, "/v1/chat/completions", _json(_CHAT | {"model": "no-such-model"}), 404),
    Kind("not-json", 2, "/v1/chat/completions", b'{"model": "gpt-4o-mini", "messages": [', 400),
    Kind(
        "upstream-500",
        2,
        "/v1/chat/completions",
        _json({"model": MODEL, "messages": [{"role": "user", "content": "fail [sim fault=500]"}]}),
        502,  # the gateway's answer to an upstream that failed
    ),
)


@dataclass
class Sample:
    t: float
    """Seconds since the load started."""
    rss_mb: float
    fds: int
    sockets: int
    """Of ``fds``: client connections kept alive and the upstream connection pool, which follow the load's peaks;
    the rest (files, pipes) would show a leak of another kind."""


@dataclass
class Trend:
    start: float
    end: float
    max: float
    slope_per_hour: float


@dataclass
class SoakResult:
    duration_s: float
    rate: float
    sent: int = 0
    skipped: int = 0
    by_kind: dict[str, Counter[int]] = field(default_factory=dict)
    unexpected: int = 0
    """Answers whose status was not the one the kind expects, transport errors, streams without their end."""
    unexpected_samples: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.unexpected += 1
        if len(self.unexpected_samples) < 5:
            self.unexpected_samples.append(what)


def open_fds(pid: int) -> tuple[int, int]:
    """(open file descriptors, of which sockets)."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # closed meanwhile
            continue
    return len(targets), sum(1 for target in targets if target.startswith("socket:"))


def linear_slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two distinct x)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def trend(samples: list[Sample], attribute: str) -> Trend:
    values = [(s.t, float(getattr(s, attribute))) for s in samples]
    return Trend(values[0][1], values[-1][1], max(v for _, v in values), linear_slope(values) * 3600)


def schedule(seed: int = 7) -> list[Kind]:
    """One round of the mix in a fixed shuffled order (100 requests for the default weights)."""
    round_ = [kind for kind in MIX for _ in range(kind.weight)]
    random.Random(seed).shuffle(round_)
    return round_


async def _send(session: aiohttp.ClientSession, url: str, kind: Kind, key: str, result: SoakResult) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key if kind.key else 'sk-or-wrong'}"}
    try:
        async with session.post(url + kind.path, data=kind.body, headers=headers) as response:
            body = await response.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        result.note(f"{kind.name}: {type(exc).__name__}: {exc}")
        return
    result.by_kind.setdefault(kind.name, Counter())[response.status] += 1
    if response.status != kind.status:
        result.note(f"{kind.name}: HTTP {response.status} (expected {kind.status}): {body[:160]!r}")
    elif kind.stream and not body.endswith(b"data: [DONE]\n\n"):
        result.note(f"{kind.name}: stream without its end: {body[-120:]!r}")


async def _sample(pid: int, every: float, started: float, deadline: float, result: SoakResult) -> None:
    loop = asyncio.get_running_loop()
    while True:
        now = loop.time()
        sample = Sample(round(now - started, 1), procstat.rss_mb(pid), *open_fds(pid))
        result.samples.append(sample)
        print(
            f"  t={sample.t:7.0f}s  RSS {sample.rss_mb:7.1f} MB  fds {sample.fds:4d} ({sample.sockets} sockets)  "
            f"sent {result.sent:,}  "
            f"unexpected {result.unexpected}",
            file=sys.stderr,
            flush=True,
        )
        if now >= deadline:
            return
        await asyncio.sleep(min(every, max(0.0, deadline - now)))


async def drive(url: str, key: str, pid: int, *, duration: float, rate: float, every: float) -> SoakResult:
    """The open-loop load and the sampler, side by side, until ``duration`` is over and the last answer is in."""
    result = SoakResult(duration, rate)
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT, keepalive_timeout=30)
    pending: set[asyncio.Task[None]] = set()
    order = schedule()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = loop.time()
        deadline = started + duration
        sampler = asyncio.create_task(_sample(pid, every, started, deadline, result))
        tick = started
        while tick < deadline:
            if len(pending) < MAX_IN_FLIGHT:
                task = asyncio.create_task(_send(session, url, order[result.sent % len(order)], key, result))
                pending.add(task)
                task.add_done_callback(pending.discard)
                result.sent += 1
            else:
                result.skipped += 1
            tick += 1 / rate
            await asyncio.sleep(max(0.0, tick - loop.time()))
        await sampler
        if pending:
            await asyncio.gather(*pending)
    return result


def usage_rows(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return int(connection.execute("SELECT count(*) FROM usage_logs").fetchone()[0])


def report(result: SoakResult, settle: float, extra: list[str]) -> tuple[list[str], dict[str, Any]]:
    settled = [s for s in result.samples if s.t >= settle] or result.samples
    rss, fds, sockets = trend(settled, "rss_mb"), trend(settled, "fds"), trend(settled, "sockets")
    whole_rss = trend(result.samples, "rss_mb")
    lines = [
        f"soak: {result.duration_s / 60:g} min at {result.rate:g} req/s (open loop), {result.sent:,} requests sent, "
        f"{result.skipped} ticks skipped (more than {MAX_IN_FLIGHT} in flight), "
        f"{result.unexpected} unexpected answers",
        "answers: "
        + "; ".join(
            f"{name} " + ", ".join(f"{count:,} x {status}" for status, count in sorted(counts.items()))
            for name, counts in result.by_kind.items()
        ),
        f"RSS MB (settled after {settle:g} s, {len(settled)} samples): start {rss.start:.1f}, end {rss.end:.1f}, "
        f"max {rss.max:.1f}, slope {rss.slope_per_hour:+.2f} MB/h "
        f"(whole run from {whole_rss.start:.1f} MB: slope {whole_rss.slope_per_hour:+.2f} MB/h)",
        f"open fds: start {fds.start:.0f}, end {fds.end:.0f}, max {fds.max:.0f}, slope {fds.slope_per_hour:+.2f}/h; "
        f"of which sockets: start {sockets.start:.0f}, end {sockets.end:.0f}, max {sockets.max:.0f}",
        *extra,
        *(f"unexpected: {sample}" for sample in result.unexpected_samples),
    ]
    payload = {
        "duration_s": result.duration_s,
        "rate": result.rate,
        "sent": result.sent,
        "skipped": result.skipped,
        "unexpected": result.unexpected,
        "unexpected_samples": result.unexpected_samples,
        "by_kind": {name: {str(k): v for k, v in counts.items()} for name, counts in result.by_kind.items()},
        "settle_s": settle,
        "rss_mb": asdict(rss),
        "rss_mb_whole_run": asdict(whole_rss),
        "fds": asdict(fds),
        "sockets": asdict(sockets),
        "samples": [asdict(sample) for sample in result.samples],
    }
    return lines, payload


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--duration", type=float, default=1800.0, help="Seconds of traffic (default 1800: 30 minutes).")
    add("--rate", type=float, default=100.0, help="Requests a second, open loop (default 100).")
    add("--sample-every", type=float, default=10.0, help="Seconds between samples of RSS and fds (default 10).")
    add(
        "--settle",
        type=float,
        default=None,
        help="Seconds before the samples the trend is fitted on (default 120, at most a quarter of the run).",
    )
    add("--json", type=Path, help="Also write every number and sample to this file.")
    add("--keep", action="store_true", help="Keep the work directory (config, SQLite file, server logs).")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rate <= 0 or args.sample_every <= 0:
        parser.error("--duration, --rate and --sample-every must be positive")
    if args.settle is None:
        args.settle = min(120.0, args.duration / 4)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="omnirelay-soak-"))
    key = "sk-or-soak-" + secrets.token_hex(16)
    context = servers.LaunchContext(workdir, "", key, "simulator")
    running: list[servers.ServerProcess] = []
    started, load_before = datetime.now(UTC), machine.load_average()
    try:
        upstream = servers.start(servers.SERVERS["upstream"], context)
        running.append(upstream)
        servers.wait_ready(upstream)
        context = servers.LaunchContext(workdir, upstream.url, key, "simulator")
        gateway = servers.start(GATEWAY.spec("omnirelay"), context)
        running.insert(0, gateway)
        servers.wait_ready(gateway)
        print(f"soak: omnirelay pid {gateway.pid} at {gateway.url}, {args.duration:g} s at {args.rate:g} req/s",
              file=sys.stderr, flush=True)  # fmt: skip
        result = uvloop.run(
            drive(gateway.url, key, gateway.pid, duration=args.duration, rate=args.rate, every=args.sample_every)
        )
        cpu = gateway.cpu_seconds()
        servers.stop_all([gateway])
        rows = usage_rows(GATEWAY.database_path(context))
        info = machine.describe()
        extra = [
            f"gateway CPU {cpu:.0f} s over the run ({cpu / max(result.sent, 1) * 1000:.2f} ms per request, start-up "
            f"included); {rows:,} usage rows in its SQLite file "
            f"({GATEWAY.database_path(context).stat().st_size / 1e6:.1f} MB)",
            f"date: {started:%Y-%m-%d %H:%M} UTC; omnirelay at {info['source']}; machine: {info['cpus']}; "
            f"{info['python']}; load average before / after: {load_before} / {machine.load_average()}",
        ]
        lines, payload = report(result, args.settle, extra)
        print("\n".join(lines))
        if args.json:
            args.json.write_text(json.dumps(payload, indent=2))
        return 1 if result.unexpected else 0
    finally:
        servers.stop_all(running)
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
