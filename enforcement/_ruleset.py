"""A rule set compiled once per payload, and the verdict it gives a call.

Compiling decides everything that does not depend on the call: which rules
can trip at all (a rule nobody is over can never block, so it is not walked),
each per-person breakdown as a dict, department maps keyed by normalized
email, filters parsed, window ends as epoch seconds, the error each rule
would raise, the keys any breached entry of a grouped rule holds, and an
index of tripped rules by the metadata values their filters name. A
:class:`RuleSet` never changes its answers once built (it only memoizes:
rules compiled on demand, per-route rule lists, the accrual index), so the
engine swaps a new one in by reference, a check takes no lock and copies
nothing, and its cost follows the tripped rules that can cover the caller,
not the size of the rule set.

The verdict order is CONTRACT §3 steps 5 to 7. :meth:`RuleSet.accounts`
answers the other question local spend asks (CONTRACT §9): which rules a
completed call counts toward, and how much room each has left.
"""

from __future__ import annotations

import datetime
import gc
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from ._callfacts import CallFacts
from ._errors import BudgetExceededError
from ._filters import (
    CANDIDATE_DECIDED,
    CANDIDATE_DECIDED_WITH_CREDENTIAL,
    CompiledFilters,
    CoverIndex,
    compile_filters,
    meta_rows_hold,
    route_rows_hold,
)
from ._wire import Candidate, Payload, coerce_float, first_present, rules_fingerprint

__all__ = [
    "Account",
    "CompiledRule",
    "Notice",
    "RuleSet",
    "RuleVerdict",
    "Verdict",
    "keep_out_of_collections",
]

_DEPARTMENT_ID_KEYS = ("departmentId", "orgUnitId")
_DEPARTMENT_GROUPS = frozenset({"DEPARTMENT", "ORG_UNIT"})
DEPARTMENT_FALLBACK_NAME = "Department budget"
_BLOCK_PREFIX = "Request blocked by Revenium enforcement rule: "
_WINDOW_END = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?([+-]\d{2}:\d{2})?")


class Notice(NamedTuple):
    """Something a verdict noticed besides its answer, for the engine to log and count.

    ``kind`` is ``"warn_only"``, ``"shadow"``, ``"department_not_blocking"`` or
    ``"warn_tier"``. ``value`` is the figure the rule is over by (the caller's
    own balance for a department rule); ``email`` is set for a warn tier only,
    so that it is warned about once per caller.
    """

    kind: str
    rule: Optional[CompiledRule]
    rule_id: Any
    value: Optional[float]
    email: Optional[str] = None


class Verdict(NamedTuple):
    """The answer for a call that something noticed: the error to raise, if any, and the notices."""

    error: Optional[BudgetExceededError]
    notices: tuple[Notice, ...]


def keep_out_of_collections() -> None:
    """Move what is alive now out of the cyclic collector's reach (``gc.freeze()``).

    A full collection walks every tracked object, and a freshly installed
    payload of 10,000 rules is tens of thousands of them, so a rule set
    swapped in every poll soon makes a full collection stop every thread for
    tens of milliseconds. Frozen objects are still freed by reference
    counting when the next rule set replaces them (a rule set holds no
    cycles); what is never collected is cyclic garbage that was alive at the
    moment of freezing. It is process-wide, so the engine calls it after an
    install only where the application accepts that.
    """
    gc.freeze()


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


def parse_window_end(raw: Any) -> Optional[float]:
    """``windowEnd`` as epoch seconds; ``None`` (never ends) when absent or unreadable.

    ISO-8601 with up to nine fraction digits, ``Z`` or an offset and maybe a
    ``[Zone]`` suffix, read as UTC without an offset; or epoch seconds, which
    the reference SDK ignores (CONTRACT §7). An integer past float range
    (``10**400`` is valid JSON) is unreadable, as the reference has it: no end.
    """
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        try:
            return float(raw) if raw == raw else None
        except OverflowError:
            return None
    if not isinstance(raw, str):
        return None
    try:
        text = raw.strip().split("[", 1)[0]
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        match = _WINDOW_END.fullmatch(text)
        if match is None:
            return None
        seconds, fraction, offset = match.groups()
        parsed = datetime.datetime.fromisoformat(
            f"{seconds}.{(fraction or '')[:6].ljust(6, '0')}{offset or ''}"
        )
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return parsed.timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _iso_utc(epoch: float) -> Optional[str]:
    try:
        moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.isoformat().replace("+00:00", "Z")


