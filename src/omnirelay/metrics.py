"""Prometheus metrics, counted in plain Python and rendered only when scraped.

``prometheus_client``'s ``labels(...).inc()`` takes a lock and walks a label dict per call, several times per
request; here a finished call costs a handful of dict updates in ``CallStats.record`` (one call, from
``Relay._finish``), and ``render`` turns the totals into the text format at scrape time.

Labels are low-cardinality by construction: surface, endpoint and error code are closed sets of the code's own
names; model and channel names come from the operator's configuration (a call whose model is not served is refused
before it is counted). Each family still holds at most ``MAX_SERIES`` label sets, past which new ones count under
``other``, so a bug or a huge config cannot make a scrape unbounded. Never a key, never a request id.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from omnirelay.formats.usage import Usage

MAX_SERIES = 2000
OTHER = "other"

# Seconds. Latency spans a cached 20 ms answer to a long generation; time to first token sits lower.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative, as Prometheus wants them."""
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class LabelCounts:
    """A counter family kept as a dict: label values -> count. At most ``MAX_SERIES`` label sets; past that, new
    ones count under ``other`` in every label."""

    __slots__ = ("counts", "width")

    def __init__(self, width: int) -> None:
        self.counts: dict[tuple[str, ...], int] = {}
        self.width = width

    def inc(self, *labels: str) -> None:
        counts = self.counts
        if labels not in counts and len(counts) >= MAX_SERIES:
            labels = (OTHER,) * self.width
        counts[labels] = counts.get(labels, 0) + 1


class TaskCounts:
    """Asynchronous tasks as they are submitted and as they end, counted by the task engine on this instance.

    ``submits``: (task surface, result) with result ``accepted`` or the refusal's error code; ``finishes``:
    (vendor, final status), counted by the instance that ended the task (so summed over instances, each once)."""

    __slots__ = ("finishes", "submits")

    def __init__(self) -> None:
        self.submits = LabelCounts(2)
        self.finishes = LabelCounts(2)


# Positions in a ``CallStats.rows`` value.
CALLS, INPUT, OUTPUT, CACHED, REASONING, SPEND, LATENCY, LATENCY_SUM, TTFT, TTFT_SUM = range(10)


