"""Results of a run and how they are printed: an aligned Markdown table, target verdicts, an error banner."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.drivers import Load
from benchmarks.scenarios import Scenario

RPS_TARGET = 0.5
"""omnirelay must reach at least this share of the floor's requests/s..."""
CPU_TARGET = 2.0
"""...and spend at most this multiple of the floor's CPU per request."""


@dataclass
class RowResult:
    scenario: Scenario
    server_label: str
    load: Load
    server_cpu_s: float
    peak_rss_mb: float
    upstream_cpu_s: float | None = None
    rps_ratio: float | None = None
    cpu_ratio: float | None = None
    baseline_ratio: float | None = None
    """CPU per output token (streams) or per request (plain) ÷ the baseline row's."""
    added_ttft_ms: float | None = None
    """TTFT p50 minus the reference row's TTFT p50."""
    added_ttft_p99_ms: float | None = None
    added_p50_ms: float | None = None
    """Latency p50 minus the latency reference row's (the same server without faults)."""
    added_p99_ms: float | None = None
    redis_cpu_s: float | None = None
    """Redis-backed rows: the Redis server's CPU time over the window (``INFO cpu``; other clients included)."""

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_s * 1000 / self.load.completed if self.load.completed else 0.0

    @property
    def cpu_us_per_token(self) -> float | None:
        """Streams: server CPU / (requests it finished * output tokens per stream), in microseconds."""
        tokens = self.scenario.workload.output_tokens
        if not self.scenario.workload.stream or not tokens:
            return None
        return self.cpu_ms_per_request * 1000 / tokens

    @property
    def success_rate(self) -> float | None:
        """Share of the measured requests the client got a good answer for."""
        return (self.load.requests - self.load.errors) / self.load.requests if self.load.requests else None

    @property
    def driver_cpu_pct(self) -> float:
        return 100 * self.load.driver_cpu_s / self.load.duration_s if self.load.duration_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.scenario.name,
            "group": self.scenario.group,
            "target": self.scenario.target,
            "floor": self.scenario.floor,
            "baseline": self.scenario.baseline,
            "ttft_reference": self.scenario.ttft_reference,
            "stream": self.scenario.workload.stream,
            "output_tokens": self.scenario.workload.output_tokens,
            "server": self.server_label,
            "load": asdict(self.load),
            "rps": self.load.rps,
            "server_cpu_s": self.server_cpu_s,
            "cpu_ms_per_request": self.cpu_ms_per_request,
            "cpu_us_per_token": self.cpu_us_per_token,
            "peak_rss_mb": self.peak_rss_mb,
            "upstream_cpu_s": self.upstream_cpu_s,
            "driver_cpu_pct": self.driver_cpu_pct,
            "rps_ratio": self.rps_ratio,
            "cpu_ratio": self.cpu_ratio,
            "baseline_ratio": self.baseline_ratio,
            "added_ttft_ms": self.added_ttft_ms,
            "added_ttft_p99_ms": self.added_ttft_p99_ms,
            "latency_reference": self.scenario.latency_reference,
            "added_p50_ms": self.added_p50_ms,
            "added_p99_ms": self.added_p99_ms,
            "success_rate": self.success_rate,
            "redis_cpu_s": self.redis_cpu_s,
        }


