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

Most calls accrue to no rule, so :meth:`Accruals.may_accrue` turns them away
before a ``CallFacts`` is built: per (model, provider) pair it knows the
plain metadata values every rule the pair reaches is filed by, and reads
them from the raw metadata. A pooled rule met before keeps its account, and
its one IS or IN metadata row as a set, so a later call judges it in a probe.
"""

from __future__ import annotations

import array
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable, Literal, NamedTuple, Optional, Union

from ._callfacts import (
    PLAIN_DIMENSION_KEYS,
    CallFacts,
    SubscriberEmail,
    as_metadata,
    caller_email,
    normalize_email,
)
from ._filters import (
    CANDIDATE_DECIDED,
    CompiledFilter,
    FiledValues,
    Filing,
    RowKey,
    rows_hold,
    scan_filters,
)
from ._rule import CompiledRule
from ._wire import Payload, coerce_float, is_department_rule

__all__ = [
    "Account",
    "Accruals",
    "RecordIndex",
    "accrual_metric",
    "accrual_operator",
    "rule_id_value",
]

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


# A rule that can accrue is known by its position in the payload; its terms
# (metric, threshold, inclusive) are kept in columns by position. Ints and
# arrays of them, never a container per rule: a 10,000-rule index adds no
# objects for the garbage collector to walk.
_Record = int
_Terms = tuple[str, float, bool]


def _terms(raw: dict[str, Any], known: dict[tuple[str, str], tuple[Any, Any]]) -> Optional[_Terms]:
    """A rule's terms; ``known`` remembers the metric and operator of each pair of names.

    A rule set names a handful of metric and operator types among 10,000
    rules, and reading one (``strip``, ``upper``, a regex) costs more than
    the rest of the rule's terms.
    """
    metric_type, operator_type = raw.get("metricType"), raw.get("operatorType")
    if type(metric_type) is str and type(operator_type) is str:
        pair = known.get((metric_type, operator_type))
        if pair is None:
            pair = known[metric_type, operator_type] = (
                accrual_metric(metric_type),
                accrual_operator(operator_type),
            )
        metric, inclusive = pair
    else:
        metric, inclusive = accrual_metric(metric_type), accrual_operator(operator_type)
    raw_threshold = raw.get("threshold")
    if metric is None or inclusive is None or isinstance(raw_threshold, bool):
        return None
    threshold = coerce_float(raw_threshold)
    if threshold is None or not math.isfinite(threshold):
        return None
    return metric, threshold, inclusive


# Per (model, provider): the filed values a call must name to reach a rule, or True
# when some rule it reaches is filed by none (then only accounts() can tell).
_Gate = Union[Literal[True], FiledValues]
_NO_RULES: FiledValues = ()


class Accruals:
    """Every rule a call can accrue to, indexed so a call visits only those that may cover it."""

    __slots__ = (
        "_compile",
        "_gates",
        "_inclusive",
        "_metrics",
        "_payload",
        "_pooled",
        "_routed",
        "_routes",
        "_sole_rows",
        "_thresholds",
        "departments",
        "unrouted",
    )

    def __init__(self, payload: Payload, compile_rule: Callable[[int], CompiledRule]) -> None:
        self._payload = payload
        self._compile = compile_rule
        self.departments: dict[str, _Record] = {}
        size = len(payload.rules)
        # Each accruing rule's terms, by position (see _Record).
        self._metrics: list[Optional[str]] = [None] * size
        self._thresholds = array.array("d", bytes(8 * size))
        self._inclusive = bytearray(size)
        unrouted: list[tuple[Optional[Filing], _Record]] = []
        self._routed = _RoutedRules()
        shared_rows: dict[RowKey, CompiledFilter] = {}
        known: dict[tuple[str, str], tuple[Any, Any]] = {}
        for position, raw in enumerate(payload.rules):
            terms = _terms(raw, known) if isinstance(raw, dict) else None
            if terms is None:
                continue
            self._metrics[position], self._thresholds[position], self._inclusive[position] = terms
            if is_department_rule(raw):
                self.departments[str(raw.get("ruleId") or raw.get("id"))] = position
                continue
            route, filing = scan_filters(raw.get("filters"), shared_rows)
            if route is None:
                unrouted.append((filing, position))
            else:
                self._routed.add(route, filing, position)
        self.unrouted = RecordIndex(unrouted)
        self._routes: dict[tuple[Any, Any], RecordIndex] = {}
        # Per (model, provider): what a call's raw metadata must name to reach a rule.
        self._gates: dict[tuple[Any, Any], _Gate] = {}
        # A pooled rule's account is the same for every call: built once, on first use.
        self._pooled: dict[int, Account] = {}
        # Those of them whose only metadata row is one IS or IN on a plain dimension.
        self._sole_rows: dict[int, tuple[str, frozenset[str]]] = {}

    # -- the gate ----------------------------------------------------------------------

    def may_accrue(self, usage_metadata: Any, model: Any, provider: Any) -> bool:
        """False when no rule can accrue this call; True when :meth:`accounts` must tell.

        Answered from the (model, provider) pair and the raw metadata, before
        any :class:`CallFacts` is built: the rules the pair reaches, filed by
        the plain metadata values their first IS or IN row names, and the
        caller's address when department rules can accrue. Only ever errs
        towards True (an unusual pair, a rule no value files, an unreadable
        value), so a call it turns away is one :meth:`accounts` finds no rule for.
        """
        if type(model) is str and type(provider) is str:
            gate = self._gates.get((model, provider))
            if gate is None:
                gate = self._gate_for(model, provider)
        else:
            gate = self._odd_pair_gate(model, provider)
        if gate is True:
            return True
        if not gate and not self.departments:
            return False  # no rule the pair reaches, no department rule: the metadata is moot
        metadata = usage_metadata if type(usage_metadata) is dict else as_metadata(usage_metadata)
        try:
            # names_a_filed_value() over first_set(), written out: this runs on every call.
            for keys, values in gate:
                for key in keys:
                    value = metadata.get(key)
                    if value is not None:
                        if type(value) is not str or value in values:
                            return True
                        break
            return bool(self.departments) and self._may_name_department_caller(metadata)
        except Exception:
            return True  # a value we cannot read reaches every rule filed by it

    def reaches_nothing(self, model: str, provider: str) -> bool:
        """True when no rule can accrue a call to this pair, whatever its metadata."""
        gate = self._gates.get((model, provider))
        if gate is None:
            gate = self._gate_for(model, provider)
        return gate is not True and not gate and not self.departments

    def _odd_pair_gate(self, model: Any, provider: Any) -> _Gate:
        """A pair with a ``None`` (cached like any other) or something not text (never)."""
        if not cacheable_route(model, provider):
            return True  # not a cache key: accounts() routes it afresh
        gate = self._gates.get((model, provider))
        return self._gate_for(model, provider) if gate is None else gate

    def _gate_for(self, model: Optional[str], provider: Optional[str]) -> _Gate:
        """What the rules this pair reaches are filed by: their union, or True when not all are."""
        pooled = self.unrouted.filed
        routed = (
            self._routed_for(CallFacts(None, model, provider)).filed if self._routed else _NO_RULES
        )
        gate: _Gate = True if pooled is None or routed is None else pooled + routed
        if len(self._gates) >= _ROUTE_CACHE_SIZE:
            self._gates.clear()
        self._gates[(model, provider)] = gate
        return gate

    def _may_name_department_caller(self, metadata: Mapping[str, Any]) -> bool:
        """Whether the caller has a balance a department rule can accrue to (see _balances_of)."""
        email = caller_email(metadata)
        payload = self._payload
        return email is not None and (email in payload.candidates or email in payload.balances)

    # -- the accounts ------------------------------------------------------------------

    def accounts(self, facts: CallFacts, now: float) -> tuple[Account, ...]:
        """Every rule this call counts toward, tripped or not, with its server figure.

        Department accounts come first (the verdict judges them first), then
        pooled and grouped rules in payload order. A pooled rule met before
        is judged here without a call: its account is fixed, so only its
        window and its metadata rows are asked.
        """
        found: list[Account] = []
        if self.departments:
            self._department_accounts(facts, now, found)
        departments = len(found)
        records = self._records_for(facts)
        if not records:
            return tuple(found)
        # Written out rather than in helpers: each call per record costs as much as its test.
        pooled, sole_rows = self._pooled, self._sole_rows
        for record in records:
            account = pooled.get(record)
            if account is None:
                account = self._covering(record, facts, now)
                if account is not None:
                    found.append(account)
                continue
            end = account.window_end
            if end is not None and end <= now:
                continue
            rule = account.rule
            if rule.reads_metadata:
                sole = sole_rows.get(record)
                try:
                    value = facts.value(sole[0]) if sole is not None else None
                except Exception:
                    value = None  # judged in full below, where a failure holds
                if sole is not None and type(value) is str:  # plain text, one IS or IN row
                    if value not in sole[1]:
                        continue
                elif not rule.covers_metadata(facts):
                    continue
            found.append(account)
        if departments > 1 and self.unrouted.size and len(found) > 1:
            found.sort(key=_department_then_position)  # departments by position, as before
        return tuple(found)

    def _records_for(self, facts: CallFacts) -> Sequence[_Record]:
        """The records that may cover this call, rules without and with route rows, by position."""
        unrouted = self.unrouted.candidates(facts) if self.unrouted.size else ()
        routed: Sequence[_Record] = ()
        if self._routed:
            index = self._routed_for(facts)
            if index.size:
                routed = index.candidates(facts)
        if unrouted and routed:
            return sorted((*unrouted, *routed))  # by position, which no two records share
        return unrouted or routed

    def _routed_for(self, facts: CallFacts) -> RecordIndex:
        """The rules with model or provider rows that hold for this pair, cached per pair."""
        model, provider = facts.model, facts.provider
        key = (model, provider)
        # cacheable_route(), written out: asked on every call a model or provider rule may cover.
        cacheable = (type(model) is str or model is None) and (
            type(provider) is str or provider is None
        )
        index = self._routes.get(key) if cacheable else None
        if index is None:
            index = RecordIndex(self._routed.holding(facts))
            if cacheable:
                if len(self._routes) >= _ROUTE_CACHE_SIZE:
                    self._routes.clear()
                self._routes[key] = index
        return index

    def _covering(self, position: _Record, facts: CallFacts, now: float) -> Optional[Account]:
        rule = self._compile(position)
        if rule.ended(now) or (rule.reads_metadata and not rule.covers_metadata(facts)):
            return None
        if rule.group is None:
            account = self._pooled.get(position)
            if account is None:
                sole = _sole_row(rule)
                if sole is not None:
                    self._sole_rows[position] = sole
                account = self._pooled[position] = self._account(
                    rule, position, "", rule.current_value
                )
            return account
        own = _own_entry(rule.group, facts.group_keys())
        return None if own is None else self._account(rule, position, *own)

    def _department_accounts(self, facts: CallFacts, now: float, into: list[Account]) -> None:
        email = facts.caller_email()
        if email is None:
            return
        for rule_id, balance in self._balances_of(email).items():
            position = self.departments.get(str(rule_id))
            if position is None:
                continue
            rule = self._compile(position)
            if not rule.ended(now) and _department_covers(rule, facts):
                into.append(self._account(rule, position, email, balance))

    def _account(
        self, rule: CompiledRule, position: _Record, entry: str, base: Optional[float]
    ) -> Account:
        metric = self._metrics[position]
        assert metric is not None  # only accruing rules are filed
        return Account(
            rule,
            entry,
            metric,
            base or 0.0,
            self._thresholds[position],
            bool(self._inclusive[position]),
            rule.window_end,
            rule.blocks_action,
            rule.shadow,
        )

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


class RecordIndex:
    """Accruing rules found by the metadata value their first IS or IN row names.

    :class:`~._filters.CoverIndex`'s filing, for records: each value's rules
    are a tuple built once, in payload order, so a call filed under one
    dimension gets that tuple as it is (no list, no sort); only a call that
    several dimensions or unfiled rules reach has its records merged, by
    position. ``filed`` is the same filing as the gate reads it from the raw
    metadata (:func:`~._filters.names_a_filed_value`), or ``None`` when some
    rule is filed by no plain value. The index only narrows: every record
    found is still judged in full.
    """

    __slots__ = ("_always", "_dimensions", "_single", "filed", "size")

    def __init__(self, items: Iterable[tuple[Optional[Filing], _Record]]) -> None:
        always: list[_Record] = []
        dimensions: dict[str, tuple[dict[str, list[_Record]], list[_Record]]] = {}
        for filing, record in items:
            if filing is None:
                always.append(record)
                continue
            dimension, keys = filing
            by_value, every = dimensions.setdefault(dimension, ({}, []))
            every.append(record)
            for key in keys:
                by_value.setdefault(key, []).append(record)
        # Arrays of positions: a container the collector never tracks, one per value.
        self._always = _positions(always)
        self._dimensions = tuple(
            (name, {key: _positions(found) for key, found in by_value.items()}, _positions(every))
            for name, (by_value, every) in dimensions.items()
        )
        self.size = len(always) + sum(len(every) for _, _, every in self._dimensions)
        self._single = self._dimensions[0] if len(self._dimensions) == 1 and not always else None
        self.filed = self._filed()

    def candidates(self, facts: CallFacts) -> Sequence[_Record]:
        """The records that may cover this call, in payload order."""
        single = self._single
        if single is not None:
            return _filed_under(facts, *single)
        found: Optional[list[_Record]] = None
        for dimension, by_value, every in self._dimensions:
            hits = _filed_under(facts, dimension, by_value, every)
            if hits:
                if found is None:
                    found = [*self._always, *hits]
                else:
                    found.extend(hits)
        if found is None:
            return self._always
        found.sort()  # by position, which no two records share
        return found

    def _filed(self) -> Optional[FiledValues]:
        if self._always:
            return None
        filed = []
        for name, by_value, _ in self._dimensions:
            keys = PLAIN_DIMENSION_KEYS.get(name)
            if keys is None:
                return None  # SUBSCRIBER, CREDENTIAL: read through the subscriber, not raw keys
            filed.append((keys, by_value))
        return tuple(filed)


def _filed_under(
    facts: CallFacts,
    dimension: str,
    by_value: dict[str, Sequence[_Record]],
    every: Sequence[_Record],
) -> Sequence[_Record]:
    """The records of one dimension this call's value can satisfy (as ``_filters._indexed``)."""
    try:
        actual = facts.value(dimension)
    except Exception:
        return every  # a value we cannot read holds, as in a filter walk
    if actual is None:
        return ()
    if type(actual) is not str:
        if not isinstance(actual, str):
            return every
        if isinstance(actual, SubscriberEmail):
            actual = normalize_email(actual)
    return by_value.get(actual, ())


