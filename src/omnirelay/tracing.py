"""OpenTelemetry traces of relayed calls, an optional extra (``pip install omnirelay[otel]``), off by default.

One relayed call is one trace: a SERVER span for the call (from its arrival at the relay until its answer, stream
included, has ended) and, under it, a CLIENT span per upstream attempt. A failover shows as two attempt spans, the
first ending with ``error.type``. Attribute names follow the OpenTelemetry GenAI semantic conventions
(``gen_ai.provider.name``, ``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens``/``output_tokens``), plus ``server.address``, ``http.response.status_code`` and
``error.type``. Never prompt or answer content, never a key, never an account.

When tracing is off, ``create_tracer`` returns None and the relay's only cost is a None check: nothing from
``opentelemetry`` is imported. Each gateway owns its tracer provider (none is set globally), so two gateways in one
process trace apart.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from omnirelay.config import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span, Tracer

    from omnirelay.formats.usage import Usage
    from omnirelay.routing.registry import Candidate

# Channel type -> ``gen_ai.provider.name`` (the conventions' well-known values; other types are named as they are).
PROVIDER_NAMES: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "deepseek": "deepseek",
}

# (client surface, relay endpoint) -> ``gen_ai.operation.name``; any other endpoint is named as the relay names it.
OPERATION_NAMES: dict[tuple[str, str], str] = {
    ("openai", "chat"): "chat",
    ("anthropic", "chat"): "chat",
    ("gemini", "chat"): "generate_content",
    ("openai", "completions"): "text_completion",
    ("openai", "embeddings"): "embeddings",
    ("gemini", "embeddings"): "embeddings",
}


class MissingExtra(RuntimeError):
    """``tracing.enabled`` without the ``otel`` extra installed."""


def operation_name(surface: str, endpoint: str) -> str:
    return OPERATION_NAMES.get((surface, endpoint), endpoint)


class CallTrace:
    """The spans of one call: the server span, and the attempt span currently open (if any)."""

    __slots__ = ("_attempt", "_attempt_names", "_server", "_tracer", "operation")

    def __init__(self, tracer: Tracer, server: Span, operation: str) -> None:
        self._tracer = tracer
        self._server = server
        self._attempt: Span | None = None
        self._attempt_names: tuple[str, str] = ("", "")
        """The open attempt's provider and upstream model: the call's answer came from them if it succeeds."""
        self.operation = operation

    def attempt(self, candidate: Candidate) -> None:
        """An upstream attempt starts (the relay calls this right before sending)."""
        from opentelemetry.trace import SpanKind, set_span_in_context

        channel = candidate.channel
        provider = PROVIDER_NAMES.get(channel.type, channel.type)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": candidate.upstream_model,
            "omnirelay.channel": channel.name,
        }
        url = urlsplit(channel.base_url)
        if url.hostname:
            attributes["server.address"] = url.hostname
            if url.port:
                attributes["server.port"] = url.port
        self._attempt_names = (provider, candidate.upstream_model)
        self._attempt = self._tracer.start_span(
            f"{self.operation} {candidate.upstream_model}",
            context=set_span_in_context(self._server),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )

    def attempt_failed(self, error_type: str, status: int | None) -> None:
        """The open attempt failed before any byte reached the client (the relay may fail over)."""
        span = self._attempt
        if span is None:
            return
        self._attempt = None
        _mark_error(span, error_type, status)
        span.end()

    def end(self, status: int, error_type: str | None, usage: Usage) -> None:
        """The call ended, however it ended: close the attempt that answered (if one did) and the call's span."""
        answered, server = self._attempt, self._server
        self._attempt = None
        if answered is not None:
            provider, model = self._attempt_names
            answered.set_attribute("gen_ai.response.model", model)
            server.set_attribute("gen_ai.provider.name", provider)
            server.set_attribute("gen_ai.response.model", model)
        for span in (answered, server):
            if span is None:
                continue
            span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            if error_type is not None:
                _mark_error(span, error_type, status)
            else:
                span.set_attribute("http.response.status_code", status)
            span.end()


def _mark_error(span: Span, error_type: str, status: int | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    span.set_status(Status(StatusCode.ERROR))


class CallTracer:
    """Starts a ``CallTrace`` per relayed call, on the gateway's own tracer provider."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("omnirelay")

    def start(self, surface: str, endpoint: str, model: str, stream: bool, started: float) -> CallTrace:
        """``started`` is the call's ``time.perf_counter()`` at arrival: the span starts then, not now."""
        from opentelemetry.trace import SpanKind

        operation = operation_name(surface, endpoint)
        start_ns = time.time_ns() - int((time.perf_counter() - started) * 1e9)
        span = self._tracer.start_span(
            f"{operation} {model}",
            kind=SpanKind.SERVER,
            start_time=start_ns,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": model,
                "omnirelay.surface": surface,
                "omnirelay.stream": stream,
            },
        )
        return CallTrace(self._tracer, span, operation)

    def shutdown(self) -> None:
        """Export what is queued and stop (the provider also does this when the process exits)."""
        self.provider.shutdown()


def _processor(settings: TracingSettings) -> SpanProcessor:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if settings.exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise MissingExtra("tracing.exporter 'otlp' needs the otel extra: pip install 'omnirelay[otel]'") from exc
    return BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint) if settings.endpoint else OTLPSpanExporter())


def create_tracer(settings: TracingSettings, processor: SpanProcessor | None = None) -> CallTracer | None:
    """None when tracing is off. ``processor`` replaces the configured exporter (tests: an in-memory one)."""
    if not settings.enabled:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:
        raise MissingExtra("tracing.enabled needs the otel extra: pip install 'omnirelay[otel]'") from exc
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        shutdown_on_exit=True,  # flushes what is queued when the process exits
    )
    provider.add_span_processor(processor if processor is not None else _processor(settings))
    return CallTracer(provider)