def median_run(runs: list[RowResult]) -> RowResult:
    """Of several runs of one row, the one with the median req/s; its errors become the sum over all runs (so a
    failure in any run shows), and for fault rows its requests too, so the success rate is over all of them."""
    ordered = sorted(runs, key=lambda r: r.load.rps)
    chosen = ordered[(len(ordered) - 1) // 2]
    chosen.load.errors = sum(r.load.errors for r in runs)
    if chosen.scenario.faults:
        chosen.load.requests = sum(r.load.requests for r in runs)
        chosen.load.duration_s = sum(r.load.duration_s for r in runs)  # keeps req/s the runs' mean
    chosen.load.error_samples = [s for r in runs for s in r.load.error_samples][:5]
    return chosen


def _cpu_unit(row: RowResult) -> float:
    """What baseline comparisons divide: CPU per output token for streams, per request otherwise."""
    per_token = row.cpu_us_per_token
    return per_token if per_token is not None else row.cpu_ms_per_request


def compare(rows: list[RowResult]) -> None:
    """Fill the ratios of every row whose floor, baseline or TTFT reference is present in this run."""
    by_name = {r.scenario.name: r for r in rows}
    for row in rows:
        floor = by_name.get(row.scenario.floor or "")
        if floor is not None:
            if floor.load.rps:
                row.rps_ratio = row.load.rps / floor.load.rps
            if floor.cpu_ms_per_request:
                row.cpu_ratio = row.cpu_ms_per_request / floor.cpu_ms_per_request
        baseline = by_name.get(row.scenario.baseline or "")
        if baseline is not None and _cpu_unit(baseline):
            row.baseline_ratio = _cpu_unit(row) / _cpu_unit(baseline)
        reference = by_name.get(row.scenario.ttft_reference or "")
        if reference is not None:
            mine, theirs = row.load, reference.load
            if mine.ttft_p50_ms is not None and theirs.ttft_p50_ms is not None:
                row.added_ttft_ms = mine.ttft_p50_ms - theirs.ttft_p50_ms
            if mine.ttft_p99_ms is not None and theirs.ttft_p99_ms is not None:
                row.added_ttft_p99_ms = mine.ttft_p99_ms - theirs.ttft_p99_ms
        clean = by_name.get(row.scenario.latency_reference or "")
        if clean is not None:
            mine, theirs = row.load, clean.load
            if mine.latency_p50_ms is not None and theirs.latency_p50_ms is not None:
                row.added_p50_ms = mine.latency_p50_ms - theirs.latency_p50_ms
            if mine.latency_p99_ms is not None and theirs.latency_p99_ms is not None:
                row.added_p99_ms = mine.latency_p99_ms - theirs.latency_p99_ms


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _ratio(row: RowResult) -> tuple[str, str]:
    if row.rps_ratio is None and row.cpu_ratio is None:
        return ("1.00 (floor)", "1.00 (floor)") if row.scenario.target == "bare" else ("—", "—")
    return (
        "—" if row.rps_ratio is None else f"{row.rps_ratio:.2f}",
        "—" if row.cpu_ratio is None else f"{row.cpu_ratio:.2f}x",
    )


HEADERS = (
    "scenario",
    "server",
    "driver",
    "req/s",
    "p50 ms",
    "p99 ms",
    "TTFT p50 ms",
    "CPU ms/req",
    "CPU µs/token",
    "peak RSS MB",
    "req/s vs floor",
    "CPU/req vs floor",
    "errors",
    "driver CPU",
)


def table_rows(rows: list[RowResult]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in rows:
        load = row.load
        rps_ratio, cpu_ratio = _ratio(row)
        out.append(
            (
                row.scenario.group,
                row.server_label,
                load.driver,
                _num(load.rps, 0),
                _num(load.latency_p50_ms, 2),
                _num(load.latency_p99_ms, 2),
                _num(load.ttft_p50_ms, 2),
                _num(row.cpu_ms_per_request, 3),
                _num(row.cpu_us_per_token, 1),
                _num(row.peak_rss_mb, 1),
                rps_ratio,
                cpu_ratio,
                _errors_cell(row),
                f"{row.driver_cpu_pct:.0f}%",
            )
        )
    return out


def _errors_cell(row: RowResult) -> str:
    errors = row.load.errors
    if not errors:
        return "0"
    if row.scenario.faults:  # the measurement, not a failure
        return f"{errors:,} ({100 * errors / row.load.requests:.2f}%)" if row.load.requests else f"{errors:,}"
    return f"**{errors:,} ERRORS**"


def markdown_table(rows: list[RowResult]) -> str:
    body = table_rows(rows)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(HEADERS)]
    numeric = set(range(3, len(HEADERS)))

    def line(cells: tuple[str, ...]) -> str:
        padded = [
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(HEADERS), rule, *(line(r) for r in body)])


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _floor_verdict(row: RowResult, by_name: dict[str, RowResult]) -> str:
    assert row.rps_ratio is not None and row.cpu_ratio is not None
    if not row.scenario.target.startswith("omnirelay"):  # a reference row: the targets are omnirelay's
        return (
            f"{row.scenario.name}: req/s {row.rps_ratio:.0%} of floor {row.scenario.floor}, CPU/req "
            f"{row.cpu_ratio:.2f}x floor (a reference, no target)"
        )
    return (
        f"{row.scenario.name}: req/s {row.rps_ratio:.0%} of floor {row.scenario.floor} (target ≥ {RPS_TARGET:.0%}) "
        f"{_verdict(row.rps_ratio >= RPS_TARGET)}; CPU/req {row.cpu_ratio:.2f}x floor (target ≤ {CPU_TARGET:.0f}x) "
        f"{_verdict(row.cpu_ratio <= CPU_TARGET)}"
    )


