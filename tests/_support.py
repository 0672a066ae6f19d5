"""Plain helpers the core tests share; fixtures live in ``conftest.py``.

Kept apart from the fixtures so a test module imports exactly the helpers it
names, and so a subprocess script or a forked child can use them without
pytest's machinery.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from enforcement import BudgetExceededError, Engine, RetryPolicy
from enforcement.testing import make_rule

__all__ = [
    "CONTRACT_ENVIRONMENT",
    "FAST",
    "FUTURE",
    "blocks",
    "breached",
    "clean_env",
    "verdict",
    "wait_until",
]

#: The variables CONTRACT §5 names, every one read by the library.
CONTRACT_ENVIRONMENT = (
    "REVENIUM_CIRCUIT_BREAKER_ENABLED",
    "REVENIUM_BYPASS",
    "REVENIUM_CB_FAIL_MODE",
    "REVENIUM_CB_POLL_INTERVAL_SECONDS",
    "REVENIUM_CACHE_DIR",
    "REVENIUM_METERING_API_KEY",
    "REVENIUM_TEAM_ID",
    "REVENIUM_ENFORCEMENT_BASE_URL",
    "REVENIUM_METERING_BASE_URL",
)
#: A window end no test outlives: a breach under it is in force.
FUTURE = "2099-01-01T00:00:00Z"
#: Retries quick enough for a test and deterministic (no jitter).
FAST = RetryPolicy(first_backoff=0.01, jitter=0.0, retry_after_budget=2.0)


def breached(rule_id: int = 1, **fields: Any) -> dict[str, Any]:
    """A breached rule in force until :data:`FUTURE`, named ``cap-<id>`` unless ``rule_name``."""
    fields.setdefault("window_end", FUTURE)
    fields.setdefault("breached", True)
    name = fields.pop("rule_name", f"cap-{rule_id}")
    return make_rule(rule_id, name, **fields)


def verdict(engine: Engine, metadata: Any = None) -> str:
    """``block`` or ``pass``; anything else the check raises fails the test."""
    try:
        engine.check(metadata or {}, model="gpt-4o", provider="openai")
    except BudgetExceededError:
        return "block"
    return "pass"


def blocks(engine: Engine) -> bool:
    """Whether a plain gpt-4o call is refused."""
    return verdict(engine) == "block"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds; a generous deadline, since only a failure waits it out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without any ``REVENIUM_`` variable, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REVENIUM_")}
    return {**base, **env}
