"""Server processes for a run: each in its own process group, started, health-checked and always cleaned up.

A :class:`ServerSpec` says how to launch one kind of server; add one to :data:`SERVERS` to make it a target
that scenarios can name. Every server is started with the same interpreter and a free 127.0.0.1 port.
omnirelay variants are :class:`Omnirelay` data (limiter backend, key limits), each with its own config file,
SQLite database and, for Redis, the run's own ``redis_namespace``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmarks import procstat
from benchmarks.scenarios import MODEL

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LaunchContext:
    """What a launcher may need: the work directory, the upstream's URL, the client key, the upstream kind."""

    workdir: Path
    upstream_url: str
    client_key: str
    upstream_kind: str
    profile: bool = False
    """Run omnirelay under cProfile (stats in ``workdir/<server>.prof``)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_namespace: str = "omnirelay-bench"
    """Unique per run: the Redis-backed variants of one run share it, other runs and gateways never see it."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    label: str
    """How the table names it."""
    argv: Callable[[LaunchContext, int], list[str]]
    """Command line for a given port (``sys.executable`` first)."""
    needs_upstream: bool = True
    prepare: Callable[[LaunchContext], None] | None = None
    """Writes the files the command needs (a config) into the work directory before it starts."""
    gateway: Omnirelay | None = None
    """Set for omnirelay variants: profiled by ``--profile``, usage rows counted after the run."""


@dataclass
class ServerProcess:
    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    cpu_marks: list[float] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.pid)

    def terminate(self) -> None:
        """SIGTERM to the process group: uvicorn shuts down gracefully (omnirelay drains its usage queue)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def wait_or_kill(self, grace: float = 8.0) -> None:
        """Wait up to ``grace`` seconds for it to exit, then SIGKILL the process group."""
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds."""
        if self.process.poll() is not None:
            return
        self.terminate()
        self.wait_or_kill(grace)


def stop_all(processes: list[ServerProcess], grace: float = 8.0) -> None:
    """Stop several servers at once: SIGTERM to all, then wait for each (SIGKILL what outlives ``grace``)."""
    for server in processes:
        with contextlib.suppress(Exception):
            server.terminate()
    deadline = time.monotonic() + grace
    for server in processes:
        with contextlib.suppress(Exception):
            server.wait_or_kill(max(0.1, deadline - time.monotonic()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_setup(cpus: set[int] | None) -> Callable[[], None]:
    """Runs in the child before exec: die with the runner (even if it is SIGKILLed), optionally pin CPUs."""

    def setup() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, cpus)

    return setup


def start(spec: ServerSpec, context: LaunchContext, cpus: set[int] | None = None) -> ServerProcess:
    if spec.prepare is not None:
        spec.prepare(context)
    port = free_port()
    log_path = context.workdir / f"{spec.name}.log"
    argv = spec.argv(context, port)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C in the terminal reaches only the runner
            env=env,
            preexec_fn=child_setup(cpus),
        )
    return ServerProcess(spec, port, process, log_path)