def _baseline_verdict(row: RowResult, by_name: dict[str, RowResult]) -> str:
    assert row.baseline_ratio is not None
    baseline = by_name[row.scenario.baseline or ""]
    target = row.scenario.baseline_target
    if row.cpu_us_per_token is not None and baseline.cpu_us_per_token is not None:
        what = (
            f"CPU per streamed token {row.cpu_us_per_token:.1f} µs = {row.baseline_ratio:.2f}x "
            f"{baseline.scenario.name} ({baseline.cpu_us_per_token:.1f} µs)"
        )
    else:
        delta = row.cpu_ms_per_request - baseline.cpu_ms_per_request
        what = (
            f"CPU/req {row.cpu_ms_per_request:.3f} ms = {row.baseline_ratio:.2f}x {baseline.scenario.name} "
            f"({delta:+.3f} ms/req)"
        )
    if row.redis_cpu_s is not None and row.load.completed:
        what += f"; Redis server CPU {row.redis_cpu_s * 1000 / row.load.completed:.3f} ms/req (shared Redis)"
    if target is None:
        return f"{row.scenario.name}: {what}"
    return f"{row.scenario.name}: {what} (target ≤ {target:g}x) {_verdict(row.baseline_ratio <= target)}"


def _ttft_line(row: RowResult, by_name: dict[str, RowResult]) -> str:
    assert row.added_ttft_ms is not None
    p99 = "" if row.added_ttft_p99_ms is None else f", p99 {row.added_ttft_p99_ms:+.1f} ms"
    return (
        f"{row.scenario.name}: TTFT p50 {row.load.ttft_p50_ms:.1f} ms, added vs {row.scenario.ttft_reference}: "
        f"p50 {row.added_ttft_ms:+.1f} ms{p99}"
    )


def _fault_line(row: RowResult, by_name: dict[str, RowResult]) -> str:
    rate = row.success_rate
    line = f"{row.scenario.name}: {_pct(rate)} of {row.load.requests:,} requests succeeded for the client"
    if row.added_p50_ms is not None and row.added_p99_ms is not None:
        line += (
            f"; latency added vs {row.scenario.latency_reference}: p50 {row.added_p50_ms:+.1f} ms, "
            f"p99 {row.added_p99_ms:+.1f} ms"
        )
    return line


def _pct(rate: float | None) -> str:
    if rate is None:
        return "—"
    return f"{100 * rate:.2f}%" if rate < 0.9999 or rate == 1 else f"{100 * rate:.3f}%"


def verdicts(rows: list[RowResult]) -> list[str]:
    """One line per comparison: floor targets, baseline CPU ratios (with their target when they have one), added
    TTFT. A comparison involving a row with errors is not judged."""
    by_name = {r.scenario.name: r for r in rows}
    lines = []
    for row in rows:
        scenario = row.scenario
        checks = (
            (scenario.floor, row.rps_ratio is not None and row.cpu_ratio is not None, _floor_verdict),
            (scenario.baseline, row.baseline_ratio is not None, _baseline_verdict),
            (scenario.ttft_reference, row.added_ttft_ms is not None, _ttft_line),
        )
        if scenario.faults:
            lines.append(_fault_line(row, by_name))
        for other, filled, line in checks:
            if other is None or not filled:
                continue
            if _broken(row) or _broken(by_name[other]):
                lines.append(f"{scenario.name}: not compared with {other}, one of them had errors")
                continue
            lines.append(line(row, by_name))
    return lines


def _broken(row: RowResult) -> bool:
    """Errors in a row whose upstream was not told to fail: its numbers are not valid."""
    return bool(row.load.errors) and not row.scenario.faults


def error_banner(rows: list[RowResult]) -> str | None:
    bad = [r for r in rows if _broken(r)]
    if not bad:
        return None
    lines = ["", "!" * 78, "!!! THIS RUN HAD ERRORS — its numbers are not valid", "!" * 78]
    for row in bad:
        lines.append(f"  {row.scenario.name}: {row.load.errors} failed requests (all runs of the row)")
        lines += [f"      e.g. {sample}" for sample in row.load.error_samples[:3]]
    return "\n".join(lines)
