"""One compiled rule: every per-call question answered in advance where it can be.

A :class:`CompiledRule` is built only for a rule somebody is over, or when a
department verdict, local spend or :func:`enforcement.explain` names one:
the rest of a 10,000-rule payload stays the dicts the wire gave. What it
prepares (filters parsed, the window end as epoch seconds, the per-person
breakdown as a dict, the fields of the error it raises) is what a call
would otherwise work out again on every check.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from ._callfacts import CallFacts
from ._errors import BudgetExceededError
from ._filters import (
    CompiledFilters,
    CoverIndex,
    compile_filters,
    indexable_row,
    meta_rows_hold,
    route_rows_hold,
)
from ._wire import (
    action_blocks,
    coerce_float,
    deny_message,
    group_index,
    is_department_rule,
    iso_utc,
    parse_window_end,
)

__all__ = [
    "BLOCK_PREFIX",
    "ROUTE_CACHE_SIZE",
    "CompiledRule",
    "Notice",
    "Route",
    "RuleVerdict",
    "Verdict",
    "keep_out_of_collections",
    "routes_of",
]

BLOCK_PREFIX = "Request blocked by Revenium enforcement rule: "


@dataclass(frozen=True)
class RuleVerdict:
    """How one rule judges one call, for :func:`enforcement.explain`."""

    rule_id: Any
    name: Any
    covers: bool
    blocks: bool
    reason: str
    current_value: Optional[float] = None
    threshold: Optional[float] = None


class Notice(NamedTuple):
    """Something a verdict noticed besides its answer, for the engine to log and count.

    ``kind`` is ``"warn_only"``, ``"shadow"``, ``"department_not_blocking"`` or
    ``"warn_tier"``. ``value`` is the figure the rule is over by (the caller's
    own balance for a department rule); ``email`` is set for a warn tier only,
    so that it is warned about once per caller. ``source`` is ``"local"`` when
    this host's spend since the server's figures is what put the rule over.
    """

    kind: str
    rule: Optional[CompiledRule]
    rule_id: Any
    value: Optional[float]
    email: Optional[str] = None
    source: str = "server"


class Verdict(NamedTuple):
    """The answer for a call that something noticed: the error to raise, if any, and the notices."""

    error: Optional[BudgetExceededError]
    notices: tuple[Notice, ...]


class CompiledRule:
    """One rule with every per-call question answered in advance where it can be."""

    __slots__ = (
        "_error_fields",
        "action",
        "blocks_action",
        "breached_keys",
        "can_trip",
        "credential",
        "current_value",
        "deny_message",
        "filters",
        "group",
        "identifier",
        "is_department",
        "metric_type",
        "name",
        "period_type",
        "position",
        "raw",
        "reads_metadata",
        "resets_at",
        "shadow",
        "threshold",
        "window_end",
        "window_end_raw",
    )

    def __init__(self, position: int, raw: dict[str, Any]) -> None:
        self.position = position
        self.raw = raw
        self.identifier: Any = raw.get("ruleId") or raw.get("id")
        self.name: Any = raw.get("name", "cost limit")
        self.action: Any = raw.get("action")
        self.blocks_action = action_blocks(self.action)
        self.shadow = bool(raw.get("shadowMode", False))
        self.is_department = is_department_rule(raw)
        self.credential: Any = raw.get("credential", "")
        self.filters: Optional[CompiledFilters] = compile_filters(raw.get("filters"))
        self.window_end_raw: Any = raw.get("windowEnd")
        self.window_end = parse_window_end(self.window_end_raw)
        self.threshold = coerce_float(raw.get("threshold"))
        self.current_value = coerce_float(raw.get("currentValue"))
        self.deny_message = deny_message(raw.get("denyMessage"))
        self.resets_at: Any = _resets_at(raw.get("resetsAt"), self.window_end_raw, self.window_end)
        self.period_type: Any = raw.get("periodType")
        self.metric_type: Any = raw.get("metricType")
        self.group = group_index(raw)
        # Whether the legacy credential or a metadata filter row can exclude a call.
        self.reads_metadata = bool(self.credential) or (
            self.filters is not None and bool(self.filters.meta)
        )
        self._error_fields: Optional[dict[str, Any]] = None
        if self.group is not None:
            # The keys a caller must hold for this rule to trip: an index of one set.
            self.breached_keys = frozenset(k for k, (hit, _) in self.group.items() if hit)
            self.can_trip = bool(self.breached_keys)
        else:
            self.breached_keys = frozenset()
            self.can_trip = bool(raw.get("breached", False) or raw.get("blocked", False))

    def ended(self, now: float) -> bool:
        return self.window_end is not None and self.window_end <= now

    def trips(self, facts: CallFacts) -> tuple[bool, Optional[float]]:
        """Whether this rule's breach covers the caller, and the balance to report."""
        group = self.group
        if group is None:
            return self.can_trip, self.current_value
        for key in facts.group_keys():
            entry = group.get(key)
            if entry is not None:
                return entry
        return False, None

    def covers(self, facts: CallFacts) -> bool:
        """Credential (legacy) and filters: is this call counted toward the rule?"""
        return self.covers_route(facts) and self.covers_metadata(facts)

    def covers_route(self, facts: CallFacts) -> bool:
        return route_rows_hold(self.filters, facts)

    def covers_metadata(self, facts: CallFacts) -> bool:
        credential = self.credential
        if credential and credential != facts.metadata.get("subscriber_credential", ""):
            return False
        return meta_rows_hold(self.filters, facts)

    def explain(self, facts: CallFacts, now: float) -> RuleVerdict:
        """This rule's view of a call, with the reason in words (not the hot path)."""
        if self.is_department:
            return self._verdict(False, False, "department rule: decided by the department maps")
        if not self.covers(facts):
            return self._verdict(False, False, "call is outside the rule's filters or credential")
        if self.ended(now):
            return self._verdict(True, False, "window has ended")
        tripped, current = self.trips(facts)
        if not tripped:
            reason = "not breached for this caller"
        elif self.shadow:
            reason = "breached, but in shadow mode (would block)"
        elif not self.blocks_action:
            reason = f"breached, action {self.action!r} only warns"
        else:
            return self._verdict(True, True, "breached: blocks", current)
        return self._verdict(True, False, reason, current)

    def _verdict(
        self, covers: bool, blocks: bool, reason: str, current: Optional[float] = None
    ) -> RuleVerdict:
        return RuleVerdict(
            self.identifier, self.name, covers, blocks, reason, current, self.threshold
        )

    def error(
        self, current_value: Optional[float], name: Any = None, identifier: Any = None
    ) -> BudgetExceededError:
        """The error this rule raises, from fields prepared once per rule set."""
        fields = self._error_fields
        if fields is None or name is not None or identifier is not None:
            fields = self._fields(name, identifier)
            if name is None and identifier is None:
                self._error_fields = fields
        error = BudgetExceededError._prebuilt(fields["message"], fields)
        error.current_value = current_value
        return error

    def _fields(self, name: Any, identifier: Any) -> dict[str, Any]:
        rule_name = self.name if name is None else name
        message = f"{BLOCK_PREFIX}{rule_name}"
        if self.deny_message is not None:
            message = f"{message}. {self.deny_message}"
        return {
            "message": message,
            "rule_name": rule_name,
            "current_value": None,
            "threshold": self.threshold,
            "resets_at": self.resets_at,
            "rule_id": self.identifier if identifier is None else identifier,
            "deny_message": self.deny_message,
            "period_type": self.period_type,
            "metric_type": self.metric_type,
            "action": self.action,
            "source": "server",
        }