def _sole_row(rule: CompiledRule) -> Optional[tuple[str, frozenset[str]]]:
    """The dimension and values of a rule's one metadata row, when a set probe judges it.

    An IS or IN row on a plain dimension, no legacy credential: for a value
    that is plain text the row holds exactly when the value is one of its
    own (``CompiledFilter.holds``, case kept); anything else is judged by
    :meth:`CompiledRule.covers_metadata`.
    """
    filters = rule.filters
    if rule.credential or filters is None or len(filters.meta) != 1:
        return None
    row = filters.meta[0]
    if row.operator not in ("IS", "IN") or row.dimension not in PLAIN_DIMENSION_KEYS:
        return None
    return row.dimension, frozenset(row.expected)


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


def _positions(records: list[_Record]) -> Sequence[_Record]:
    return array.array("q", records)


class _RoutedRules:
    """The accruing rules with model or provider rows, in columns rather than a tuple each.

    A tuple per rule holding its filing and route would be 10,000 containers
    for the collector to walk, and one holding tuples is untracked only on a
    later pass. Each rule's route is a number into the shared routes (equal
    rows are one object, so there are as many as distinct routes), and its
    filing a dimension and either the one value of an IS row or a tuple.
    """

    __slots__ = ("_dimensions", "_keys", "_numbered", "_positions", "_route_numbers", "routes")

    def __init__(self) -> None:
        self.routes: list[tuple[CompiledFilter, ...]] = []
        self._numbered: dict[tuple[CompiledFilter, ...], int] = {}
        self._positions = array.array("q")  # each rule's position in the payload
        self._route_numbers = array.array("q")  # and its route's, in routes
        self._dimensions: list[Optional[str]] = []
        self._keys: list[Union[str, tuple[str, ...]]] = []

    def __bool__(self) -> bool:
        return bool(self._positions)

    def add(self, route: tuple[CompiledFilter, ...], filing: Optional[Filing], at: int) -> None:
        number = self._numbered.setdefault(route, len(self.routes))
        if number == len(self.routes):
            self.routes.append(route)
        self._positions.append(at)
        self._route_numbers.append(number)
        if filing is None:
            self._dimensions.append(None)
            self._keys.append(())
        else:
            keys = filing[1]
            self._dimensions.append(filing[0])
            self._keys.append(keys[0] if len(keys) == 1 else keys)

    def holding(self, facts: CallFacts) -> Iterator[tuple[Optional[Filing], _Record]]:
        """Each rule whose route holds for the call's pair, filed as RecordIndex takes it."""
        holds = [rows_hold(route, facts) for route in self.routes]
        columns = zip(self._positions, self._route_numbers, self._dimensions, self._keys)
        for position, number, dimension, keys in columns:
            if holds[number]:
                yield None if dimension is None else (dimension, _as_tuple(keys)), position


def _as_tuple(keys: Union[str, tuple[str, ...]]) -> tuple[str, ...]:
    return (keys,) if isinstance(keys, str) else keys


def _department_then_position(account: Account) -> tuple[bool, int]:
    return (not account.rule.is_department, account.rule.position)


def cacheable_route(model: Any, provider: Any) -> bool:
    """Whether a (model, provider) pair can key a cache: plain strings or None."""
    return (type(model) is str or model is None) and (type(provider) is str or provider is None)
