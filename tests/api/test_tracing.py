"""OpenTelemetry traces (``omnirelay.tracing``): what a tracing backend receives for calls made with the official SDK,
read from the SDK's in-memory span exporter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from omnirelay.config import ChannelConfig, Settings, TracingSettings
from omnirelay.tracing import CallTracer, create_tracer
from tests.conftest import UPSTREAM_KEY, GatewayHarness, database_url_for, start_gateway
from tests.harness import ServerThread, free_port

PROMPT = "tracing-probe-prompt-text"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    settings = Settings(
        database_url=database_url_for("sqlite", tmp_path_factory.mktemp("db")),
        channels=[
            # gpt-4o: the dead channel is tried first (lower tier), then the live one
            ChannelConfig(name="dead", base_url=dead, api_keys=["sk-dead-" + "x" * 20], models=["gpt-4o"]),
            ChannelConfig(
                name="main",
                base_url=openai_sim.url + "/v1",
                api_keys=[UPSTREAM_KEY],
                models=["gpt-4o-mini", "gpt-4o"],
                priority=1,
            ),
        ],
        tracing=TracingSettings(enabled=True, exporter="console", service_name="omnirelay-test"),
    )
    harness = start_gateway(settings)
    harness.keys["k"] = harness.create_key("traced")
    yield harness
    harness.server.stop()


@pytest.fixture(scope="module")
def exporter(traced: GatewayHarness) -> InMemorySpanExporter:
    """The gateway was built with tracing on (its tracer comes from the config); the test swaps in a tracer of the
    same settings whose spans go to memory instead of the console."""
    assert isinstance(traced.relay.tracer, CallTracer)
    exporter = InMemorySpanExporter()
    traced.relay.tracer = create_tracer(traced.gateway.settings.tracing, SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    exporter.clear()
    return exporter


def client(gw: GatewayHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.keys["k"], max_retries=0)


def finished(exporter: InMemorySpanExporter, gw: GatewayHarness) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one server span and its attempt spans (in start order), once the call has ended."""
    # A call's spans end in ``_finish``, which has run once its usage is queued. A stream's client (the SDK stops
    # at ``[DONE]``) may be done before the gateway has read the upstream's end and finished the call: wait a bit.
    deadline = time.monotonic() + 5
    while True:
        gw.flush_usage()
        found = exporter.get_finished_spans()
        servers = [s for s in found if s.kind is SpanKind.SERVER]
        if servers or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(servers) == 1, found
    server = servers[0]
    attempts = sorted((s for s in found if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    for attempt in attempts:
        assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
        assert attempt.context.trace_id == server.context.trace_id
    return server, attempts


def no_secrets(span: ReadableSpan, gw: GatewayHarness) -> None:
    values = " ".join(str(v) for v in (span.attributes or {}).values())
    assert PROMPT not in values and gw.keys["k"] not in values and UPSTREAM_KEY not in values


def test_off_by_default_costs_nothing() -> None:
    assert create_tracer(TracingSettings()) is None
    assert Settings().tracing.enabled is False


def test_sdk_call_is_a_server_span_with_one_attempt(traced: GatewayHarness, spans: InMemorySpanExporter) -> None:
    completion = client(traced).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    assert completion.usage is not None
    server, attempts = finished(spans, traced)
    assert server.name == "chat gpt-4o-mini"
    assert server.resource.attributes["service.name"] == "omnirelay-test"
    attributes = server.attributes or {}
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["http.response.status_code"] == 200
    assert attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert "error.type" not in attributes and server.status.status_code is not StatusCode.ERROR
    [attempt] = attempts
    assert attempt.name == "chat gpt-4o-mini"
    assert (attempt.attributes or {})["server.address"] == "127.0.0.1"
    assert (attempt.attributes or {})["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert (attempt.attributes or {})["omnirelay.channel"] == "main"
    for span in (server, *attempts):
        no_secrets(span, traced)


def test_stream_span_ends_with_the_stream(traced: GatewayHarness, spans: InMemorySpanExporter) -> None:
    stream = client(traced).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
    server, [attempt] = finished(spans, traced)
    assert (server.attributes or {})["omnirelay.stream"] is True
    assert (server.attributes or {})["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attempt.end_time is not None and server.end_time is not None and attempt.end_time <= server.end_time


def test_failover_is_two_attempt_spans_the_first_with_its_error(
    traced: GatewayHarness, spans: InMemorySpanExporter
) -> None:
    completion = client(traced).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": PROMPT}])
    assert completion.choices[0].message.content
    server, attempts = finished(spans, traced)
    assert [(a.attributes or {})["omnirelay.channel"] for a in attempts] == ["dead", "main"]
    failed, answered = attempts
    assert (failed.attributes or {})["error.type"] == "upstream_error"  # connection refused
    assert failed.status.status_code is StatusCode.ERROR
    assert "error.type" not in (answered.attributes or {})
    assert (answered.attributes or {})["http.response.status_code"] == 200
    assert (server.attributes or {})["http.response.status_code"] == 200
    assert "error.type" not in (server.attributes or {})


def test_refused_call_carries_its_error_type(traced: GatewayHarness, spans: InMemorySpanExporter) -> None:
    with pytest.raises(openai.BadRequestError):
        client(traced).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], max_tokens=-5
        )
    server, _ = finished(spans, traced)
    assert (server.attributes or {})["error.type"]
    assert (server.attributes or {})["http.response.status_code"] == 400
    assert server.status.status_code is StatusCode.ERROR


def test_config_file_turns_tracing_on(tmp_path: Path) -> None:
    from omnirelay.config import load_settings

    path = tmp_path / "c.yaml"
    path.write_text("tracing: {enabled: true, exporter: otlp, endpoint: 'http://127.0.0.1:4318/v1/traces',"
                    " sample_ratio: 0.25}\n")  # fmt: skip
    tracing = load_settings(path).tracing
    assert (tracing.enabled, tracing.exporter, tracing.sample_ratio) == (True, "otlp", 0.25)
    tracer = create_tracer(tracing)
    assert tracer is not None
    tracer.shutdown()