def _resets_at(given: Any, window_end_raw: Any, window_end: Optional[float]) -> Any:
    """``resetsAt`` as served, else the window's end (CONTRACT §7: ours, not the oracle's)."""
    if given is not None:
        return given
    if isinstance(window_end_raw, str):
        return window_end_raw
    return iso_utc(window_end) if window_end is not None else None


def keep_out_of_collections() -> None:
    """Move what is alive now out of the cyclic collector's reach (``gc.freeze()``).

    A full collection walks every tracked object, and a freshly installed
    payload of 10,000 rules is tens of thousands of them, so a rule set
    swapped in every poll soon makes a full collection stop every thread for
    tens of milliseconds. Frozen objects are still freed by reference
    counting when the next rule set replaces them (a rule set holds no
    cycles); what is never collected is cyclic garbage that was alive at the
    moment of freezing. It is process-wide, so the refresher calls it after
    an install only where the application asks (``REVENIUM_CB_GC_FREEZE``).
    """
    gc.freeze()


ROUTE_CACHE_SIZE = 1024


class Route(NamedTuple):
    """The tripped rules whose model and provider rows hold for one (model, provider) pair.

    ``pooled`` leaves out the grouped rules: a caller holding none of the
    keys any breached entry holds is judged by those alone.
    """

    every: CoverIndex[CompiledRule]
    pooled: CoverIndex[CompiledRule]
    grouped: bool


def routes_of(rules: Iterator[CompiledRule]) -> Route:
    listed = list(rules)
    pooled = [rule for rule in listed if rule.group is None]
    return Route(_cover_index(listed), _cover_index(pooled), len(pooled) < len(listed))


def _cover_index(rules: list[CompiledRule]) -> CoverIndex[CompiledRule]:
    return CoverIndex((indexable_row(rule.filters), rule) for rule in rules)
