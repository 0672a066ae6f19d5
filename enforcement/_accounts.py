"""Local spend's view of a rule set (CONTRACT §9): the rules a call counts toward.

The verdict only ever walks rules somebody is over; accrual must reach every
rule that covers a call, tripped or not, in a rule set of 10,000. So the
index is built from a lean record per rule (its position, metric, threshold
and operator, a tuple of atoms the garbage collector soon stops tracking),
filed by the rows that can narrow it down: model and provider rows, cached
per pair, and the first exact metadata row. A rule is compiled in full only
when a call first reaches it. The index is built on the refresher's thread
after an install (:meth:`Accruals.__init__` via ``RuleSet.prepare_accounts``)
or on first use.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, NamedTuple, Optional

from ._callfacts import CallFacts
from ._filters import (
    CANDIDATE_DECIDED,
    CompiledFilter,
    CoverIndex,
    rows_hold,
    scan_filters,
)
from ._rule import CompiledRule
from ._wire import Payload, coerce_float, is_department_rule

__all__ = ["Account", "Accruals", "accrual_metric", "accrual_operator", "rule_id_value"]

_WORD = re.compile(r"[A-Z]+")
# operatorType -> whether reaching the threshold exactly breaches; absent reads as >=.
_INCLUSIVE = {None: True, "GREATER_THAN_OR_EQUAL_TO": True, "GREATER_THAN": False}
_ROUTE_CACHE_SIZE = 1024


class Account(NamedTuple):
    """One rule a call counts toward, with the server's figure to add local spend to.

    ``entry`` is ``""`` for a pooled rule, the caller's group key for a
    grouped rule (the entry the verdict judges; the caller's own key with a
    ``base`` of 0 when the server lists none yet), the caller's normalized
    email for a department rule. ``metric`` is ``"cost"`` (dollars),
    ``"input_tokens"``, ``"output_tokens"``, ``"tokens"`` or ``"requests"``.
    ``inclusive``: reaching ``threshold`` exactly breaches (``>=``).
    """

    rule: CompiledRule
    entry: str
    metric: str
    base: float
    threshold: float
    inclusive: bool
    window_end: Optional[float]
    blocks: bool
    shadow: bool

    @property
    def headroom(self) -> float:
        """What may still be spent before the rule is breached (its edge included or not)."""
        return self.threshold - self.base


def accrual_metric(metric_type: Any) -> Optional[str]:
    """What a call adds to a rule, by what its metric type names; ``None`` adds nothing.

    >>> [accrual_metric(m) for m in ("TOTAL_COST", "INPUT_TOKENS", "TOKEN_COUNT", "API_CALLS")]
    ['cost', 'input_tokens', 'tokens', 'requests']
    """
    if not isinstance(metric_type, str):
        return None
    name = metric_type.strip().upper()
    if name == "TOTAL_COST":
        return "cost"
    words = set(_WORD.findall(name))
    if "COST" in words:
        return None  # a cost of something we do not price apart: never a guess
    if words & {"TOKEN", "TOKENS"}:
        if words & {"INPUT", "PROMPT"}:
            return "input_tokens"
        if words & {"OUTPUT", "COMPLETION"}:
            return "output_tokens"
        return "tokens"
    if words & {"REQUEST", "REQUESTS", "CALL", "CALLS"}:
        return "requests"
    return None


def accrual_operator(operator_type: Any) -> Optional[bool]:
    """``inclusive`` for an operator local spend understands, else ``None`` (no accrual)."""
    if isinstance(operator_type, str):
        operator_type = operator_type.strip().upper()
    elif operator_type is not None:
        return None
    return _INCLUSIVE.get(operator_type)


def rule_id_value(value: Any) -> Optional[int]:
    """A department map's rule id: a JSON integer, never a boolean."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# A rule that can accrue: (position, metric, threshold, inclusive). Atoms only,
# so a 10,000-rule index adds no objects a full collection keeps walking.
_Record = tuple[int, str, float, bool]


def _record(position: int, raw: dict[str, Any]) -> Optional[_Record]:
    metric = accrual_metric(raw.get("metricType"))
    inclusive = accrual_operator(raw.get("operatorType"))
    raw_threshold = raw.get("threshold")
    if metric is None or inclusive is None or isinstance(raw_threshold, bool):
        return None
    threshold = coerce_float(raw_threshold)
    if threshold is None or not math.isfinite(threshold):
        return None
    return position, metric, threshold, inclusive


