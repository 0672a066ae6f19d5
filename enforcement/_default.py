"""The module-level functions and the default engine they share.

This is the one piece of module-level state: :class:`_Default` holds the
default engine, how it was built, and the listeners added with
:func:`add_listener`, which every engine it builds inherits.

The default engine is built from ``os.environ`` on first use. If the
variables that say *whose* rules to enforce change (team, key, the two base
URLs), the next call builds a new engine for the new identity and
stops the old one, as the reference SDK drops another team's rules.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional

from ._engine import Engine, Explanation
from ._events import Listener
from ._fork import renew_after_fork
from ._settings import ENV, _raw_getter, _raw_reader

__all__ = [
    "acheck_enforcement",
    "add_listener",
    "check_enforcement",
    "default_engine",
    "explain",
    "fetch_advisory_budgets",
    "fetch_enforcement_rule",
    "fetch_enforcement_rule_roster",
    "remove_listener",
    "set_default_engine",
    "stats",
    "stop_polling",
]

# Whose rules: a change to any of these builds a new default engine.
_IDENTITY_VARS = (ENV.TEAM_ID, ENV.API_KEY, ENV.ENFORCEMENT_BASE_URL, ENV.METERING_BASE_URL)


def _identity_reader() -> Callable[[], tuple[object, ...]]:
    readers = [_raw_reader(os.environ, name) for name in _IDENTITY_VARS]
    return lambda: tuple(read() for read in readers)


def _same_identity_check() -> Callable[[tuple[object, ...]], bool]:
    """``same(identity)``: whether the raw values are still the very objects in ``identity``.

    ``os.environ`` keeps the same value objects until a variable is assigned,
    so identity comparison answers "unchanged" in four dict lookups.
    """
    (get_team, team), (get_key, key), (get_base, base), (get_meter, meter) = (
        _raw_getter(os.environ, name) for name in _IDENTITY_VARS
    )

    def same(identity: tuple[object, ...]) -> bool:
        return (
            get_team(team) is identity[0]
            and get_key(key) is identity[1]
            and get_base(base) is identity[2]
            and get_meter(meter) is identity[3]
        )

    return same


class _Default:
    """The one piece of module-level state: the default engine and how it was built."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.engine: Optional[Engine] = None
        self.identity: tuple[object, ...] = (object(),) * len(_IDENTITY_VARS)
        self.pinned = False
        # Listeners added with the module-level add_listener: every default engine gets them.
        self.listeners: list[Listener] = []
        self.read_identity = _identity_reader()
        self.same = _same_identity_check()
        renew_after_fork(self)

    def _after_fork_in_child(self) -> None:
        # Another thread may have been building the default engine under it.
        self.lock = threading.Lock()

    def get(self) -> Engine:
        engine = self.engine
        if engine is not None and (self.pinned or self.same(self.identity)):
            return engine
        return self._rebuild()

    def _rebuild(self) -> Engine:
        with self.lock:
            identity = self.read_identity()
            engine = self.engine
            if engine is not None and (self.pinned or identity == self.identity):
                self.identity = identity
                return engine
            fresh = Engine()
            for listener in self.listeners:
                fresh.add_listener(listener)
            old, self.engine, self.identity = engine, fresh, identity
        if old is not None:
            old.close()
        return self.engine


_default = _Default()


def default_engine() -> Engine:
    """The engine the module-level functions use (built from ``os.environ``)."""
    return _default.get()


def set_default_engine(engine: Optional[Engine]) -> None:
    """Make ``engine`` the one the module functions use; ``None`` returns to the environment's."""
    with _default.lock:
        old = _default.engine
        if engine is not None and engine is not old:
            for listener in _default.listeners:
                engine.add_listener(listener)
        _default.engine, _default.pinned = engine, engine is not None
        _default.identity = _default.read_identity()
    if old is not None and old is not engine:
        old.close()


def add_listener(listener: Listener) -> None:
    """Hear every decision of the default engine (and of the ones that replace it), off-thread."""
    with _default.lock:
        _default.listeners.append(listener)
        engine = _default.engine
    if engine is not None:
        engine.add_listener(listener)


def remove_listener(listener: Listener) -> None:
    """Stop a listener added with :func:`add_listener`; ValueError when it was not added."""
    with _default.lock:
        _default.listeners.remove(listener)
        engine = _default.engine
    if engine is not None:
        engine.remove_listener(listener)


def stats() -> dict[str, int]:
    """The default engine's counters: blocks, would-blocks, warnings, listener drops, holds.

    Plain integers kept on the rare paths, so keeping them on costs nothing.
    """
    return _default.get().stats()


def check_enforcement(
    usage_metadata: Optional[Mapping[str, Any]] = None,
    *,
    model: Optional[str] = None,
    provider: Optional[str] = None,
) -> None:
    """Raise :class:`BudgetExceededError` when a tripped rule covers this call.

    Call it right before a provider request. Never waits on the network and
    raises nothing else.

    >>> check_enforcement({"organizationName": "acme"}, model="gpt-4o", provider="openai")
    """
    engine = _default.engine
    if engine is None or not (_default.pinned or _default.same(_default.identity)):
        engine = _default.get()
    engine.check(usage_metadata, model=model, provider=provider)


async def acheck_enforcement(
    usage_metadata: Optional[Mapping[str, Any]] = None,
    *,
    model: Optional[str] = None,
    provider: Optional[str] = None,
) -> None:
    """:func:`check_enforcement` for coroutines; never blocks the event loop."""
    await _default.get().acheck(usage_metadata, model=model, provider=provider)


def explain(
    usage_metadata: Optional[Mapping[str, Any]] = None,
    *,
    model: Optional[str] = None,
    provider: Optional[str] = None,
) -> Explanation:
    """Why this call would pass or be refused, rule by rule."""
    return _default.get().explain(usage_metadata, model=model, provider=provider)


def stop_polling() -> None:
    """Stop the default engine's poller; the next enabled call restarts it."""
    engine = _default.engine
    if engine is not None:
        engine.stop_polling()


def fetch_enforcement_rule(rule_id: str) -> Optional[dict[str, Any]]:
    """One rule as the server holds it now (uncached); ``None`` when absent or unreachable."""
    return _default.get().fetch_enforcement_rule(rule_id)


def fetch_enforcement_rule_roster(
    rule_id: str,
    page: int = 0,
    size: int = 25,
    search: Optional[str] = None,
    band: Optional[str] = None,
) -> Optional[dict[str, Any]]:
    """One page of who a rule covers now, with spend and band (uncached)."""
    return _default.get().fetch_enforcement_rule_roster(rule_id, page, size, search, band)


def fetch_advisory_budgets() -> Optional[list[dict[str, Any]]]:
    """The team's notify-only budgets (uncached, never enforced)."""
    return _default.get().fetch_advisory_budgets()
