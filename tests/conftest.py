"""Shared fixtures: every test builds its own engine and its own environment."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, is_hypothesis_test, settings

from enforcement import Engine
from enforcement.testing import RulesServer

# Property tests: "ci" keeps each property to a few seconds; "soak" runs a
# hundred times as many examples (HYPOTHESIS_PROFILE=soak). Tests that set
# their own example count scale it with hypothesis_examples().
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "soak",
    max_examples=10_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def pytest_configure(config: pytest.Config) -> None:
    """On 3.9, say "no event loop" up front, so pytest-asyncio never makes one it won't close.

    pytest-asyncio 1.2 (the last release for 3.9) asks ``asyncio.get_event_loop()``
    for the loop to restore after an async test; on 3.9 that quietly creates one,
    never closed, whose ``ResourceWarning`` then fails whichever later test is
    running when ``asyncio.run()`` lets it go (pytest-dev/pytest-asyncio#724,
    fixed in releases that need 3.10). Once a loop has been set, even to ``None``,
    ``get_event_loop()`` raises instead, which pytest-asyncio expects.
    """
    if sys.version_info < (3, 10):
        asyncio.set_event_loop(None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A soak runs for minutes: no per-test timeout for the property tests then."""
    if PROFILE != "soak":
        return
    for item in items:
        if isinstance(item, pytest.Function) and is_hypothesis_test(item.obj):
            item.add_marker(pytest.mark.timeout(0))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An enabled environment with a private cache directory and nothing to fetch from."""
    return {
        "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
        "REVENIUM_CACHE_DIR": str(tmp_path / "cache"),
    }


@pytest.fixture
def make_engine() -> Iterator[Callable[..., Engine]]:
    """Build engines that are closed when the test ends."""
    engines: list[Engine] = []

    def build(**kwargs: Any) -> Engine:
        engine = Engine(**kwargs)
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.close()


@pytest.fixture
def server() -> Iterator[RulesServer]:
    """A real rules server on 127.0.0.1 (team ``team-1``, key ``hak_test``)."""
    with RulesServer() as running:
        yield running


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A private snapshot directory, made 0700 as a user's cache directory is."""
    path = tmp_path / "cache"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture(autouse=True)
def _quiet_enforcement_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="enforcement")
