"""The OpenTelemetry sink against the real SDK's in-memory metric reader and span exporter."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from enforcement._dispatch import Dispatcher
from enforcement._events import Decision
from enforcement.otel import SPAN_EVENT_NAME, OpenTelemetrySink


def decision(kind: str = "block", rule_id: Any = 7, **fields: Any) -> Decision:
    values: dict[str, Any] = {
        "kind": kind,
        "rule_id": rule_id,
        "rule_name": "gpt-4o daily cap",
        "current_value": 512.4,
        "threshold": 500.0,
        "message": "Request blocked by Revenium enforcement rule: gpt-4o daily cap",
        "model": "gpt-4o",
        "provider": "openai",
        "callers": (("subscriber_email", "8b666fb5de44489b"),),
    }
    values.update(fields)
    return Decision(**values)


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def sink(reader: InMemoryMetricReader) -> OpenTelemetrySink:
    return OpenTelemetrySink(meter_provider=MeterProvider(metric_readers=[reader]))


def test_decisions_are_counted_by_kind_rule_and_source(
    sink: OpenTelemetrySink, reader: InMemoryMetricReader
) -> None:
    sink(decision("block"))
    sink(decision("block"))
    sink(decision("shadow", rule_id="r-9", source="local"))
    sink(decision("warn_tier", rule_name=None, model=None))
    counts = {
        tuple(sorted(point.attributes.items())): point.value
        for point in metric_points(reader, "enforcement.decisions")
    }
    block = {
        "kind": "block",
        "rule_id": 7,
        "rule_name": "gpt-4o daily cap",
        "source": "server",
        "model": "gpt-4o",
        "provider": "openai",
    }
    shadow = {**block, "kind": "shadow", "rule_id": "r-9", "source": "local"}
    warn_tier = {"kind": "warn_tier", "rule_id": 7, "source": "server", "provider": "openai"}
    assert counts == {
        tuple(sorted(block.items())): 2,
        tuple(sorted(shadow.items())): 1,
        tuple(sorted(warn_tier.items())): 1,
    }


def test_no_caller_key_becomes_an_attribute(
    sink: OpenTelemetrySink, reader: InMemoryMetricReader
) -> None:
    sink(decision())
    (point,) = metric_points(reader, "enforcement.decisions")
    assert "8b666fb5de44489b" not in repr(dict(point.attributes))


def test_check_latency_histogram(sink: OpenTelemetrySink, reader: InMemoryMetricReader) -> None:
    for seconds in (0.000001, 0.000002, 0.5):
        sink.record_check(seconds)
    (point,) = metric_points(reader, "enforcement.check.duration")
    assert point.count == 3
    assert point.sum == pytest.approx(0.500003)
    assert point.max == pytest.approx(0.5)


def test_span_event_on_the_callers_recording_span(sink: OpenTelemetrySink) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("llm call"):
        sink.on_caller_thread(decision())
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == SPAN_EVENT_NAME
    assert event.attributes is not None
    assert event.attributes["kind"] == "block"
    assert event.attributes["rule_id"] == 7
    assert event.attributes["threshold"] == 500.0
    provider.shutdown()


def test_no_span_no_event_and_no_error(sink: OpenTelemetrySink) -> None:
    sink.on_caller_thread(decision())  # the invalid span is current: nothing to add to


def test_as_a_listener_on_the_dispatcher_thread(
    sink: OpenTelemetrySink, reader: InMemoryMetricReader
) -> None:
    dispatcher = Dispatcher()
    dispatcher.add(sink)
    for _ in range(25):
        dispatcher.submit(decision("shadow"))
    assert dispatcher.close(30.0)
    (point,) = metric_points(reader, "enforcement.decisions")
    assert point.value == 25
    assert dispatcher.failed == 0


def test_an_engine_with_the_sink_counts_decisions_times_a_sample_and_marks_the_span(
    sink: OpenTelemetrySink, reader: InMemoryMetricReader
) -> None:
    from enforcement import BudgetExceededError, Engine
    from enforcement.testing import make_rule

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    environ = {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}
    with Engine(environ=environ) as engine:
        engine.load_payload([make_rule(1, "cap", breached=True, shadow_mode=True)])
        engine.add_listener(sink)
        for _ in range(200):
            engine.check(model="gpt-4o")  # shadow: would block, passes
        engine.load_payload([make_rule(2, "hard cap", breached=True)])
        span_of_the_call = provider.get_tracer("test").start_as_current_span("llm call")
        with span_of_the_call, pytest.raises(BudgetExceededError):
            engine.check(model="gpt-4o")
        assert engine.flush_listeners()
    (latency,) = metric_points(reader, "enforcement.check.duration")
    assert latency.count == 4  # one check in 64 is timed: 0, 64, 128, 192 of 201
    counted = {
        (dict(p.attributes)["kind"], p.value)
        for p in metric_points(reader, "enforcement.decisions")
    }
    assert counted == {("shadow", 200), ("block", 1)}
    (span,) = exporter.get_finished_spans()
    assert [event.name for event in span.events] == [SPAN_EVENT_NAME]
    provider.shutdown()
