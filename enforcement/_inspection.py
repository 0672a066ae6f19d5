"""Inspection, for tools and people: explanations, and the uncached reads.

:func:`explain` is a dry run of the verdict that also says every rule's
view of the call; it reports, logs and counts nothing. The reads (one rule,
the advisory budgets, a rule's roster) are one request to the control plane
each, through the refresher's feed (so a ``Retry-After`` cooldown and the
inspection budget of the schedule apply), and ``None`` when they cannot be
had. Never used for a verdict.
"""

from __future__ import annotations

from typing import Any, Optional

from ._callfacts import CallFacts
from ._errors import UNINITIALIZED_MESSAGE, BudgetExceededError, EnforcementUnavailableError
from ._refresher import Refresher
from ._ruleset import RuleSet, RuleVerdict
from ._spend import LocalSpend
from ._status import Explanation

__all__ = ["advisory_budgets", "explain", "one_rule", "roster"]


def explain(
    ruleset: Optional[RuleSet],
    facts: CallFacts,
    now: float,
    switches: tuple[bool, bool, bool],
    spend: Optional[LocalSpend],
) -> Explanation:
    """The verdict ``check`` would give (local spend included) and every rule's view of it."""
    enabled, bypass, fail_closed = switches
    error: Optional[BudgetExceededError] = None
    if enabled and not bypass:
        if ruleset is None:
            if fail_closed:
                error = EnforcementUnavailableError(UNINITIALIZED_MESSAGE)
        else:
            verdict = ruleset.evaluate(facts, now)
            if verdict is None and spend is not None:
                verdict = spend.over(ruleset, facts, now)
            error = verdict.error if verdict is not None else None
    rules: list[RuleVerdict] = ruleset.explain(facts, now) if ruleset is not None else []
    return Explanation(enabled, bypass, ruleset is not None, error, rules)


def one_rule(refresher: Refresher, rule_id: str) -> Optional[dict[str, Any]]:
    if not rule_id:
        raise ValueError("rule_id is required to read a single enforcement rule")
    rules = _rules(refresher, {"ruleId": rule_id})
    return rules[0] if rules and isinstance(rules[0], dict) else None


def advisory_budgets(refresher: Refresher) -> Optional[list[dict[str, Any]]]:
    rules = _rules(refresher, {"include": "advisory"})
    if rules is None:
        return None
    return [r for r in rules if isinstance(r, dict) and r.get("source") == "ANOMALY"]


def roster(
    refresher: Refresher,
    rule_id: str,
    page: int,
    size: int,
    search: Optional[str],
    band: Optional[str],
) -> Optional[dict[str, Any]]:
    if not rule_id:
        raise ValueError("rule_id is required to read an enforcement rule roster")
    params: dict[str, Any] = {"ruleId": rule_id, "page": page, "size": size}
    if search:
        params["search"] = search
    if band:
        params["band"] = band
    body = refresher.inspect("/roster", params)
    return body if isinstance(body, dict) else None


def _rules(refresher: Refresher, params: dict[str, Any]) -> Optional[list[Any]]:
    body = refresher.inspect("", params)
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        rules = body.get("rules", [])
        return rules if isinstance(rules, list) else None
    return None
