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

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_s * 1000 / self.load.completed if self.load.completed else 0.0

    @property
    def driver_cpu_pct(self) -> float:
        return 100 * self.load.driver_cpu_s / self.load.duration_s if self.load.duration_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.scenario.name,
            "group": self.scenario.group,
            "target": self.scenario.target,
            "floor": self.scenario.floor,
            "server": self.server_label,
            "load": asdict(self.load),
            "rps": self.load.rps,
            "server_cpu_s": self.server_cpu_s,
            "cpu_ms_per_request": self.cpu_ms_per_request,
            "peak_rss_mb": self.peak_rss_mb,
            "upstream_cpu_s": self.upstream_cpu_s,
            "driver_cpu_pct": self.driver_cpu_pct,
            "rps_ratio": self.rps_ratio,
            "cpu_ratio": self.cpu_ratio,
        }


def median_run(runs: list[RowResult]) -> RowResult:
    """Of several runs of one row, the one with the median req/s; its errors become the sum over all runs."""
    ordered = sorted(runs, key=lambda r: r.load.rps)
    chosen = ordered[(len(ordered) - 1) // 2]
    chosen.load.errors = sum(r.load.errors for r in runs)
    chosen.load.error_samples = [s for r in runs for s in r.load.error_samples][:5]
    return chosen


def compare(rows: list[RowResult]) -> None:
    """Fill the ratios of every row that names a floor present in this run."""
    by_name = {r.scenario.name: r for r in rows}
    for row in rows:
        floor = by_name.get(row.scenario.floor or "")
        if floor is None:
            continue
        if floor.load.rps:
            row.rps_ratio = row.load.rps / floor.load.rps
        if floor.cpu_ms_per_request:
            row.cpu_ratio = row.cpu_ms_per_request / floor.cpu_ms_per_request


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
    "TTFB p50 ms",
    "CPU ms/req",
    "peak RSS MB",
    "req/s vs floor",
    "CPU/req vs floor",
    "errors",
    "driver CPU",
)


def table_rows(rows: list[RowResult]) -> list[tuple[str, ...]]:
    out = []
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
                _num(load.ttfb_p50_ms, 2),
                _num(row.cpu_ms_per_request, 3),
                _num(row.peak_rss_mb, 1),
                rps_ratio,
                cpu_ratio,
                f"**{load.errors:,} ERRORS**" if load.errors else "0",
                f"{row.driver_cpu_pct:.0f}%",
            )
        )
    return out


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


def verdicts(rows: list[RowResult]) -> list[str]:
    lines = []
    for row in rows:
        if row.rps_ratio is None or row.cpu_ratio is None:
            continue
        floor_errors = sum(r.load.errors for r in rows if r.scenario.name == row.scenario.floor)
        if row.load.errors or floor_errors:
            lines.append(f"{row.scenario.name}: not judged, the row or its floor had errors")
            continue
        rps_ok = row.rps_ratio >= RPS_TARGET
        cpu_ok = row.cpu_ratio <= CPU_TARGET
        lines.append(
            f"{row.scenario.name}: req/s {row.rps_ratio:.0%} of floor (target ≥ {RPS_TARGET:.0%}) "
            f"{'PASS' if rps_ok else 'FAIL'}; "
            f"CPU/req {row.cpu_ratio:.2f}x floor (target ≤ {CPU_TARGET:.0f}x) "
            f"{'PASS' if cpu_ok else 'FAIL'}"
        )
    return lines


def error_banner(rows: list[RowResult]) -> str | None:
    bad = [r for r in rows if r.load.errors]
    if not bad:
        return None
    lines = ["", "!" * 78, "!!! THIS RUN HAD ERRORS — its numbers are not valid", "!" * 78]
    for row in bad:
        lines.append(f"  {row.scenario.name}: {row.load.errors} failed requests (all runs of the row)")
        lines += [f"      e.g. {sample}" for sample in row.load.error_samples[:3]]
    return "\n".join(lines)
