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

from benchmarks import drivers, procstat, profiling, report, servers, wrk
from benchmarks.scenarios import Scenario

KEY_PLACEHOLDER = "{key}"
"""In a workload's extra headers, stands for the run's client key (``x-api-key: {key}``)."""


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
        self.redis_url: str = getattr(args, "redis_url", "redis://127.0.0.1:6379/0")
        self.redis_namespace = "omnirelay-bench-" + secrets.token_hex(6)
        self.running: dict[str, servers.ServerProcess] = {}
        self.completed: dict[str, int] = {}
        """Requests each server finished, warm-ups included (to check omnirelay's usage rows against)."""
        self.tested_cpus, self.helper_cpus = cpu_sets(args.pin)
        self.drivers = drivers.Drivers(self.helper_cpus)

    @property
    def py_spy(self) -> bool:
        return bool(self.args.profile and profiling.py_spy())

    @property
    def uses_redis(self) -> bool:
        return any((gateway := servers.SERVERS[s.target].gateway) is not None and gateway.redis for s in self.scenarios)

    def _context(self, upstream_url: str) -> servers.LaunchContext:
        cprofile = self.args.profile and not self.py_spy
        return servers.LaunchContext(
            self.workdir,
            upstream_url,
            self.key,
            self.args.upstream,
            cprofile,
            redis_url=self.redis_url,
            redis_namespace=self.redis_namespace,
        )

    def redis_problem(self) -> str | None:
        """Why the Redis-backed rows cannot run (Redis unreachable), or None."""
        if not self.uses_redis:
            return None
        import redis

        try:
            with redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2) as client:
                client.ping()
        except redis.RedisError as exc:
            return f"Redis at {self.redis_url} is not reachable ({exc})"
        return None

    def drop_redis_rows(self) -> list[str]:
        """Leave the Redis-backed rows out (no other row compares with them); returns their names."""
        dropped = [s.name for s in self.scenarios if (g := servers.SERVERS[s.target].gateway) and g.redis]
        self.scenarios = [s for s in self.scenarios if s.name not in dropped]
        return dropped

    def check_redis(self) -> None:
        problem = self.redis_problem()
        if problem is not None:
            raise RuntimeError(f"{problem}: start it, pass --redis-url, or select rows without it (--scenarios)")

    def start_servers(self) -> None:
        self.check_redis()
        upstream = servers.start(servers.SERVERS["upstream"], self._context(""), self.helper_cpus)
        self.running["upstream"] = upstream
        servers.wait_ready(upstream)
        context = self._context(upstream.url)
        for name in sorted({s.target for s in self.scenarios} - {"upstream"}):
            spec = servers.SERVERS[name]
            self.running[name] = servers.start(spec, context, self.tested_cpus)
        for server in self.running.values():
            servers.wait_ready(server)

    def stop_servers(self) -> None:
        """The driver, then the relays all at once (omnirelay drains its usage queue on SIGTERM), the upstream
        last."""
        with contextlib.suppress(Exception):
            self.drivers.close()
        servers.stop_all([server for name, server in self.running.items() if name != "upstream"])
        if "upstream" in self.running:
            servers.stop_all([self.running["upstream"]])

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

    def request_headers(self, scenario: Scenario) -> dict[str, str]:
        """The workload's headers with the key filled in; ``Authorization: Bearer <key>`` unless they carry the key
        themselves (an Anthropic client sends only ``x-api-key``)."""
        given = scenario.workload.headers
        extra = {name: value.replace(KEY_PLACEHOLDER, self.key) for name, value in given.items()}
        own_key = any(KEY_PLACEHOLDER in value for value in given.values())
        return extra if own_key else {**self.headers, **extra}

    def files_for(self, scenario: Scenario) -> dict[str, Path]:
        stem = scenario.name.replace("/", "--")
        body = self.workdir / f"{stem}.json"
        if not body.exists():
            body.write_bytes(orjson.dumps(scenario.workload.body))
        files = {"body": body}
        if wrk.available():
            headers = {"Content-Type": "application/json", **self.request_headers(scenario)}
            script = self.workdir / f"{stem}.lua"
            files["script"] = wrk.write_script(script, body, headers, scenario.workload.expect)
        return files

    def _load(self, scenario: Scenario, duration: float) -> drivers.Load:
        load = self.drivers.run(
            drivers.driver_for(scenario.workload, self.args.driver),
            self.running[scenario.target].url + scenario.workload.path,
            scenario.workload,
            self.files_for(scenario),
            self.request_headers(scenario),
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
        if self.py_spy and server.spec.gateway is not None:
            out = self.workdir / f"profile-{scenario.name.replace('/', '--')}.txt"
            recorder = profiling.Recorder(server.pid, out, self.args.duration)
        on_redis = server.spec.gateway is not None and server.spec.gateway.redis
        redis_before = self.redis_cpu_seconds() if on_redis else None
        cpu_before, upstream_before = server.cpu_seconds(), upstream.cpu_seconds()
        load = self._load(scenario, self.args.duration)
        cpu, upstream_cpu = server.cpu_seconds() - cpu_before, upstream.cpu_seconds() - upstream_before
        redis_after = self.redis_cpu_seconds() if on_redis else None
        if recorder is not None:
            recorder.wait()
        return report.RowResult(
            scenario,
            scenario.label or server.spec.label,
            load,
            server_cpu_s=cpu,
            peak_rss_mb=procstat.peak_rss_mb(server.pid),
            upstream_cpu_s=None if server is upstream else upstream_cpu,
            redis_cpu_s=None if redis_before is None or redis_after is None else redis_after - redis_before,
        )

    def redis_description(self) -> str | None:
        """For the header of a run with Redis-backed rows: which Redis, and that others may be using it."""
        if not self.uses_redis:
            return None
        import redis

        try:
            with redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2) as client:
                version = client.info("server").get("redis_version", "?")
                clients = client.info("clients").get("connected_clients", "?")
        except redis.RedisError as exc:
            return f"Redis {self.redis_url}: {exc}"
        return (
            f"Redis {version} at {self.redis_url}, namespace {self.redis_namespace} "
            f"({clients} clients connected at the start: it is shared)"
        )

    def redis_cpu_seconds(self) -> float | None:
        """The Redis server's own CPU time so far (``INFO cpu``); None when it cannot be read."""
        import redis

        try:
            with redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2) as client:
                info = client.info("cpu")
        except redis.RedisError:
            return None
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def profile_report(self) -> str:
        if self.py_spy:
            raws = sorted(self.workdir.glob("profile-*.txt"), key=lambda p: p.stat().st_mtime)
            return "\n\n".join(profiling.summarize(raw) for raw in raws) or "py-spy recorded nothing"
        stats = sorted(self.workdir.glob("*.prof"))
        if not stats:
            return f"no cProfile output in {self.workdir}"
        return "\n\n".join(f"{path.name}\n{profiling.summarize_cprofile(path)}" for path in stats)

    def usage_notes(self) -> list[str]:
        """After omnirelay stopped: how many usage rows (and settlements) reached each variant's database, to show
        that metering and billing really ran."""
        notes = []
        for name, server in self.running.items():
            gateway = server.spec.gateway
            if gateway is None:
                continue
            database = gateway.database_path(self._context(""))
            if not database.exists():
                continue
            with contextlib.closing(sqlite3.connect(database)) as connection:
                rows = int(connection.execute("SELECT count(*) FROM usage_logs").fetchone()[0])
                entries = int(
                    connection.execute("SELECT count(*) FROM ledger_entries WHERE kind = 'settlement'").fetchone()[0]
                )
                limits = connection.execute("SELECT spend_cap_micros, rpm, tpm, spent_micros FROM api_keys").fetchone()
            sent = self.completed.get(name, 0)
            note = f"{name}: {rows:,} usage rows, {entries:,} ledger settlements (requests it finished, warm-ups "
            note += f"included: ~{sent:,})"
            if limits is not None and any(value is not None for value in limits[:3]):
                cap, rpm, tpm, spent = limits
                cap_text = "none" if cap is None else f"${cap / 1e6:,.0f}"
                note += f"; key limits: spend cap {cap_text}, rpm {rpm or '-'}, tpm {tpm or '-'}; "
                note += f"key spent ${spent / 1e6:.4f}"
            if gateway.redis:
                note += f"; limiter: Redis {self.redis_url}, namespace {self.redis_namespace}"
            notes.append(note)
        return notes

    def redis_cleanup(self) -> str | None:
        """Delete the run's Redis keys (its namespace only); report how many there were and the open holds."""
        if not self.uses_redis:
            return None
        import redis

        prefix = f"omnirelay:{{{self.redis_namespace}}}:"
        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=2)
            holds = int(client.hlen(prefix + "hold"))
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            client.close()
        except redis.RedisError as exc:
            return f"Redis cleanup of namespace {self.redis_namespace} failed: {exc}"
        return f"Redis: the run left {len(keys)} keys in its namespace (deleted), {holds} budget holds still open"