def _deny_message(raw: Any) -> Optional[str]:
    return (raw.strip() or None) if isinstance(raw, str) else None


def _action_blocks(action: Any) -> bool:
    """Only BLOCK (or no action at all) refuses a call; WARN_ONLY, THROTTLE, NOTIFY warn."""
    if action is None:
        return True
    return isinstance(action, str) and action.strip().upper() == "BLOCK"


def _is_department_rule(rule: dict[str, Any]) -> bool:
    if first_present(rule, _DEPARTMENT_ID_KEYS) is not None:
        return True
    group_by = rule.get("groupBy")
    return isinstance(group_by, str) and group_by.strip().upper() in _DEPARTMENT_GROUPS


def _group_index(rule: dict[str, Any]) -> Optional[dict[str, tuple[bool, Optional[float]]]]:
    """``groupValue -> (breached, currentValue)`` when the breakdown holds the verdict."""
    breakdown = rule.get("groupBreakdown")
    if not isinstance(breakdown, list):
        return None
    group_by = rule.get("groupBy")
    if not breakdown and not (isinstance(group_by, str) and group_by.strip()):
        return None
    index: dict[str, tuple[bool, Optional[float]]] = {}
    for entry in breakdown:
        if isinstance(entry, dict):
            key = entry.get("groupValue")
            if isinstance(key, str) and key not in index:
                index[key] = (
                    bool(entry.get("breached", False)),
                    coerce_float(entry.get("currentValue")),
                )
    return index


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
        self.blocks_action = _action_blocks(self.action)
        self.shadow = bool(raw.get("shadowMode", False))
        self.is_department = _is_department_rule(raw)
        self.credential: Any = raw.get("credential", "")
        self.filters: Optional[CompiledFilters] = compile_filters(raw.get("filters"))
        self.window_end_raw: Any = raw.get("windowEnd")
        self.window_end = parse_window_end(self.window_end_raw)
        self.threshold = coerce_float(raw.get("threshold"))
        self.current_value = coerce_float(raw.get("currentValue"))
        self.deny_message = _deny_message(raw.get("denyMessage"))
        self.resets_at: Any = raw.get("resetsAt")
        if self.resets_at is None:
            if isinstance(self.window_end_raw, str):
                self.resets_at = self.window_end_raw
            elif self.window_end is not None:
                self.resets_at = _iso_utc(self.window_end)
        self.period_type: Any = raw.get("periodType")
        self.metric_type: Any = raw.get("metricType")
        self.group = _group_index(raw)
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
        message = f"{_BLOCK_PREFIX}{rule_name}"
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


_ROUTE_CACHE_SIZE = 1024


def _can_trip(raw: dict[str, Any]) -> bool:
    """Whether anybody is over this rule: cheap, so untripped rules cost one look each."""
    breakdown = raw.get("groupBreakdown")
    if isinstance(breakdown, list):
        group_by = raw.get("groupBy")
        if breakdown or (isinstance(group_by, str) and group_by.strip()):
            return any(
                isinstance(entry, dict) and entry.get("breached", False) for entry in breakdown
            )
    return bool(raw.get("breached", False) or raw.get("blocked", False))


_WORD = re.compile(r"[A-Z]+")
# operatorType -> whether reaching the threshold exactly breaches; absent reads as >=.
_INCLUSIVE = {None: True, "GREATER_THAN_OR_EQUAL_TO": True, "GREATER_THAN": False}


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


class _Accrual(NamedTuple):
    """A rule that can accrue, with what does not depend on the call worked out."""

    rule: CompiledRule
    metric: str
    threshold: float
    inclusive: bool

    def account(self, entry: str, base: float) -> Account:
        rule = self.rule
        return Account(
            rule,
            entry,
            self.metric,
            base,
            self.threshold,
            self.inclusive,
            rule.window_end,
            rule.blocks_action,
            rule.shadow,
        )


