"""One command for the whole benchmark: the upstream, the bare relay floor and omnirelay, each in its own
process, driven one after another with the same load; prints the table.

    python -m benchmarks.run [--duration S] [--concurrency N] [--scenarios PATTERN ...] [--json out.json]
                             [--markdown] [--driver auto|python|wrk] [--upstream static|simulator] [--pin]
                             [--repeat N] [--profile] [--keep] [--redis-url URL]
    python -m benchmarks.run soak [--duration S] [--rate R] [--sample-every S] [--json out.json]

See ``benchmarks/README.md`` for what each column means. ``soak`` is another kind of run (``benchmarks.soak``):
mixed traffic at a fixed rate for a long time (default 30 minutes), with the gateway's RSS and open file
descriptors sampled; ``soak --help`` lists its options.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import machine, report, soak, wrk
from benchmarks.bench import Bench
from benchmarks.scenarios import select


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--duration", type=float, default=10.0, help="Measured seconds per row (default 10).")
    add("--warmup", type=float, default=1.0, help="Unmeasured seconds before each row (default 1).")
    add("--concurrency", type=int, default=32, help="Connections kept busy (default 32).")
    add(
        "--scenarios",
        nargs="+",
        metavar="PATTERN",
        help="Row names, groups or tags (fnmatch), e.g. 'chat-stream', 'billing', 'streams'.",
    )
    add(
        "--driver",
        choices=("auto", "python", "wrk"),
        default="auto",
        help="Load generator for plain responses.",
    )
    add(
        "--upstream",
        choices=("static", "simulator"),
        default="static",
        help="What answers behind the relays.",
    )
    add(
        "--pin",
        action="store_true",
        help="Pin the server under test to the last CPU, upstream and driver elsewhere.",
    )
    add(
        "--repeat",
        type=int,
        default=1,
        help="Measure every row N times (interleaved), report the median run.",
    )
    add("--json", type=Path, help="Also write every number to this file.")
    add("--markdown", action="store_true", help="Print a block ready to paste into a README.")
    add("--profile", action="store_true", help="Sample omnirelay with py-spy (or cProfile) and print its hot spots.")
    add("--keep", action="store_true", help="Keep the work directory (logs, database, config, profile).")
    add(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="Redis for the Redis-backed rows (each run uses its own namespace and deletes it after).",
    )
    return parser.parse_args(argv)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def header_lines(
    args: argparse.Namespace, argv: list[str], info: dict[str, str], started: datetime, loads: tuple[str, str]
) -> list[str]:
    command = shlex.join(["python", "-m", "benchmarks.run", *argv])
    plain = wrk.version() if wrk.available() and args.driver != "python" else "python (aiohttp)"
    pinning = "server under test pinned to its own CPU" if args.pin else "no CPU pinning"
    repeat = f", median of {args.repeat} interleaved runs" if args.repeat > 1 else ""
    return [
        f"date: {started:%Y-%m-%d %H:%M} UTC; command: `{command}`; omnirelay at {info['source']}",
        f"machine: {info['cpus']}; {info['python']}",
        f"packages: {info['packages']}",
        f"load: concurrency {args.concurrency}, {args.duration:g} s measured after {args.warmup:g} s "
        f"warm-up per row{repeat}; upstream: {args.upstream}; {pinning}",
        f"drivers: {plain} for plain responses, python (aiohttp) for streams",
        *([f"limiter: {info['redis']}"] if info.get("redis") else []),
        f"load average before / after: {loads[0]} / {loads[1]}",
    ]


def print_results(
    args: argparse.Namespace, started: datetime, lines: list[str], rows: list[report.RowResult], notes: list[str]
) -> None:
    bullet = "- " if args.markdown else ""
    print()
    if args.markdown:
        print(f"### Benchmark, {started:%Y-%m-%d}\n")
    print("\n".join(bullet + line for line in lines) + "\n")
    print(report.markdown_table(rows) + "\n")
    for line in [*report.verdicts(rows), *notes]:
        print(bullet + line)


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["soak"]:
        return soak.main(given[1:])
    args = parse_args(argv)
    scenarios = select(args.scenarios)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="omnirelay-bench-"))
    bench = Bench(args, scenarios, workdir)
    notes: list[str] = []
    problem = bench.redis_problem()
    if problem is not None and not args.scenarios:  # rows named explicitly fail loudly in start_servers instead
        notes.append(f"SKIPPED {', '.join(bench.drop_redis_rows())}: {problem}")
        print(notes[-1], file=sys.stderr)
    info = machine.describe()
    redis = bench.redis_description()
    if redis:
        info["redis"] = redis
    started, load_before = datetime.now(UTC), machine.load_average()
    try:
        try:
            bench.start_servers()
            rows = bench.run_all()
            load_after = machine.load_average()
        finally:
            bench.stop_servers()
            redis_note = bench.redis_cleanup()
        report.compare(rows)
        lines = header_lines(args, given, info, started, (load_before, load_after))
        notes += [*bench.usage_notes(), *([redis_note] if redis_note else [])]
        print_results(args, started, lines, rows, notes)
        banner = report.error_banner(rows)
        if banner:
            print(banner)
        if args.json:
            payload = {
                "started": started.isoformat(),
                "machine": info,
                "args": {k: str(v) for k, v in vars(args).items()},
                "rows": [row.to_json() for row in rows],
            }
            args.json.write_text(json.dumps(payload, indent=2))
        if args.profile:
            print("\nProfile of omnirelay (the profiler slows it: ignore this run's numbers)\n")
            print(bench.profile_report())
        return 1 if banner else 0
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def entry() -> int:
    try:
        return main()
    except KeyboardInterrupt:
        print("\ninterrupted: every server and driver was stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # a server that did not start, a driver that failed: already cleaned up
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(entry())
