"""Shared fixtures: every test builds its own engine and its own environment."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcement import Engine


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An enabled environment with a private cache directory and nothing to fetch from."""
    return {
        "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
        "REVENIUM_CACHE_DIR": str(tmp_path / "cache"),
    }


@pytest.fixture
def make_engine() -> Iterator[object]:
    """Build engines that are closed when the test ends."""
    engines: list[Engine] = []

    def build(**kwargs: object) -> Engine:
        engine = Engine(**kwargs)  # type: ignore[arg-type]
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.close()


@pytest.fixture(autouse=True)
def _quiet_enforcement_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="enforcement")
