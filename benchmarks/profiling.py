"""``--profile``: where omnirelay spends its CPU during the measured rows.

With py-spy installed (``pip install py-spy``; not a project dependency) each omnirelay row is sampled from the
outside (``py-spy record --nonblocking``, raw collapsed stacks kept in the work directory, loadable in speedscope)
and summarized here: the gateway's own functions by inclusive share of samples, and the hottest lines overall.
Without py-spy the launcher runs omnirelay under cProfile instead; cProfile's times for coroutines are rough.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Recorder:
    """Samples one process for ``duration`` seconds into ``out`` (py-spy raw format)."""

    def __init__(self, pid: int, out: Path, duration: float, rate: int = 100) -> None:
        executable = py_spy()
        assert executable is not None
        self.out = out
        argv = [executable, "record", "--pid", str(pid), "--duration", str(max(1, round(duration)))]
        argv += ["--rate", str(rate), "--format", "raw", "--nonblocking", "-o", str(out)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self) -> None:
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        if not self.out.exists():
            print(f"py-spy wrote no profile: {err.strip()[-500:]}", file=sys.stderr)


def _package(frame: str) -> str:
    """``Relay._finish (omnirelay/api/relay.py:231)`` -> ``omnirelay``."""
    location = frame.rpartition(" (")[2]
    return location.split("/", 1)[0] if "/" in location else location.rstrip(")").split(":")[0] or "?"


def summarize(raw: Path, focus: str = "omnirelay/", limit: int = 25) -> str:
    """Top functions under ``focus`` by inclusive share of samples, then the hottest lines anywhere."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        leaf[frames[-1]] += samples
        packages[_package(frames[-1])] += samples
        for function in {_LINE.sub(")", f) for f in frames if focus in f}:
            inclusive[function] += samples
    if not total:
        return f"{raw.name}: no samples"
    shares = ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in packages.most_common(8))
    out = [f"{raw.name}: {total} samples; own time by package: {shares}", f"{focus} functions by inclusive share"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(limit)]
    out.append("hottest lines (own time, any code)")
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in leaf.most_common(limit // 2)]
    return "\n".join(out)


def summarize_cprofile(path: Path, limit: int = 30) -> str:
    import io
    import pstats

    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.sort_stats("tottime").print_stats("omnirelay/", limit)
    return buffer.getvalue()