def _accrual(rule: CompiledRule) -> Optional[_Accrual]:
    metric = accrual_metric(rule.metric_type)
    inclusive = accrual_operator(rule.raw.get("operatorType"))
    threshold = rule.threshold
    raw_threshold = rule.raw.get("threshold")
    if metric is None or inclusive is None or threshold is None or isinstance(raw_threshold, bool):
        return None
    if not math.isfinite(threshold):
        return None
    return _Accrual(rule, metric, threshold, inclusive)


def _own_entry(group: dict[str, tuple[bool, Optional[float]]], keys: tuple[str, ...]) -> Any:
    """The caller's entry key and figure: the one the verdict judges, else their own key at 0."""
    for key in keys:
        found = group.get(key)
        if found is not None:
            return key, found[1] or 0.0
    return (keys[0], 0.0) if keys else None


class _Accruals:
    """Every rule a call can accrue to, indexed so a call visits only those that may cover it.

    Built once per rule set, on first use (or :meth:`RuleSet.prepare_accounts`
    from the refresher), so taking in a payload costs nothing more while
    local spend is off.
    """

    __slots__ = ("_routed", "_routes", "departments", "unrouted")

    def __init__(self, rules: list[CompiledRule]) -> None:
        accruals = [(rule, found) for rule in rules if (found := _accrual(rule)) is not None]
        self.departments = {
            str(rule.identifier): found for rule, found in accruals if rule.is_department
        }
        plain = [(rule, found) for rule, found in accruals if not rule.is_department]
        self.unrouted = CoverIndex(
            (rule.filters, found) for rule, found in plain if not _has_route_rows(rule)
        )
        self._routed = [found for rule, found in plain if _has_route_rows(rule)]
        self._routes: dict[tuple[Any, Any], CoverIndex[_Accrual]] = {}

    def routed(self, facts: CallFacts) -> CoverIndex[_Accrual]:
        """The rules with model or provider rows that hold for this pair, cached per pair."""
        key = (facts.model, facts.provider)
        index = self._routes.get(key) if _cacheable(*key) else None
        if index is None:
            index = CoverIndex(
                (found.rule.filters, found)
                for found in self._routed
                if found.rule.covers_route(facts)
            )
            if _cacheable(*key):
                if len(self._routes) >= _ROUTE_CACHE_SIZE:
                    self._routes.clear()
                self._routes[key] = index
        return index


def _has_route_rows(rule: CompiledRule) -> bool:
    return rule.filters is not None and bool(rule.filters.route)