class CallStats:
    """Every relayed call's outcome, accumulated as it finishes: one row per (surface, endpoint, model, channel,
    status class, error code), holding its counters and histogram buckets, so ``record`` is one dict lookup and
    a few list updates; ``families`` sums the rows into the exposed series at scrape time. ``in_flight`` and
    ``streams`` are gauges the relay moves itself.

    ``refusals`` counts relay requests refused before any upstream attempt, by stage and HTTP status: ``request``
    (the front and the surfaces: a wrong key, a model not served or not allowed, a body too large or malformed, an
    address throttled for failed authentications; these never become calls, so they are nowhere else) and
    ``admission`` (rate limits and budgets; these are calls too, so they also count in the call rows). ``tasks``
    is filled by the task engine."""

    __slots__ = ("in_flight", "overhead", "refusals", "rows", "streams", "tasks")

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str, str, int, str], list[Any]] = {}
        self.overhead = Histogram(OVERHEAD_BUCKETS)
        self.in_flight = 0
        self.streams = 0
        self.refusals = LabelCounts(2)
        self.tasks = TaskCounts()

    def refused(self, status: int, stage: str = "request") -> None:
        """A relay request answered ``status`` (>= 400) before any upstream attempt."""
        self.refusals.inc(stage, str(status))

    def _row(self, key: tuple[str, str, str, str, int, str]) -> list[Any]:
        if len(self.rows) >= MAX_SERIES:
            surface, endpoint, _, _, status, error = key
            key = (surface, endpoint, OTHER, OTHER, status, error)  # surfaces, endpoints and codes: closed sets
            row = self.rows.get(key)
            if row is not None:
                return row
        row = self.rows[key] = [
            0, 0, 0, 0, 0, 0, [0] * (len(LATENCY_BUCKETS) + 1), 0.0, [0] * (len(TTFT_BUCKETS) + 1), 0.0
        ]  # fmt: skip
        return row

    def record(
        self,
        surface: str,
        endpoint: str,
        model: str,
        channel: str | None,
        status: int,
        error_code: str | None,
        usage: Usage,
        cost_micros: int,
        latency_s: float,
        ttft_s: float | None,
        overhead_s: float,
    ) -> None:
        key = (surface, endpoint, model, channel or "", status // 100, error_code or "")
        row = self.rows.get(key)
        if row is None:
            row = self._row(key)
        row[CALLS] += 1
        row[INPUT] += usage.input_tokens
        row[OUTPUT] += usage.output_tokens
        row[CACHED] += usage.cached_input_tokens
        row[REASONING] += usage.reasoning_tokens
        row[SPEND] += cost_micros
        row[LATENCY][bisect.bisect_left(LATENCY_BUCKETS, latency_s)] += 1
        row[LATENCY_SUM] += latency_s
        if ttft_s is not None:
            row[TTFT][bisect.bisect_left(TTFT_BUCKETS, ttft_s)] += 1
            row[TTFT_SUM] += ttft_s
        self.overhead.observe(overhead_s)

    # --- scrape time -----------------------------------------------------------------------------------------

    def sums(
        self, labels: Callable[[tuple[str, str, str, str, int, str]], tuple[str, ...] | None], slot: int
    ) -> dict[tuple[str, ...], int]:
        out: dict[tuple[str, ...], int] = {}
        for key, row in list(self.rows.items()):
            names = labels(key)
            if names is not None and row[slot]:
                out[names] = out.get(names, 0) + row[slot]
        return out

    def histograms(self, slot: int, sum_slot: int, bounds: tuple[float, ...]) -> dict[tuple[str, str], Histogram]:
        out: dict[tuple[str, str], Histogram] = {}
        for key, row in list(self.rows.items()):
            if not any(row[slot]):
                continue
            histogram = out.get(key[:2])
            if histogram is None:
                histogram = out[key[:2]] = Histogram(bounds)
            histogram.counts = [a + b for a, b in zip(histogram.counts, row[slot], strict=True)]
            histogram.total += row[sum_slot]
        return out


@dataclass(slots=True)
class Snapshot:
    """What a scrape reads besides the call counters: gauges of the moment."""

    breakers: dict[tuple[str, str], int]
    """(channel name, state) -> breakers (the channel's own and its keys') in that state."""
    writer_pending: int
    tasks: dict[str, int]
    """task status -> tasks; empty when the task table could not be read."""
    auth_blocked_ips: int = 0


def _histogram_family(name: str, doc: str, histograms: dict[tuple[str, str], Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["surface", "endpoint"])
    for values, histogram in sorted(histograms.items()):
        family.add_metric(list(values), histogram.buckets(), histogram.total)
    return family


def _counter_family(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for names, count in sorted(values.items()):
        family.add_metric(list(names), count)
    return family


def _families(stats: CallStats, snapshot: Snapshot) -> Iterator[Metric]:
    yield _counter_family(
        "omnirelay_requests",
        "Relayed calls by surface, endpoint and status class.",
        ["surface", "endpoint", "status"],
        stats.sums(lambda k: (k[0], k[1], STATUS_CLASSES.get(k[4], "5xx")), CALLS),
    )
    yield _counter_family(
        "omnirelay_errors",
        "Calls that ended in an error, by error code.",
        ["surface", "code"],
        stats.sums(lambda k: (k[0], k[5]) if k[5] else None, CALLS),
    )
    yield _histogram_family(
        "omnirelay_request_duration_seconds",
        "From the call's arrival to the end of its answer.",
        stats.histograms(LATENCY, LATENCY_SUM, LATENCY_BUCKETS),
    )
    yield _histogram_family(
        "omnirelay_time_to_first_token_seconds",
        "Streams: from the call's arrival to the first output sent to the client.",
        stats.histograms(TTFT, TTFT_SUM, TTFT_BUCKETS),
    )
    overhead = HistogramMetricFamily(
        "omnirelay_overhead_seconds", "Time spent in the gateway itself, upstream time excluded."
    )
    overhead.add_metric([], stats.overhead.buckets(), stats.overhead.total)
    yield overhead
    tokens: dict[tuple[str, ...], int] = {}
    for kind, slot in (("input", INPUT), ("output", OUTPUT), ("cached_input", CACHED), ("reasoning", REASONING)):
        tokens.update(stats.sums(lambda k, kind=kind: (k[2], k[3], kind) if k[3] else None, slot))  # type: ignore[misc]
    yield _counter_family(
        "omnirelay_tokens", "Tokens metered, by model, channel and kind.", ["model", "channel", "kind"], tokens
    )
    yield _counter_family(
        "omnirelay_spend_micro_usd",
        "Charged to accounts, in micro-USD (1e-6 USD).",
        ["model", "channel"],
        stats.sums(lambda k: (k[2], k[3]) if k[3] else None, SPEND),
    )
    yield _counter_family(
        "omnirelay_refusals",
        "Relay requests refused before any upstream attempt, by stage (request: never became a call; admission: "
        "rate limits and budgets) and HTTP status.",
        ["stage", "status"],
        stats.refusals.counts,
    )
    yield _counter_family(
        "omnirelay_task_submits",
        "Asynchronous task submissions, by task surface and result (accepted, or the refusal's error code).",
        ["surface", "result"],
        stats.tasks.submits.counts,
    )
    yield _counter_family(
        "omnirelay_task_finishes",
        "Asynchronous tasks ended by this instance, by vendor and final status.",
        ["vendor", "status"],
        stats.tasks.finishes.counts,
    )
    yield GaugeMetricFamily("omnirelay_in_flight_calls", "Relayed calls in progress.", value=stats.in_flight)
    yield GaugeMetricFamily("omnirelay_in_flight_streams", "Streams being relayed to clients.", value=stats.streams)
    breakers = GaugeMetricFamily(
        "omnirelay_breakers", "Circuit breakers (a channel's and its keys') by state.", labels=["channel", "state"]
    )
    for (channel, state), count in sorted(snapshot.breakers.items()):
        breakers.add_metric([channel, state], count)
    yield breakers
    yield GaugeMetricFamily(
        "omnirelay_usage_writer_pending", "Usage rows waiting for the batch writer.", value=snapshot.writer_pending
    )
    tasks = GaugeMetricFamily("omnirelay_tasks", "Asynchronous tasks by status.", labels=["status"])
    for status, count in sorted(snapshot.tasks.items()):
        tasks.add_metric([status], count)
    yield tasks
    yield GaugeMetricFamily(
        "omnirelay_auth_blocked_ips",
        "Client addresses refused for too many failed authentications.",
        value=snapshot.auth_blocked_ips,
    )


class _Collected:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(stats: CallStats, snapshot: Snapshot) -> bytes:
    """The Prometheus text exposition of everything above."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(_families(stats, snapshot)))  # type: ignore[arg-type]
    return generate_latest(registry)
