"""The inspection reads: one rule, the advisory budgets, a rule's roster, uncached.

For tools and people, never for a verdict: each is one read of the control
plane now, through the refresher's feed (so a ``Retry-After`` cooldown and
the inspection budget of the schedule apply), and ``None`` when it cannot
be had.
"""

from __future__ import annotations

from typing import Any, Optional

from ._refresher import Refresher

__all__ = ["advisory_budgets", "one_rule", "roster"]


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
