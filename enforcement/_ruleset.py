"""A rule set compiled once per payload, and the verdict it gives a call.

Compiling decides everything that does not depend on the call: which rules
can trip at all (a rule nobody is over can never block, so it is not walked),
each per-person breakdown as a dict, department maps keyed by normalized
email, filters parsed, window ends as epoch seconds, the error each rule
would raise, the keys any breached entry of a grouped rule holds, an
index of tripped rules by the metadata values their filters name, and, when
only per-person verdicts or only rules filed by such values are tripped, a
gate that answers nearly every caller from the raw metadata
(:meth:`RuleSet.may_concern`). A
:class:`RuleSet` never changes its answers once built (it only memoizes:
rules compiled on demand, per-route rule lists, the accrual index), so the
engine swaps a new one in by reference, a check takes no lock and copies
nothing, and its cost follows the tripped rules that can cover the caller,
not the size of the rule set.

The verdict order is CONTRACT §3 steps 5 to 7. :meth:`RuleSet.accounts`
answers the other question local spend asks (CONTRACT §9): which rules a
completed call counts toward, and how much room each has left; that index
lives in :mod:`._accounts`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from typing import Any, Final, Optional, Union

from ._accounts import Account, Accruals, cacheable_route, rule_id_value
from ._callfacts import (
    PLAIN_DIMENSION_KEYS,
    CallFacts,
    as_metadata,
    holds_any_key,
    raw_caller_email,
    stored_email,
)
from ._errors import BudgetExceededError
from ._filters import (
    CANDIDATE_DECIDED,
    CANDIDATE_DECIDED_WITH_CREDENTIAL,
    FiledValues,
)
from ._pace import pace
from ._rule import (
    BLOCK_PREFIX,
    ROUTE_CACHE_SIZE,
    CompiledRule,
    Notice,
    Route,
    RuleVerdict,
    Verdict,
    keep_out_of_collections,
    routes_of,
)
from ._wire import Candidate, Payload, can_trip, rules_fingerprint

__all__ = [
    "Account",
    "CompiledRule",
    "Notice",
    "RuleSet",
    "RuleVerdict",
    "Verdict",
    "keep_out_of_collections",
]

DEPARTMENT_FALLBACK_NAME = "Department budget"
# Department answers remembered per rule set, by the address as sent: bounded,
# so a flood of distinct addresses costs a normalization each, never memory.
_REMEMBERED_CALLERS = 4096


class Screen(enum.Enum):
    """:meth:`RuleSet.screen`'s answers besides a remembered :class:`Verdict`."""

    PASSES = "passes"  # nothing can concern the caller
    JUDGE = "judge"  # build the call's facts and judge it


# RuleSet.leaves_alone's flags per (model, provider) pair.
_UNJUDGED = 1  # no tripped rule can concern a call to the pair, whatever its metadata
_UNACCRUED = 2  # no rule can accrue one

PASSES: Final = Screen.PASSES
JUDGE: Final = Screen.JUDGE
Screened = Union[Screen, Verdict]