def wait_ready(server: ServerProcess, timeout: float = 60.0) -> None:
    """Until ``GET /health`` answers, or the port accepts connections for servers without that route."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.spec.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered: the server is up even if it has no /health route
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{server.spec.name} did not become ready in {timeout:.0f} s:\n{server.log_tail()}")


def _module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", name, *args]


@dataclass(frozen=True)
class Omnirelay:
    """One omnirelay variant: how its config differs from the plain one (SQLite, one channel, one bootstrap key
    that no budget or rate limit applies to)."""

    name: str
    redis: bool = False
    """``redis_url`` set (the limiter, budgets and rate windows in Redis) instead of the in-process limiter."""
    spend_cap_usd: float | None = None
    """The bootstrap key's spend cap (config ``keys: [{quota_usd: ...}]``): makes it a budgeted key, so every call
    reserves its worst case and settles its cost in the limiter."""
    rpm: int | None = None
    tpm: int | None = None
    """Rate limits of the bootstrap key. The config file's ``keys:`` entries cannot carry them, so the launcher
    creates the key with ``omnirelay.store.repo.create_key(..., rpm=, tpm=)`` before serving."""
    channels: int = 1
    """Channels serving the model, all to the one upstream, same priority and weight, each with its own upstream
    key: a call that fails on one fails over to another (breakers per channel and key on, as by default)."""
    models: tuple[str, ...] = (MODEL,)
    """What the channels serve."""
    extra_config: tuple[tuple[str, object], ...] = ()
    """Further top-level config entries, as (name, value) pairs."""

    def config_path(self, ctx: LaunchContext) -> Path:
        return ctx.workdir / f"{self.name}.yaml"

    def database_path(self, ctx: LaunchContext) -> Path:
        return ctx.workdir / f"{self.name}.db"

    def config(self, ctx: LaunchContext) -> dict[str, object]:
        """omnirelay's config as an operator would write it."""
        key: dict[str, object] = {"name": "bench", "key": ctx.client_key}
        if self.spend_cap_usd is not None:
            key["quota_usd"] = self.spend_cap_usd
        config: dict[str, object] = {
            "database_url": f"sqlite:///{self.database_path(ctx)}",
            "channels": [
                {
                    "name": "bench-upstream" + (f"-{index}" if index else ""),
                    "type": "openai",
                    "base_url": ctx.upstream_url + "/v1",
                    "api_keys": ["sk-bench-upstream-key" + (f"-{index}" if index else "")],
                    "models": list(self.models),
                }
                for index in range(self.channels)
            ],
            "keys": [key],
        }
        if self.redis:
            config |= {"redis_url": ctx.redis_url, "redis_namespace": ctx.redis_namespace}
        return config | dict(self.extra_config)

    def write_config(self, ctx: LaunchContext) -> None:
        self.config_path(ctx).write_text(yaml.safe_dump(self.config(ctx), sort_keys=False))

    def argv(self, ctx: LaunchContext, port: int) -> list[str]:
        args = ["--config", str(self.config_path(ctx)), "--port", str(port)]
        if self.rpm is not None:
            args += ["--key-rpm", str(self.rpm)]
        if self.tpm is not None:
            args += ["--key-tpm", str(self.tpm)]
        if ctx.profile:
            args += ["--profile", str(ctx.workdir / f"{self.name}.prof")]
        return _module("benchmarks.serve_omnirelay", *args)

    def spec(self, label: str) -> ServerSpec:
        return ServerSpec(self.name, label, self.argv, prepare=self.write_config, gateway=self)


def budgeted(name: str, *, redis: bool) -> Omnirelay:
    """A key with a spend cap and rpm/tpm limits that every call checks and none reaches (a call's worst case is
    about $0.00004; 10 M requests and 1 G tokens a minute)."""
    return Omnirelay(name, redis=redis, spend_cap_usd=100_000.0, rpm=10_000_000, tpm=1_000_000_000)


OMNIRELAYS = (
    (Omnirelay("omnirelay"), "omnirelay"),
    (budgeted("omnirelay-budget-memory", redis=False), "omnirelay, budgeted key, memory limiter"),
    (budgeted("omnirelay-budget-redis", redis=True), "omnirelay, budgeted key, Redis limiter"),
    (Omnirelay("omnirelay-3ch", channels=3), "omnirelay, three channels for the model"),
)

SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec(
            "upstream",
            "direct to upstream",
            lambda ctx, port: _module("benchmarks.serve_upstream", "--port", str(port), "--kind", ctx.upstream_kind),
            needs_upstream=False,
        ),
        ServerSpec(
            "bare",
            "bare relay (floor)",
            lambda ctx, port: _module("benchmarks.bare_relay", "--upstream", ctx.upstream_url, "--port", str(port)),
        ),
        ServerSpec(
            "bare-http1",
            "bare relay on omnirelay's HTTP client",
            lambda ctx, port: _module(
                "benchmarks.bare_relay", "--upstream", ctx.upstream_url, "--port", str(port), "--client", "http1"
            ),
        ),
        *(variant.spec(label) for variant, label in OMNIRELAYS),
    )
}
