"""One benchmark run's state: the server processes, the files the drivers read, and measuring a row."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sqlite3
import sys
from pathlib import Path

import orjson
import yaml

from benchmarks import drivers, procstat, profiling, report, servers, wrk
from benchmarks.scenarios import MODEL, Scenario


def write_config(workdir: Path, upstream_url: str, key: str) -> Path:
    """omnirelay's config as an operator would write it: SQLite file, one channel, one bootstrap key."""
    config = {
        "database_url": f"sqlite:///{workdir / 'omnirelay.db'}",
        "channels": [
            {
                "name": "bench-upstream",
                "type": "openai",
                "base_url": upstream_url + "/v1",
                "api_keys": ["sk-bench-upstream-key"],
                "models": [MODEL],
            }
        ],
        "keys": [{"name": "bench", "key": key}],
    }
    path = workdir / "omnirelay.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cpu_sets(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(CPUs for the servers under test, CPUs for the upstream and the driver), or no pinning."""
    if not pin:
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


class Bench:
    def __init__(self, args: argparse.Namespace, scenarios: list[Scenario], workdir: Path) -> None:
        self.args = args
        self.scenarios = scenarios
        self.workdir = workdir
        self.key = "sk-or-bench-" + secrets.token_hex(16)
        self.headers = {"Authorization": f"Bearer {self.key}"}
        self.running: dict[str, servers.ServerProcess] = {}
        self.completed: dict[str, int] = {}
        """Requests each server finished, warm-ups included (to check omnirelay's usage rows against)."""
        self.tested_cpus, self.helper_cpus = cpu_sets(args.pin)
        self.drivers = drivers.Drivers(self.helper_cpus)

    @property
    def py_spy(self) -> bool:
        return bool(self.args.profile and profiling.py_spy())

    def _context(self, upstream_url: str) -> servers.LaunchContext:
        cprofile = self.args.profile and not self.py_spy
        return servers.LaunchContext(self.workdir, upstream_url, self.key, self.args.upstream, cprofile)

    def start_servers(self) -> None:
        upstream = servers.start(servers.SERVERS["upstream"], self._context(""), self.helper_cpus)
        self.running["upstream"] = upstream
        servers.wait_ready(upstream)
        write_config(self.workdir, upstream.url, self.key)
        context = self._context(upstream.url)
        for name in sorted({s.target for s in self.scenarios} - {"upstream"}):
            spec = servers.SERVERS[name]
            self.running[name] = servers.start(spec, context, self.tested_cpus)
        for server in self.running.values():
            servers.wait_ready(server)

    def stop_servers(self) -> None:
        """The driver, then relays (omnirelay drains its usage queue on SIGTERM), the upstream last."""
        with contextlib.suppress(Exception):
            self.drivers.close()
        for server in reversed(list(self.running.values())):
            with contextlib.suppress(Exception):
                server.stop()

    def run_all(self) -> list[report.RowResult]:
        runs: dict[str, list[report.RowResult]] = {s.name: [] for s in self.scenarios}
        for repeat in range(max(1, self.args.repeat)):
            for scenario in self.scenarios:
                print(
                    f"running {scenario.name} ({repeat + 1}/{self.args.repeat}) ...",
                    file=sys.stderr,
                    flush=True,
                )
                runs[scenario.name].append(self.measure(scenario, warm=repeat == 0))
        return [report.median_run(runs[s.name]) for s in self.scenarios]

    def files_for(self, scenario: Scenario) -> dict[str, Path]:
        body = self.workdir / f"{scenario.group}.json"
        if not body.exists():
            body.write_bytes(orjson.dumps(scenario.workload.body))
        files = {"body": body}
        if wrk.available():
            headers = {"Content-Type": "application/json", **self.headers, **scenario.workload.headers}
            script = self.workdir / f"{scenario.group}.lua"
            files["script"] = wrk.write_script(script, body, headers, scenario.workload.expect)
        return files

    def _load(self, scenario: Scenario, duration: float) -> drivers.Load:
        load = self.drivers.run(
            drivers.driver_for(scenario.workload, self.args.driver),
            self.running[scenario.target].url + scenario.workload.path,
            scenario.workload,
            self.files_for(scenario),
            {**self.headers, **scenario.workload.headers},
            concurrency=self.args.concurrency,
            duration=duration,
        )
        self.completed[scenario.target] = self.completed.get(scenario.target, 0) + load.completed
        return load

    def measure(self, scenario: Scenario, warm: bool = True) -> report.RowResult:
        """Warm up (not counted), then one measured load; the server's CPU and peak RSS over that load."""
        server, upstream = self.running[scenario.target], self.running["upstream"]
        if warm and self.args.warmup > 0:
            warmup = self._load(scenario, self.args.warmup)
            if warmup.errors:
                print(f"  warm-up had {warmup.errors} errors: {warmup.error_samples[:1]}", file=sys.stderr)
        procstat.reset_peak_rss(server.pid)
        recorder = None
        if self.py_spy and scenario.target == "omnirelay":
            out = self.workdir / f"profile-{scenario.group}.txt"
            recorder = profiling.Recorder(server.pid, out, self.args.duration)
        cpu_before, upstream_before = server.cpu_seconds(), upstream.cpu_seconds()
        load = self._load(scenario, self.args.duration)
        cpu, upstream_cpu = server.cpu_seconds() - cpu_before, upstream.cpu_seconds() - upstream_before
        if recorder is not None:
            recorder.wait()
        return report.RowResult(
            scenario,
            server.spec.label,
            load,
            server_cpu_s=cpu,
            peak_rss_mb=procstat.peak_rss_mb(server.pid),
            upstream_cpu_s=None if server is upstream else upstream_cpu,
        )

    def profile_report(self) -> str:
        if self.py_spy:
            raws = sorted(self.workdir.glob("profile-*.txt"))
            return "\n\n".join(profiling.summarize(raw) for raw in raws) or "py-spy recorded nothing"
        path = self.workdir / "omnirelay.prof"
        return profiling.summarize_cprofile(path) if path.exists() else f"no cProfile output at {path}"

    def usage_note(self) -> str | None:
        """After omnirelay stopped: how many usage rows reached its database (shows logging really ran)."""
        database = self.workdir / "omnirelay.db"
        if "omnirelay" not in self.running or not database.exists():
            return None
        with contextlib.closing(sqlite3.connect(database)) as connection:
            rows = int(connection.execute("SELECT count(*) FROM usage_logs").fetchone()[0])
        sent = self.completed.get("omnirelay", 0)
        return f"omnirelay usage rows in its database: {rows:,} (requests it finished, warm-ups included: ~{sent:,})"
