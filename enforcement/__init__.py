"""Client-side cost-control enforcement for LLM API calls.

A tripped budget rule stops the provider call before it is sent. Everything a
user may call is named here; the modules behind it are private.

>>> import enforcement
>>> enforcement.check_enforcement({"subscriber": {"email": "dev@example.com"}},
...                               model="gpt-4o", provider="openai")

Each name is imported on first use (PEP 562): ``import enforcement`` costs
next to nothing, so a process that never enables enforcement, and the
``enforcement`` command's ``--help``, do not pay for httpx and pydantic.

The private modules, by layer (each imports only from the layers above it)::

    values        _errors _usage _events _providers _vendor_models
    wire          _json _wire _settings _schedule
    the verdict   _callfacts _metadata _model_match _filters _rule _ruleset _accounts
                  _status
    fresh rules   _feed _poller _sidecar _private_files _mirror _host_share
                  _rules_file _refresher _fork
    spend         _model_names _rates _prices _amounts _ledger _leased_ledger
                  _host_ledger _redis_ledger _ledger_chain _spend
    reporting     _dispatch _decision_log _reporter _audit, otel
    the engine    _inspection _engine _default
    the edges     hooks/ (one module per provider SDK, on the kit in
                  hooks/_base), cli/, testing, auto

Where a thing goes: a new fault rule or retry timing in ``_schedule``; what
counts as a fault in ``_feed``; a new rule field in ``_wire`` then
``_rule``; accrual in ``_spend`` (``_accounts`` which rules, ``_amounts``
how much, ``_ledger`` where it is kept); a new decision sink is a listener
beside ``_decision_log``; a new provider SDK is a module in ``hooks/``.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

# Imported now (they need nothing but the standard library): tracebacks name them and
# `except` clauses catch them, so they read `enforcement.BudgetExceededError` from the start.
from ._errors import BudgetExceededError, EnforcementUnavailableError

if _typing.TYPE_CHECKING:
    from typing import Any

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
    from ._engine import Engine
    from ._events import Decision
    from ._metadata import usage_metadata
    from ._prices import PriceTable
    from ._ruleset import RuleVerdict
    from ._schedule import RetryPolicy
    from ._settings import Settings
    from ._status import EngineStatus, Explanation
    from ._usage import Estimate, Spend, Usage
    from .hooks import HookStatus, hook_status, instrument, uninstrument

__all__ = [
    "BudgetExceededError",
    "Decision",
    "EnforcementUnavailableError",
    "Engine",
    "EngineStatus",
    "Estimate",
    "Explanation",
    "HookStatus",
    "PriceTable",
    "RetryPolicy",
    "RuleVerdict",
    "Settings",
    "Spend",
    "Usage",
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

# Where each public name lives; the TYPE_CHECKING imports above say the same to type checkers.
_HOMES = {
    "Decision": "._events",
    "Engine": "._engine",
    "EngineStatus": "._status",
    "Explanation": "._status",
    "HookStatus": ".hooks",
    "hook_status": ".hooks",
    "instrument": ".hooks",
    "uninstrument": ".hooks",
    "RetryPolicy": "._schedule",
    "RuleVerdict": "._ruleset",
    "PriceTable": "._prices",
    "Estimate": "._usage",
    "Spend": "._usage",
    "Usage": "._usage",
    "Settings": "._settings",
    "normalize_email": "._callfacts",
    "usage_metadata": "._metadata",
    "acheck_enforcement": "._default",
    "add_listener": "._default",
    "check_enforcement": "._default",
    "default_engine": "._default",
    "explain": "._default",
    "fetch_advisory_budgets": "._default",
    "fetch_enforcement_rule": "._default",
    "fetch_enforcement_rule_roster": "._default",
    "remove_listener": "._default",
    "set_default_engine": "._default",
    "stats": "._default",
    "stop_polling": "._default",
}

# Bound by the package itself before its init was lazy; still there on first use.
_SUBMODULES = frozenset({"hooks"})


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use, and bind every public name it defines.

    Binding them all at once rewrites their ``__module__`` together, so reprs
    and docs say ``enforcement.Engine`` whichever name was reached first,
    and later look-ups never come back here.
    """
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _importlib.import_module(home, __name__)
    for public, where in _HOMES.items():
        if where == home:
            globals()[public] = _as_public(getattr(module, public))
    return globals()[name]


def _as_public(value: Any) -> Any:
    try:
        value.__module__ = __name__
    except (AttributeError, TypeError):  # a value whose module cannot be set keeps its own
        pass
    return value


_as_public(BudgetExceededError)
_as_public(EnforcementUnavailableError)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
