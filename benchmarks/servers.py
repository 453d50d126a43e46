"""Server processes for a run: each in its own process group, started, health-checked and always cleaned up.

A :class:`ServerSpec` says how to launch one kind of server; add one to :data:`SERVERS` to make it a target
that scenarios can name. Every server is started with the same interpreter and a free 127.0.0.1 port.
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

from benchmarks import procstat

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LaunchContext:
    """What a launcher may need: the work directory, the upstream's URL, the client key, the upstream kind."""

    workdir: Path
    upstream_url: str
    client_key: str
    upstream_kind: str
    profile: bool = False
    """Run omnirelay under cProfile (stats in ``workdir/omnirelay.prof``)."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    label: str
    """How the table names it."""
    argv: Callable[[LaunchContext, int], list[str]]
    """Command line for a given port (``sys.executable`` first)."""
    needs_upstream: bool = True


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

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM to the process group (uvicorn shuts down gracefully), SIGKILL after ``grace`` seconds."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


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
            "omnirelay",
            "omnirelay",
            lambda ctx, port: _module(
                "benchmarks.serve_omnirelay",
                "--config",
                str(ctx.workdir / "omnirelay.yaml"),
                "--port",
                str(port),
                *(["--profile", str(ctx.workdir / "omnirelay.prof")] if ctx.profile else []),
            ),
        ),
    )
}
