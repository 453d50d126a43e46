"""Load generators, each in its own process, returning a :class:`Load` summary per measured run.

``wrk`` drives plain responses when it is installed (``--driver auto``); streams always use the Python driver,
which measures time to first byte and to first token and checks every stream ended as its format ends one. The
Python driver is one persistent process (``benchmarks.loadgen --serve``) taking a job per row, so no interpreter
start falls inside a measured window. Each driver's own CPU time is recorded, so a saturated driver shows in the table.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from benchmarks import procstat, wrk
from benchmarks.scenarios import Workload
from benchmarks.servers import child_setup


@dataclass
class Load:
    driver: str
    requests: int
    """Requests finished inside the measured window (req/s counts these)."""
    completed: int
    """Requests the server finished for this load, including the ones in flight when the window closed."""
    errors: int
    duration_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    driver_cpu_s: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def driver_for(workload: Workload, choice: str) -> str:
    if choice == "python" or workload.stream:
        return "python"
    if choice == "wrk" and not wrk.available():
        raise SystemExit("--driver wrk: wrk is not installed (apt-get install wrk)")
    return "wrk" if wrk.available() else "python"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Drivers:
    """Runs loads; owns the persistent Python driver process (started on first use, stopped by ``close``)."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.cpus = cpus
        self._python: subprocess.Popen[str] | None = None

    def _python_process(self) -> subprocess.Popen[str]:
        if self._python is None or self._python.poll() is not None:
            self._python = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.loadgen", "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=child_setup(self.cpus),
            )
            self._read_line(self._python.stdout)  # {"ready": true}: imports done
        return self._python

    @staticmethod
    def _read_line(stream: IO[str] | None) -> str:
        line = stream.readline() if stream is not None else ""
        if not line:
            raise RuntimeError("the Python load driver exited (see its stderr above)")
        return line

    def run(
        self,
        driver: str,
        url: str,
        workload: Workload,
        files: dict[str, Path],
        headers: dict[str, str],
        *,
        concurrency: int,
        duration: float,
    ) -> Load:
        """``files`` holds ``body`` (the JSON request body) and, for wrk, ``script``."""
        if driver == "wrk":
            return self._run_wrk(url, files["script"], concurrency, duration)
        process = self._python_process()
        assert process.stdin is not None
        job = {
            "url": url,
            "body_file": str(files["body"]),
            "headers": headers,
            "concurrency": concurrency,
            "duration": duration,
            "stream": workload.stream,
            "stream_end": workload.expect,
            "first_token": workload.first_token,
        }
        cpu_before = procstat.cpu_seconds(process.pid)
        process.stdin.write(json.dumps(job) + "\n")
        process.stdin.flush()
        data = json.loads(self._read_line(process.stdout))
        data["driver"] = "python"
        return Load(**data, driver_cpu_s=procstat.cpu_seconds(process.pid) - cpu_before)

    def _run_wrk(self, url: str, script: Path, concurrency: int, duration: float) -> Load:
        before = _children_cpu()
        argv = wrk.command(url, script, concurrency=concurrency, duration=duration)
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + 60, check=False, preexec_fn=child_setup(self.cpus)
        )
        if out.returncode != 0:
            raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stderr[-3000:]}")
        data = wrk.parse(out.stdout)
        requests = int(str(data["requests"]))
        sample = str(data.get("sample") or "")
        return Load(
            driver="wrk",
            requests=requests,
            completed=requests,
            errors=int(str(data["transport_errors"])) + int(str(data["invalid"])),
            duration_s=int(str(data["duration_us"])) / 1e6,
            latency_p50_ms=int(str(data["p50_us"])) / 1000,
            latency_p99_ms=int(str(data["p99_us"])) / 1000,
            driver_cpu_s=_children_cpu() - before,
            error_samples=[sample] if sample else [],
        )

    def close(self) -> None:
        process, self._python = self._python, None
        if process is None or process.poll() is not None:
            return
        if process.stdin is not None:
            process.stdin.close()  # end of jobs: it exits
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
