"""Smoke test of the soak run (``python -m benchmarks.run soak``): a few seconds of its mixed traffic must get every
answer the mix expects, sample the gateway's memory and file descriptors, and report them. It checks that the
harness works, not whether anything grows (that takes the 30-minute run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import soak

ROOT = Path(__file__).resolve().parents[1]


def test_soak_run_sends_the_mix_and_samples_the_gateway(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, "-m", "benchmarks.run", "soak", "--duration", "4", "--rate", "50"]
    command += ["--sample-every", "1", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["unexpected"] == 0 and result["skipped"] == 0
    assert 150 <= result["sent"] <= 210  # 4 s at 50 a second
    assert set(result["by_kind"]) == {kind.name for kind in soak.MIX}
    for kind in soak.MIX:
        assert list(result["by_kind"][kind.name]) == [str(kind.status)], kind
    samples = result["samples"]
    assert len(samples) >= 4 and samples[-1]["t"] >= 4
    assert all(s["rss_mb"] > 20 and 0 < s["sockets"] < s["fds"] for s in samples)
    assert result["rss_mb"]["max"] >= result["rss_mb"]["end"] > 0
    assert "RSS MB" in done.stdout and "open fds" in done.stdout and "slope" in done.stdout


def test_linear_slope_is_a_least_squares_fit() -> None:
    assert soak.linear_slope([(0, 1.0), (1, 3.0), (2, 5.0)]) == 2.0
    assert soak.linear_slope([(0, 5.0), (10, 5.0)]) == 0.0
    assert soak.linear_slope([(3, 1.0)]) == 0.0
