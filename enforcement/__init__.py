"""Client-side cost-control enforcement for LLM API calls.

A tripped budget rule stops the provider call before it is sent. Everything a
user may call is named here; the modules behind it are private.

>>> import enforcement
>>> enforcement.check_enforcement({"subscriber": {"email": "dev@example.com"}},
...                               model="gpt-4o", provider="openai")
"""

from __future__ import annotations

import contextlib as _contextlib

from ._callfacts import normalize_email
from ._default import (
    acheck_enforcement,
    add_listener,
    check_enforcement,
    default_engine,
    explain,
    fetch_advisory_budgets,
    fetch_enforcement_rule,
    fetch_enforcement_rule_roster,
    remove_listener,
    set_default_engine,
    stats,
    stop_polling,
)
from ._engine import Engine, EngineStatus, Explanation
from ._errors import BudgetExceededError, EnforcementUnavailableError
from ._events import Decision
from ._metadata import usage_metadata
from ._ruleset import RuleVerdict
from ._schedule import RetryPolicy
from ._settings import Settings
from .hooks import HookStatus, hook_status, instrument, uninstrument

__all__ = [
    "BudgetExceededError",
    "Decision",
    "EnforcementUnavailableError",
    "Engine",
    "EngineStatus",
    "Explanation",
    "HookStatus",
    "RetryPolicy",
    "RuleVerdict",
    "Settings",
    "acheck_enforcement",
    "add_listener",
    "check_enforcement",
    "default_engine",
    "explain",
    "fetch_advisory_budgets",
    "fetch_enforcement_rule",
    "fetch_enforcement_rule_roster",
    "hook_status",
    "instrument",
    "normalize_email",
    "remove_listener",
    "set_default_engine",
    "stats",
    "stop_polling",
    "uninstrument",
    "usage_metadata",
]

__version__ = "0.1.0"

# Reprs and docs name the public path, never a private module.
for _name in __all__:
    with _contextlib.suppress(AttributeError, TypeError):
        globals()[_name].__module__ = "enforcement"
del _name