class RuleSet:
    """An immutable, indexed rule set; :meth:`evaluate` is the hot path.

    Only rules somebody is over are compiled up front; the rest (usually
    nearly all) are compiled on demand, when a department verdict names one
    or :meth:`explain` asks.
    """

    __slots__ = (
        "_accruals",
        "_breached_emails",
        "_breached_keys",
        "_by_email",
        "_by_id",
        "_compiled",
        "_covers",
        "_fingerprint",
        "_free_pairs",
        "_index_gate",
        "_personal_only",
        "_routes",
        "_unrouted",
        "active",
        "balances",
        "blocks",
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

    def __init__(self, payload: Payload, generation: int, kept: Optional[Payload] = None) -> None:
        self.generation = generation
        self._fingerprint: Optional[str] = None
        self._compiled: dict[int, CompiledRule] = {}
        self._routes: dict[tuple[Any, Any], Route] = {}
        self._accruals: Optional[Accruals] = None
        self._by_id: Optional[dict[str, int]] = None
        self._by_email: dict[str, Screened] = {}
        self._free_pairs: dict[tuple[str, str], int] = {}
        tripped: list[CompiledRule] = []
        count = 0
        for position, raw in enumerate(payload.rules):
            if type(raw) is dict or isinstance(raw, dict):
                count += 1
                if not count & 1023:
                    pace()  # a 10,000-rule compile gives a waiting caller the GIL
                # can_trip's own answer, asked only of the few that may be: one look each.
                if (
                    raw.get("breached")
                    or raw.get("blocked")
                    or raw.get("groupBreakdown") is not None
                ) and can_trip(raw):
                    tripped.append(self._compile(position, raw))
        self.count = count
        # Kept encoded from here on (``kept``, when the installer has packed it
        # already); the decoded array is the installer's to free.
        self.payload = kept if kept is not None else payload.packed()
        tripped = [r for r in tripped if r.can_trip and not r.is_department]
        self.active = tuple(r for r in tripped if not r.shadow)
        self.shadow = tuple(r for r in tripped if r.shadow)
        self._unrouted = routes_of(iter(self.active))
        # Every key a breached entry holds: a caller holding none passes every grouped rule.
        self._breached_keys = frozenset().union(*(r.breached_keys for r in tripped))
        # Whether an address can be among them: when not, a caller's address is never read.
        self._breached_emails = any("@" in key for key in self._breached_keys)
        # Whether a (model, provider) pair can narrow the tripped rules down.
        self.routed = any(r.filters is not None and r.filters.route for r in self.active)
        self.blocks = payload.blocks
        self.balances = payload.balances
        self.warnings = payload.warnings
        self.candidates = payload.candidates
        self.has_departments = bool(payload.blocks or payload.warnings or payload.candidates)
        # Nobody is over any limit: a check can pass without looking at the call.
        self.quiet = not (self.active or self.shadow or self.has_departments)
        # Only per-person verdicts can refuse: a caller that no department map
        # names and that holds no breached key passes on that alone.
        self._personal_only = not self.shadow and all(r.group is not None for r in self.active)
        self._index_gate = None if self._personal_only else self._filed_values()
        # may_cover's answer when it does not depend on the pair (None: it does).
        self._covers: Optional[Screen] = (
            JUDGE
            if self.has_departments or self.shadow
            else (JUDGE if self.active else PASSES)
            if not self.routed
            else None
        )
        if self.has_departments:  # department verdicts look rules up by id
            self._by_id = self._index_ids(payload.rules)  # read while decoded

    @property
    def by_id(self) -> dict[str, int]:
        """Each rule id's position, built when first asked (most rule sets never are)."""
        by_id = self._by_id
        if by_id is None:
            by_id = self._by_id = self._index_ids(self.payload.rules)
        return by_id

    @staticmethod
    def _index_ids(rules: Sequence[Any]) -> dict[str, int]:
        # Positions, not rules: a str -> int map holds no container the
        # garbage collector has to traverse on every full collection.
        by_id: dict[str, int] = {}
        for position, raw in enumerate(rules):
            if not isinstance(raw, dict):
                continue
            key = raw.get("ruleId")
            if key is None:
                key = raw.get("id")
            if isinstance(key, (int, str)) and not isinstance(key, bool):
                by_id.setdefault(str(key), position)
        return by_id

    def _compile(self, position: int, raw: dict[str, Any]) -> CompiledRule:
        rule = self._compiled.get(position)
        if rule is None:
            rule = self._compiled.setdefault(position, CompiledRule(position, raw))
        return rule

    def _compile_at(self, position: int) -> CompiledRule:
        rule = self._compiled.get(position)
        return rule if rule is not None else self._compile(position, self.payload.rules[position])

    def rule_by_id(self, rule_id: Any) -> Optional[CompiledRule]:
        """The first rule whose ``ruleId`` (else ``id``) reads as ``rule_id``."""
        position = self.by_id.get(str(rule_id))
        return None if position is None else self._compile_at(position)

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
        cover = self._covers
        return (cover if cover is not None else self._route_cover(model, provider)) is JUDGE

    def _route_cover(self, model: Any, provider: Any) -> Screen:
        """A routed rule set's answer for the pair: its cached route's, JUDGE until there is one."""
        route = self._routes.get((model, provider)) if cacheable_route(model, provider) else None
        return JUDGE if route is None or route.every.size else PASSES

    def leaves_alone(self, model: Any, provider: Any, accruing: bool) -> bool:
        """True when no call to this pair is judged or (``accruing``) held, whatever it says.

        No tripped rule's model and provider rows hold for the pair, no
        department or shadow verdict is served, and (``accruing``) no rule can
        accrue it. Worked out once per pair of plain strings, so a hook's call
        to a model nobody is over and nobody counts costs one dict lookup.
        """
        if type(model) is not str or type(provider) is not str:
            return False
        flags = self._free_pairs.get((model, provider))
        if flags is None:
            flags = self._free_flags(model, provider)
        need = _UNJUDGED | _UNACCRUED if accruing else _UNJUDGED
        return flags & need == need

    def _free_flags(self, model: str, provider: str) -> int:
        flags = 0
        if self._covers is not JUDGE:  # JUDGE for departments, shadow rules or unrouted rules
            route = self._route_for(CallFacts(None, model, provider)) if self.routed else None
            if route is None or not route.every.size:
                flags |= _UNJUDGED
        accruals = self._accruals
        if accruals is None:
            return flags  # accrual unknown until its index is built: not remembered
        if accruals.reaches_nothing(model, provider):
            flags |= _UNACCRUED
        if len(self._free_pairs) >= ROUTE_CACHE_SIZE:
            self._free_pairs.clear()
        self._free_pairs[model, provider] = flags
        return flags

    def may_concern(self, usage_metadata: Any, model: Any, provider: Any) -> bool:
        """:meth:`may_cover`, and False as well for a caller no per-person verdict names.

        While only grouped rules and department maps are tripped (someone is
        always over), nearly every caller is answered here, from the raw
        metadata, before any :class:`CallFacts` is built.
        """
        return self.screen(usage_metadata, model, provider) is not PASSES

    def screen(self, usage_metadata: Any, model: Any, provider: Any) -> Screened:
        """The verdict where it is known without a :class:`CallFacts`, else :data:`JUDGE`.

        :data:`PASSES` for a caller nothing can concern, a remembered
        :class:`Verdict` for a caller only a department warn tier names (it
        never depends on the clock or the rest of the call), and :data:`JUDGE`
        when :meth:`judge` must look. Written flat: it runs on every call
        while anyone is over a limit.
        """
        if self._personal_only:
            metadata = (
                usage_metadata if type(usage_metadata) is dict else as_metadata(usage_metadata)
            )
            keys = self._breached_keys
            if keys and holds_any_key(metadata, keys, self._breached_emails):
                return JUDGE
            if not self.has_departments:
                return PASSES
            nested = metadata.get("subscriber")
            raw = nested.get("email") if type(nested) is dict else None
            if type(raw) is not str or not raw:  # not the usual nested address
                raw = raw_caller_email(metadata)
                if raw is None:
                    return PASSES
                if type(raw) is not str:  # a str subclass's hash and equality are its own
                    return self._department_answer(stored_email(raw))
            known = self._by_email.get(raw)
            return known if known is not None else self._remember_department_answer(raw)
        cover = self._covers  # may_cover: the pair's route, before any metadata is read
        if cover is None:
            cover = self._route_cover(model, provider)
        gate = self._index_gate
        if gate is None or cover is PASSES:
            return cover
        metadata = usage_metadata if type(usage_metadata) is dict else as_metadata(usage_metadata)
        for names, values in gate:  # names_a_filed_value, inline
            for name in names:  # first_set: the first key that is set is the value
                value = metadata.get(name)
                if value is not None:
                    if type(value) is not str or value in values:
                        return JUDGE
                    break
        return PASSES

    def _remember_department_answer(self, raw: str) -> Screened:
        """:meth:`screen`'s answer for an address no breached key names, worked out once."""
        answer = self._department_answer(stored_email(raw))
        remembered = self._by_email
        if len(remembered) >= _REMEMBERED_CALLERS:
            remembered.clear()
        remembered[raw] = answer
        return answer

    def _department_answer(self, email: Optional[str]) -> Screened:
        """Only a warn tier's notice is answered in advance; a block or a candidate is judged."""
        if email is None:
            return PASSES
        try:
            if self.candidates.get(email) or rule_id_value(self.blocks.get(email)) is not None:
                return JUDGE
            warned_id = rule_id_value(self.warnings.get(email))
            if warned_id is None:
                return PASSES
            notice = self._warn_tier(email, warned_id, self.balances.get(email))
        except Exception:
            return JUDGE  # judged as ever: a malformed map is no verdict there, never a crash
        return Verdict(None, (notice,))

    def _route_for(self, facts: CallFacts) -> Route:
        """The tripped rules whose model and provider rows hold, cached per pair."""
        model, provider = facts.model, facts.provider
        route = self._routes.get((model, provider)) if cacheable_route(model, provider) else None
        if route is None:
            route = routes_of(r for r in self.active if r.covers_route(facts))
            if cacheable_route(model, provider):
                if len(self._routes) >= ROUTE_CACHE_SIZE:
                    self._routes.clear()
                self._routes[(model, provider)] = route
        return route

    # -- the verdict -------------------------------------------------------

    def evaluate(self, facts: CallFacts, now: float) -> Optional[Verdict]:
        """The verdict on a call: ``None`` when it passes and nothing was noticed.

        The error is returned rather than raised, so the engine raises it
        once, from the caller's own frame: raising through every layer costs
        more than the rest of the check. What the verdict noticed on the way
        (warn-only rules, shadow would-blocks, warn tiers) comes back as
        values; the ruleset never calls out to the engine.
        """
        screened = self.screen(facts.metadata, facts.model, facts.provider)
        if screened is PASSES:
            return None  # nearly every caller, while someone else is over
        return self.judge(facts, now) if screened is JUDGE else screened

    def judge(self, facts: CallFacts, now: float) -> Optional[Verdict]:
        """:meth:`evaluate` for a call :meth:`may_concern` let through: no gate asked twice."""
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
        route = self._route_for(facts) if self.routed else self._unrouted
        index = route.pooled
        if route.grouped and facts.holds_any_key(self._breached_keys, self._breached_emails):
            index = route.every
        for rule in index.candidates(facts) if index.size else ():
            end = rule.window_end
            if end is not None and end <= now:
                continue
            if rule.reads_metadata and not rule.covers_metadata(facts):
                continue
            if rule.group is None:
                current_value = rule.current_value  # a pooled rule here is tripped
            else:
                tripped, current_value = rule.trips(facts)
                if not tripped:
                    continue
            if rule.blocks_action:
                return rule.error(current_value)
            notices.append(Notice("warn_only", rule, rule.identifier, current_value))
        return None

    def _filed_values(self) -> Optional[FiledValues]:
        """The metadata keys and values every tripped rule is filed by, when that is all.

        Only pooled rules, each filed by a plain metadata dimension: a call
        sending none of the filed values is covered by none of them.
        """
        if self.has_departments or self.shadow or self._unrouted.grouped:
            return None
        buckets = self._unrouted.every.buckets()
        if buckets is None or not all(name in PLAIN_DIMENSION_KEYS for name, _ in buckets):
            return None
        return tuple((PLAIN_DIMENSION_KEYS[name], values) for name, values in buckets)

    def _may_be_breached(self, facts: CallFacts) -> bool:
        """Whether the caller holds a key some breached entry holds: one set miss per key."""
        return facts.holds_any_key(self._breached_keys, self._breached_emails)

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
            rule_id = rule_id_value(self.blocks.get(email))
            if rule_id is not None:
                error = self._department_verdict(rule_id, self.balances.get(email), now, notices)
                if error is not None:
                    return error
            warned_id = rule_id_value(self.warnings.get(email))
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
                f"{BLOCK_PREFIX}{DEPARTMENT_FALLBACK_NAME}",
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

    def prepare_accounts(self) -> Accruals:
        """Build the accrual index now (off a caller's thread) rather than on first use.

        Built after the install, once the decoded rules are freed: it reads
        a packed array a rule at a time (each decoded copy dies at once), so
        what it keeps is allocated where the decoded rules were, and the
        process's memory shrinks back instead of staying at the take-in's peak.
        """
        accruals = self._accruals
        if accruals is None:
            compile_at = _CompileAt(self._compiled, self.payload.rules)
            accruals = self._accruals = Accruals(self.payload, compile_at)
        return accruals

    def accounts(self, facts: CallFacts, now: float) -> tuple[Account, ...]:
        """Every rule this call counts toward, tripped or not (:meth:`Accruals.accounts`)."""
        accruals = self._accruals
        if accruals is None:
            accruals = self.prepare_accounts()
        return accruals.accounts(facts, now)

    def may_accrue(self, usage_metadata: Any, model: Any, provider: Any) -> bool:
        """False when no rule can accrue this call (:meth:`Accruals.may_accrue`).

        Asked before any :class:`CallFacts` is built: a call no rule covers,
        the usual one, then costs local spend a dict lookup and a key or two.
        True until the index is built (by the refresher after an install, else
        by the first :meth:`accounts`), so asking never builds it: a switched
        off engine never pays for it.
        """
        accruals = self._accruals
        return True if accruals is None else accruals.may_accrue(usage_metadata, model, provider)

    # -- explanation (not the hot path) ------------------------------------

    def explain(self, facts: CallFacts, now: float) -> list[RuleVerdict]:
        """Every rule's view of the call, in payload order."""
        return [rule.explain(facts, now) for rule in self.rules]


class _CompileAt:
    """:meth:`RuleSet._compile_at` for the accrual index, with no reference back to the rule set.

    A bound method would make a cycle (rule set, index, method, rule set):
    then only a full collection, not reference counting, would free a
    replaced 10,000-rule set and its payload.
    """

    __slots__ = ("_compiled", "_rules")

    def __init__(self, compiled: dict[int, CompiledRule], rules: Sequence[Any]) -> None:
        self._compiled, self._rules = compiled, rules

    def __call__(self, position: int) -> CompiledRule:
        compiled = self._compiled
        rule = compiled.get(position)
        if rule is None:
            rule = compiled.setdefault(position, CompiledRule(position, self._rules[position]))
        return rule
