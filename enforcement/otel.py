"""Decisions in your OpenTelemetry metrics and traces: ``pip install 'enforcement[otel]'``.

:class:`OpenTelemetrySink` is a listener. Added to an engine, it counts
every decision, and the engine can feed it each check's latency::

    from enforcement.otel import OpenTelemetrySink

    engine.add_listener(OpenTelemetrySink())  # the global meter provider

What it records:

==============================  =========  ==========================================
instrument                      kind       attributes
==============================  =========  ==========================================
``enforcement.decisions``       counter    ``kind`` (block, shadow, warn_only,
                                           warn_tier), ``rule_id``, ``rule_name``,
                                           ``source``, ``model``, ``provider``
``enforcement.check.duration``  histogram  none (seconds; its count is the number of
                                           checks recorded)
==============================  =========  ==========================================

One counter with a ``kind`` attribute rather than one per kind: a
dashboard sums or splits it by kind with one query, and a kind added later
needs no new instrument. Caller digests are not attributes: they are
unbounded, and a metric's cardinality must not grow with a customer base
(the decision log counts callers).

Span events: a listener runs on the dispatcher's thread, where the caller's
span is not current. So the engine calls :meth:`OpenTelemetrySink.on_caller_thread`
itself, on the caller's thread, for the rare decisions worth a span event
(blocks); it adds an ``enforcement.decision`` event to the current span when
one is recording and costs a context lookup when none is.
"""

from __future__ import annotations

import logging
from typing import Optional, Union

from opentelemetry import metrics, trace

from ._events import Decision

__all__ = ["SPAN_EVENT_NAME", "OpenTelemetrySink"]

INSTRUMENTATION_NAME = "enforcement"
DECISIONS_COUNTER = "enforcement.decisions"
CHECK_DURATION_HISTOGRAM = "enforcement.check.duration"
SPAN_EVENT_NAME = "enforcement.decision"

logger = logging.getLogger("enforcement")

Attributes = dict[str, Union[str, int, float]]


class OpenTelemetrySink:
    """Counts decisions and check latency through OpenTelemetry; adds span events to blocks.

    ``meter_provider`` defaults to the global one. Span events go to the
    caller's current span, whichever tracer provider started it.

    >>> sink = OpenTelemetrySink()
    >>> sink(Decision("shadow", 7, "daily cap", 512.4, 500.0, None, model="gpt-4o"))
    >>> sink.record_check(0.0000015)
    """

    def __init__(self, meter_provider: Optional[metrics.MeterProvider] = None) -> None:
        meter = metrics.get_meter(INSTRUMENTATION_NAME, _version(), meter_provider)
        self._decisions = meter.create_counter(
            DECISIONS_COUNTER,
            unit="{decision}",
            description="Enforcement decisions: blocks, shadow would-blocks and warnings",
        )
        self._check_duration = meter.create_histogram(
            CHECK_DURATION_HISTOGRAM,
            unit="s",
            description="Time an enforcement check took on the caller's thread",
        )

    def __call__(self, decision: Decision) -> None:
        """Count ``decision``: the listener side, on the dispatcher's thread."""
        self._decisions.add(1, decision_attributes(decision))

    def record_check(self, seconds: float) -> None:
        """Record one check's latency; the engine calls it for the checks it times."""
        self._check_duration.record(seconds)

    def on_caller_thread(self, decision: Decision) -> None:
        """Add a span event for ``decision`` to the caller's current span, if one is recording."""
        try:
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(SPAN_EVENT_NAME, _span_event_attributes(decision))
        except Exception:  # a broken tracer must not turn a refusal into another error
            logger.debug("Adding the enforcement span event failed", exc_info=True)


def decision_attributes(decision: Decision) -> Attributes:
    """The attributes a decision is counted (and its span event tagged) with; no caller keys."""
    attributes: Attributes = {"kind": decision.kind, "source": decision.source}
    optional = {
        "rule_id": decision.rule_id,
        "rule_name": decision.rule_name,
        "model": decision.model,
        "provider": decision.provider,
    }
    for name, value in optional.items():
        if value is not None:
            attributes[name] = value if isinstance(value, (int, float)) else str(value)
    return attributes


def _span_event_attributes(decision: Decision) -> Attributes:
    attributes = decision_attributes(decision)
    for name in ("current_value", "threshold"):
        value = getattr(decision, name)
        if isinstance(value, (int, float)):
            attributes[name] = value
    return attributes


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("enforcement")
    except Exception:  # not installed as a distribution (a source checkout on sys.path)
        return ""