class RuleSet:
    """An immutable, indexed rule set; :meth:`evaluate` is the hot path.

    Only rules somebody is over are compiled up front; the rest (usually
    nearly all) are compiled on demand, when a department verdict names one
    or :meth:`explain` asks.
    """

    __slots__ = (
        "_accruals",
        "_breached_keys",
        "_compiled",
        "_fingerprint",
        "_routes",
        "_unrouted",
        "active",
        "balances",
        "blocks",
        "by_id",
        "candidates",
        "count",
        "generation",
        "has_departments",
        "payload",
        "quiet",
        "routed",
        "shadow",
        "warnings",
    )

    def __init__(self, payload: Payload, generation: int) -> None:
        self.payload = payload
        self.generation = generation
        self._fingerprint: Optional[str] = None
        self._compiled: dict[int, CompiledRule] = {}
        self._routes: dict[tuple[Any, Any], CoverIndex[CompiledRule]] = {}
        self._accruals: Optional[_Accruals] = None
        # Positions, not rules: a str -> int map holds no container the
        # garbage collector has to traverse on every full collection.
        by_id: dict[str, int] = {}
        tripped: list[CompiledRule] = []
        count = 0
        for position, raw in enumerate(payload.rules):
            if not isinstance(raw, dict):
                continue
            count += 1
            key = raw.get("ruleId")
            if key is None:
                key = raw.get("id")
            if isinstance(key, (int, str)) and not isinstance(key, bool):
                by_id.setdefault(str(key), position)
            if _can_trip(raw):
                tripped.append(self._compile(position, raw))
        self.count = count
        self.by_id = by_id
        self.active = tuple(
            r for r in tripped if r.can_trip and not r.is_department and not r.shadow
        )
        self.shadow = tuple(r for r in tripped if r.can_trip and not r.is_department and r.shadow)
        self._unrouted = CoverIndex((r.filters, r) for r in self.active)
        # Every key a breached entry holds: a caller holding none passes every grouped rule.
        self._breached_keys = frozenset().union(
            *(r.breached_keys for r in (*self.active, *self.shadow))
        )
        # Whether a (model, provider) pair can narrow the tripped rules down.
        self.routed = any(r.filters is not None and r.filters.route for r in self.active)
        self.blocks = payload.blocks
        self.balances = payload.balances
        self.warnings = payload.warnings
        self.candidates = payload.candidates
        self.has_departments = bool(payload.blocks or payload.warnings or payload.candidates)
        # Nobody is over any limit: a check can pass without looking at the call.
        self.quiet = not (self.active or self.shadow or self.has_departments)

    def _compile(self, position: int, raw: dict[str, Any]) -> CompiledRule:
        rule = self._compiled.get(position)
        if rule is None:
            rule = self._compiled[position] = CompiledRule(position, raw)
        return rule

    def rule_by_id(self, rule_id: Any) -> Optional[CompiledRule]:
        """The first rule whose ``ruleId`` (else ``id``) reads as ``rule_id``."""
        position = self.by_id.get(str(rule_id))
        if position is None:
            return None
        return self._compile(position, self.payload.rules[position])

    @property
    def rules(self) -> list[CompiledRule]:
        """Every rule, compiled (slow: for explanations and tools)."""
        return [self._compile(position, raw) for position, raw in self.raw_rules()]

    def raw_rules(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Each well-formed rule as the wire gave it, with its position in the payload."""
        for position, raw in enumerate(self.payload.rules):
            if isinstance(raw, dict):
                yield position, raw

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = rules_fingerprint(self.payload.rules)
        return self._fingerprint

    def __len__(self) -> int:
        return self.count

    def may_cover(self, model: Any, provider: Any) -> bool:
        """False when no tripped rule can cover a call to this model and provider.

        Answered from the per-(model, provider) cache without reading the
        call's metadata, so a call to a model nobody is over for costs a dict
        lookup even while other callers or models are blocked.
        """
        if self.has_departments or self.shadow:
            return True
        if not self.routed:
            return bool(self.active)
        if _cacheable(model, provider):
            routed = self._routes.get((model, provider))
            if routed is not None:
                return bool(routed)
        return True

    def _active_for(self, facts: CallFacts) -> CoverIndex[CompiledRule]:
        """The tripped rules whose model and provider rows hold, cached per pair."""
        if not self.routed:
            return self._unrouted
        model, provider = facts.model, facts.provider
        if not _cacheable(model, provider):
            return CoverIndex((r.filters, r) for r in self.active if r.covers_route(facts))
        routed = self._routes.get((model, provider))
        if routed is None:
            routed = CoverIndex((r.filters, r) for r in self.active if r.covers_route(facts))
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[(model, provider)] = routed
        return routed

    # -- the verdict -------------------------------------------------------

    def evaluate(self, facts: CallFacts, now: float) -> Optional[Verdict]:
        """The verdict on a call: ``None`` when it passes and nothing was noticed.

        The error is returned rather than raised, so the engine raises it
        once, from the caller's own frame: raising through every layer costs
        more than the rest of the check. What the verdict noticed on the way
        (warn-only rules, shadow would-blocks, warn tiers) comes back as
        values; the ruleset never calls out to the engine.
        """
        notices: list[Notice] = []
        error = None
        if self.has_departments:
            error = self._judge_departments(facts, now, notices)
        if error is None:
            for rule in self.shadow:
                self._report_shadow(rule, facts, now, notices)
            error = self._judge_pooled_and_grouped(facts, now, notices)
        if error is None and not notices:
            return None
        return Verdict(error, tuple(notices))

    def _judge_pooled_and_grouped(
        self, facts: CallFacts, now: float, notices: list[Notice]
    ) -> Optional[BudgetExceededError]:
        for rule in self._active_for(facts).candidates(facts):
            end = rule.window_end
            if end is not None and end <= now:
                continue
            if rule.reads_metadata and not rule.covers_metadata(facts):
                continue
            if rule.group is None:
                current_value = rule.current_value  # a pooled rule here is tripped
            else:
                if not self._may_be_breached(facts):
                    continue
                tripped, current_value = rule.trips(facts)
                if not tripped:
                    continue
            if rule.blocks_action:
                return rule.error(current_value)
            notices.append(Notice("warn_only", rule, rule.identifier, current_value))
        return None

    def _may_be_breached(self, facts: CallFacts) -> bool:
        """Whether the caller holds a key some breached entry holds: one set miss per key."""
        breached = self._breached_keys
        return any(key in breached for key in facts.group_keys())

    def _report_shadow(
        self, rule: CompiledRule, facts: CallFacts, now: float, notices: list[Notice]
    ) -> None:
        if rule.group is not None and not self._may_be_breached(facts):
            return
        if rule.ended(now) or not rule.covers(facts):
            return
        tripped, current_value = rule.trips(facts)
        if tripped and rule.blocks_action:
            notices.append(Notice("shadow", rule, rule.identifier, current_value))

    def _judge_departments(
        self, facts: CallFacts, now: float, notices: list[Notice]
    ) -> Optional[BudgetExceededError]:
        """The server's department verdict; a malformed map is no verdict, never a crash."""
        try:
            email = facts.caller_email()
            if email is None:
                return None
            listed = self.candidates.get(email)
            if listed:
                return self._judge_candidates(email, listed, facts, now, notices)
            rule_id = _rule_id_value(self.blocks.get(email))
            if rule_id is not None:
                error = self._department_verdict(rule_id, self.balances.get(email), now, notices)
                if error is not None:
                    return error
            warned_id = _rule_id_value(self.warnings.get(email))
            if warned_id is not None:
                notices.append(self._warn_tier(email, warned_id, self.balances.get(email)))
        except Exception:
            return None
        return None

    def _warn_tier(self, email: str, rule_id: int, balance: Optional[float]) -> Notice:
        return Notice("warn_tier", self.rule_by_id(rule_id), rule_id, balance, email)

    def _judge_candidates(
        self,
        email: str,
        listed: list[Candidate],
        facts: CallFacts,
        now: float,
        notices: list[Notice],
    ) -> Optional[BudgetExceededError]:
        chosen = self._first_covering(listed, facts, now)
        if chosen is None:
            return None
        if chosen.tier == "BLOCK":
            return self._department_verdict(chosen.rule_id, chosen.balance, now, notices)
        notices.append(self._warn_tier(email, chosen.rule_id, chosen.balance))
        return None

    def _first_covering(
        self, listed: list[Candidate], facts: CallFacts, now: float
    ) -> Optional[Candidate]:
        decided = (
            CANDIDATE_DECIDED_WITH_CREDENTIAL
            if facts.names_credential_only_by_value()
            else CANDIDATE_DECIDED
        )
        for candidate in listed:
            rule = self.rule_by_id(candidate.rule_id)
            if rule is None:
                return candidate
            if rule.ended(now):
                continue
            if rule.filters is None or rule.filters.hold(facts, True, decided):
                return candidate
        return None

    def _department_verdict(
        self, rule_id: int, own_balance: Optional[float], now: float, notices: list[Notice]
    ) -> Optional[BudgetExceededError]:
        rule = self.rule_by_id(rule_id)
        if rule is None:
            # The server only lists people it has decided are over: block, unnamed.
            return BudgetExceededError(
                f"{_BLOCK_PREFIX}{DEPARTMENT_FALLBACK_NAME}",
                rule_name=DEPARTMENT_FALLBACK_NAME,
                current_value=own_balance,
                rule_id=rule_id,
                source="server",
            )
        if rule.ended(now):
            return None
        if rule.shadow:
            notices.append(Notice("shadow", rule, rule.identifier, own_balance))
            return None
        if not rule.blocks_action:
            notices.append(Notice("department_not_blocking", rule, rule.identifier, own_balance))
            return None
        return rule.error(
            own_balance if own_balance is not None else rule.current_value,
            name=rule.raw.get("name") or DEPARTMENT_FALLBACK_NAME,
            identifier=rule.identifier or rule_id,
        )

    # -- local spend (CONTRACT §9) -------------------------------------------

    def prepare_accounts(self) -> None:
        """Compile the accrual index now (off a caller's thread) rather than on first use."""
        if self._accruals is None:
            self._accruals = _Accruals(self.rules)

    def accounts(self, facts: CallFacts, now: float) -> tuple[Account, ...]:
        """Every rule this call counts toward, tripped or not, with its server figure.

        Department accounts come first (the verdict judges them first), then
        pooled and grouped rules in payload order. A call only visits the
        rules its model, provider and metadata values can reach.
        """
        self.prepare_accounts()
        accruals = self._accruals
        assert accruals is not None
        found: list[Account] = []
        if accruals.departments:
            self._department_accounts(accruals.departments, facts, now, found)
        for index in (accruals.unrouted, accruals.routed(facts)):
            for accrual in index.candidates(facts) if index.size else ():
                account = _covering_account(accrual, facts, now)
                if account is not None:
                    found.append(account)
        if accruals.unrouted.size and len(found) > 1:
            found.sort(key=_department_then_position)
        return tuple(found)

    def _department_accounts(
        self, departments: dict[str, _Accrual], facts: CallFacts, now: float, into: list[Account]
    ) -> None:
        email = facts.caller_email()
        if email is None:
            return
        for rule_id, balance in self._balances_of(email).items():
            accrual = departments.get(str(rule_id))
            if accrual is None or accrual.rule.ended(now):
                continue
            if _department_covers(accrual.rule, facts):
                into.append(accrual.account(email, balance))

    def _balances_of(self, email: str) -> dict[int, float]:
        """The caller's balance per department rule: candidates first, then the block maps."""
        balances: dict[int, float] = {}
        for candidate in self.candidates.get(email, ()):
            if candidate.balance is not None:
                balances.setdefault(candidate.rule_id, candidate.balance)
        balance = self.balances.get(email)
        if balance is not None:
            for listed in (self.blocks.get(email), self.warnings.get(email)):
                rule_id = _rule_id_value(listed)
                if rule_id is not None:
                    balances.setdefault(rule_id, balance)
        return balances

    # -- explanation (not the hot path) ------------------------------------

    def explain(self, facts: CallFacts, now: float) -> list[RuleVerdict]:
        """Every rule's view of the call, in payload order."""
        return [self._explain_rule(rule, facts, now) for rule in self.rules]

    def _explain_rule(self, rule: CompiledRule, facts: CallFacts, now: float) -> RuleVerdict:
        def verdict(
            covers: bool, blocks: bool, reason: str, current: Optional[float] = None
        ) -> RuleVerdict:
            return RuleVerdict(
                rule.identifier, rule.name, covers, blocks, reason, current, rule.threshold
            )

        if rule.is_department:
            return verdict(False, False, "department rule: decided by the department maps")
        if not rule.covers(facts):
            return verdict(False, False, "call is outside the rule's filters or credential")
        if rule.ended(now):
            return verdict(True, False, "window has ended")
        tripped, current = rule.trips(facts)
        if not tripped:
            return verdict(True, False, "not breached for this caller", current)
        if rule.shadow:
            return verdict(True, False, "breached, but in shadow mode (would block)", current)
        if not rule.blocks_action:
            return verdict(True, False, f"breached, action {rule.action!r} only warns", current)
        return verdict(True, True, "breached: blocks", current)


def _covering_account(accrual: _Accrual, facts: CallFacts, now: float) -> Optional[Account]:
    rule = accrual.rule
    if rule.ended(now) or (rule.reads_metadata and not rule.covers_metadata(facts)):
        return None
    if rule.group is None:
        return accrual.account("", rule.current_value or 0.0)
    own = _own_entry(rule.group, facts.group_keys())
    return None if own is None else accrual.account(*own)


def _department_covers(rule: CompiledRule, facts: CallFacts) -> bool:
    """Filters and credential, less what the server decided when it listed the caller."""
    credential = rule.credential
    if credential and credential != facts.metadata.get("subscriber_credential", ""):
        return False
    return rule.filters is None or rule.filters.hold(facts, False, CANDIDATE_DECIDED)


def _department_then_position(account: Account) -> tuple[bool, int]:
    return (not account.rule.is_department, account.rule.position)


def _cacheable(model: Any, provider: Any) -> bool:
    """Whether a (model, provider) pair can key a cache: plain strings or None."""
    return (type(model) is str or model is None) and (type(provider) is str or provider is None)


def _rule_id_value(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
