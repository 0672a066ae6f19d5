"""What an engine reports about itself: its status and its explanations, as values.

Frozen dataclasses, so a health check, the CLI or a test can hold one, print
it or serialise it without reaching into the engine. A new field for
operators goes here and in :meth:`Engine.status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from ._errors import BudgetExceededError
from ._ruleset import RuleVerdict

__all__ = ["EngineStatus", "Explanation", "RefreshRecord"]


@dataclass(frozen=True)
class EngineStatus:
    """What the engine knows about its rules, as a value (for the CLI, health checks)."""

    team_id: str
    base_url: str
    configured: bool
    enabled: bool
    bypass: bool
    fail_closed: bool
    loaded: bool
    stale: bool
    source: Optional[str]
    generation: int
    rule_count: int
    tripped_count: int
    last_attempt_at: Optional[float]
    last_success_at: Optional[float]
    last_error: Optional[str]
    consecutive_failures: int
    etag: Optional[str]
    poller_alive: bool
    snapshot_path: Optional[str]
    counters: Mapping[str, int]
    installed_at: Optional[float] = None
    closed: bool = False
    local_spend: Optional[Mapping[str, Any]] = None


@dataclass(frozen=True)
class Explanation:
    """Why a call would pass or be refused, rule by rule."""

    enabled: bool
    bypass: bool
    loaded: bool
    error: Optional[BudgetExceededError]
    rules: list[RuleVerdict] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class RefreshRecord:
    """What the last refreshes did, as a value for :meth:`Engine.status`."""

    last_attempt_at: Optional[float]
    last_success_at: Optional[float]
    last_error: Optional[str]
    consecutive_failures: int
    etag: Optional[str]
    poller_alive: bool
    snapshot_path: Optional[str]
