"""Fixtures for hook tests: a fresh engine the hooks ask, and rule sets to load into it.

Patching an SDK is process-wide, so every test that instruments gets
``uninstrument()`` at teardown and leaves the SDK exactly as it found it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

import enforcement
from enforcement import Engine
from enforcement._usage import Estimate, Spend, Usage

FUTURE = "2099-01-01T00:00:00Z"


def breached_rule(
    model: Optional[str] = None, provider: Optional[str] = None, rule_id: int = 1, **fields: Any
) -> dict[str, Any]:
    """A breached BLOCK rule, optionally filtered to one model and/or provider."""
    filters = []
    if model is not None:
        filters.append({"dimension": "MODEL", "operator": "IS", "value": model})
    if provider is not None:
        filters.append({"dimension": "PROVIDER", "operator": "IS", "value": provider})
    rule = {
        "ruleId": rule_id,
        "name": f"cap-{rule_id}",
        "breached": True,
        "action": "BLOCK",
        "threshold": 100.0,
        "currentValue": 120.0,
        "windowEnd": FUTURE,
        "filters": filters,
    }
    rule.update(fields)
    return rule


@pytest.fixture
def hook_env() -> dict[str, str]:
    """The engine's environment; tests flip ``REVENIUM_BYPASS`` in it."""
    return {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}


@pytest.fixture
def engine(hook_env: dict[str, str]) -> Iterator[Engine]:
    """An engine with no rules loaded yet (load with ``engine.load_payload``), hooked in.

    Every provider is uninstrumented at teardown.
    """
    built = Engine(environ=hook_env)
    built.load_payload([])
    try:
        yield built
    finally:
        enforcement.uninstrument()
        built.close()


@pytest.fixture
def checks(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """``(provider, model)`` of every check the hooks ask ``engine`` for, oldest first."""
    seen: list[tuple[Any, Any]] = []
    check = engine.check

    def spy(usage_metadata: Any = None, *, model: Any = None, provider: Any = None) -> None:
        seen.append((provider, model))
        check(usage_metadata, model=model, provider=provider)

    monkeypatch.setattr(engine, "check", spy)
    return seen


class RecordingEngine(Engine):
    """An engine that remembers the (model, provider) of every check the hooks ask for.

    ``acheck`` ends in ``check``, so async calls are recorded too, once. It
    also records every ``begin`` (``begun``), and, once ``holding`` is set,
    answers it with a :class:`RecordedSpend` whose estimate and settlements
    land in ``estimates`` and ``settled``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[tuple[Optional[str], Optional[str]]] = []
        self.begun: list[tuple[Optional[str], Optional[str]]] = []
        self.estimates: list[Estimate] = []
        self.settled: list[Optional[Usage]] = []
        self.holding = False
        self._beginning = threading.local()

    def check(self, *args: Any, **kwargs: Any) -> None:
        if not getattr(self._beginning, "on", False):  # begin recorded it (and may not check)
            self.seen.append((kwargs.get("model"), kwargs.get("provider")))
        super().check(*args, **kwargs)

    def begin(
        self,
        usage_metadata: Any = None,
        *,
        model: Optional[str] = None,
        provider: Optional[str] = None,
        estimate: Optional[Callable[[], Estimate]] = None,
    ) -> Optional[Spend]:
        self.seen.append((model, provider))
        self._beginning.on = True
        try:
            spend = super().begin(usage_metadata, model=model, provider=provider, estimate=estimate)
        finally:
            self._beginning.on = False
        self.begun.append((model, provider))
        if not self.holding:
            return spend
        if estimate is not None:
            self.estimates.append(estimate())
        return RecordedSpend(self.settled)

    async def abegin(self, *args: Any, **kwargs: Any) -> Optional[Spend]:
        return self.begin(*args, **kwargs)


class RecordedSpend:
    """A hold that appends each settlement to a list, so a test can count them."""

    def __init__(self, settled: list[Optional[Usage]]) -> None:
        self._settled = settled

    def settle(self, usage: Optional[Usage]) -> None:
        self._settled.append(usage)


@pytest.fixture
def recording(hook_env: dict[str, str]) -> Iterator[RecordingEngine]:
    """A :class:`RecordingEngine` with an empty rule set; every provider uninstrumented after."""
    built = RecordingEngine(environ=hook_env)
    built.load_payload([])
    try:
        yield built
    finally:
        enforcement.uninstrument()
        built.close()