class Accruals:
    """Every rule a call can accrue to, indexed so a call visits only those that may cover it."""

    __slots__ = ("_compile", "_payload", "_pooled", "_routed", "_routes", "departments", "unrouted")

    def __init__(self, payload: Payload, compile_rule: Callable[[int], CompiledRule]) -> None:
        self._payload = payload
        self._compile = compile_rule
        self.departments: dict[str, _Record] = {}
        unrouted: list[tuple[Optional[CompiledFilter], _Record]] = []
        self._routed: list[tuple[list[CompiledFilter], Optional[CompiledFilter], _Record]] = []
        for position, raw in enumerate(payload.rules):
            record = _record(position, raw) if isinstance(raw, dict) else None
            if record is None:
                continue
            if is_department_rule(raw):
                self.departments[str(raw.get("ruleId") or raw.get("id"))] = record
                continue
            route, indexed = scan_filters(raw.get("filters"))
            if route is None:
                unrouted.append((indexed, record))
            else:
                self._routed.append((route, indexed, record))
        self.unrouted = CoverIndex(unrouted)
        self._routes: dict[tuple[Any, Any], CoverIndex[_Record]] = {}
        # A pooled rule's account is the same for every call: built once, on first use.
        self._pooled: dict[int, Account] = {}

    def accounts(self, facts: CallFacts, now: float) -> tuple[Account, ...]:
        """Every rule this call counts toward, tripped or not, with its server figure.

        Department accounts come first (the verdict judges them first), then
        pooled and grouped rules in payload order.
        """
        found: list[Account] = []
        if self.departments:
            self._department_accounts(facts, now, found)
        unrouted = self.unrouted.candidates(facts) if self.unrouted.size else ()
        routed = self._routed_for(facts).candidates(facts) if self._routed else ()
        if not unrouted and not routed and not found:
            return ()
        for record in (*unrouted, *routed):
            account = self._covering(record, facts, now)
            if account is not None:
                found.append(account)
        if self.unrouted.size and len(found) > 1:
            found.sort(key=_department_then_position)
        return tuple(found)

    def _routed_for(self, facts: CallFacts) -> CoverIndex[_Record]:
        """The rules with model or provider rows that hold for this pair, cached per pair."""
        key = (facts.model, facts.provider)
        cacheable = cacheable_route(*key)
        index = self._routes.get(key) if cacheable else None
        if index is None:
            index = CoverIndex(
                (indexed, record)
                for route, indexed, record in self._routed
                if rows_hold(route, facts)
            )
            if cacheable:
                if len(self._routes) >= _ROUTE_CACHE_SIZE:
                    self._routes.clear()
                self._routes[key] = index
        return index

    def _covering(self, record: _Record, facts: CallFacts, now: float) -> Optional[Account]:
        position = record[0]
        rule = self._compile(position)
        if rule.ended(now) or (rule.reads_metadata and not rule.covers_metadata(facts)):
            return None
        if rule.group is None:
            account = self._pooled.get(position)
            if account is None:
                account = self._pooled[position] = _account(rule, record, "", rule.current_value)
            return account
        own = _own_entry(rule.group, facts.group_keys())
        return None if own is None else _account(rule, record, *own)

    def _department_accounts(self, facts: CallFacts, now: float, into: list[Account]) -> None:
        email = facts.caller_email()
        if email is None:
            return
        for rule_id, balance in self._balances_of(email).items():
            record = self.departments.get(str(rule_id))
            if record is None:
                continue
            rule = self._compile(record[0])
            if not rule.ended(now) and _department_covers(rule, facts):
                into.append(_account(rule, record, email, balance))

    def _balances_of(self, email: str) -> dict[int, float]:
        """The caller's balance per department rule: candidates first, then the block maps."""
        payload = self._payload
        balances: dict[int, float] = {}
        for candidate in payload.candidates.get(email, ()):
            if candidate.balance is not None:
                balances.setdefault(candidate.rule_id, candidate.balance)
        balance = payload.balances.get(email)
        if balance is not None:
            for listed in (payload.blocks.get(email), payload.warnings.get(email)):
                rule_id = rule_id_value(listed)
                if rule_id is not None:
                    balances.setdefault(rule_id, balance)
        return balances


def _account(rule: CompiledRule, record: _Record, entry: str, base: Optional[float]) -> Account:
    _, metric, threshold, inclusive = record
    return Account(
        rule,
        entry,
        metric,
        base or 0.0,
        threshold,
        inclusive,
        rule.window_end,
        rule.blocks_action,
        rule.shadow,
    )


def _own_entry(group: dict[str, tuple[bool, Optional[float]]], keys: tuple[str, ...]) -> Any:
    """The caller's entry key and figure: the one the verdict judges, else their own key at 0."""
    for key in keys:
        found = group.get(key)
        if found is not None:
            return key, found[1]
    return (keys[0], 0.0) if keys else None


def _department_covers(rule: CompiledRule, facts: CallFacts) -> bool:
    """Filters and credential, less what the server decided when it listed the caller."""
    credential = rule.credential
    if credential and credential != facts.metadata.get("subscriber_credential", ""):
        return False
    return rule.filters is None or rule.filters.hold(facts, False, CANDIDATE_DECIDED)


def _department_then_position(account: Account) -> tuple[bool, int]:
    return (not account.rule.is_department, account.rule.position)


def cacheable_route(model: Any, provider: Any) -> bool:
    """Whether a (model, provider) pair can key a cache: plain strings or None."""
    return (type(model) is str or model is None) and (type(provider) is str or provider is None)
