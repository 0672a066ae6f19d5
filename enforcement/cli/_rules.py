"""``rules`` and ``explain``: the rules as the server compiled them, and one call's verdict.

Rows are built from :meth:`Engine.rules` (the wire format, untouched), so
what is shown is what the server served; the verdict comes from
:meth:`Engine.explain`, the same code that judges real calls.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

from . import EXIT_BLOCKED, EXIT_OK
from ._local import local_by_rule
from ._output import print_json, print_pairs, print_table
from ._session import caller_metadata, open_session

if TYPE_CHECKING:
    from .. import Explanation

__all__ = [
    "explanation_report",
    "rule_row",
    "rules_table",
    "run_explain",
    "run_rules",
    "scope",
]

RULE_COLUMNS = (
    "id",
    "name",
    "metric",
    "period",
    "threshold",
    "current",
    "percent",
    "breached",
    "action",
    "shadow",
    "scope",
)
VERDICT_COLUMNS = ("id", "name", "covers", "blocks", "current", "threshold", "reason")

_DIMENSIONS = {"ORGANIZATION": "org", "TASK_TYPE": "task_type"}
_GROUPS = {"SUBSCRIBER": "per subscriber", "DEPARTMENT": "per department"}


def _filter_text(row: Mapping[str, Any]) -> str:
    dimension = str(row.get("dimension", "?")).upper()
    name = _DIMENSIONS.get(dimension, dimension.lower())
    operator = str(row.get("operator", "?")).upper()
    value = row.get("values") if operator == "IN" else row.get("value")
    if isinstance(value, list):
        value = ",".join(str(item) for item in value)
    return f"{name} {operator} {value}"


def scope(rule: Mapping[str, Any]) -> str:
    """Who a rule covers, e.g. ``model IS gpt-4o; org IN acme,beta; per subscriber``."""
    parts = [
        _filter_text(row)
        for row in (rule.get("filters") if isinstance(rule.get("filters"), list) else None) or ()
        if isinstance(row, Mapping)
    ]
    if rule.get("credential"):
        parts.append(f"credential = {rule['credential']}")
    group_by = rule.get("groupBy")
    if isinstance(group_by, str) and group_by.strip():
        parts.append(_GROUPS.get(group_by.upper(), f"per {group_by.lower().replace('_', ' ')}"))
    if rule.get("departmentId") is not None or rule.get("orgUnitId") is not None:
        parts.append("department budget")
    return "; ".join(parts) or "every call"


def _breached(rule: Mapping[str, Any]) -> Any:
    """The rule's flag; for a grouped rule, how many of its callers are over."""
    breakdown = rule.get("groupBreakdown")
    if isinstance(breakdown, list) and breakdown:
        over = sum(1 for entry in breakdown if isinstance(entry, Mapping) and entry.get("breached"))
        return f"{over} of {len(breakdown)}" if over else False
    return bool(rule.get("breached") or rule.get("blocked"))


def rule_row(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": rule.get("ruleId", rule.get("id")),
        "name": rule.get("name"),
        "metric": rule.get("metricType"),
        "period": rule.get("periodType"),
        "threshold": rule.get("threshold"),
        "current": rule.get("currentValue"),
        "percent": rule.get("percentUsed"),
        "breached": _breached(rule),
        "action": rule.get("action"),
        "shadow": bool(rule.get("shadowMode", False)),
        "scope": scope(rule),
    }


def rules_table(
    rules: Sequence[Mapping[str, Any]], local_spend: Optional[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The rows and columns of ``rules``; a ``local`` column when local spend is known.

    ``local`` is what this host added under the rule since the server's
    figures (CONTRACT §9), beside the server's ``current``.
    """
    rows = [rule_row(rule) for rule in rules]
    local = local_by_rule(local_spend)
    if not local:
        return rows, RULE_COLUMNS
    for row in rows:
        row["local"] = local.get(str(row["id"]))
    at = RULE_COLUMNS.index("current") + 1
    return rows, (*RULE_COLUMNS[:at], "local", *RULE_COLUMNS[at:])


def run_rules(args: argparse.Namespace) -> int:
    with open_session(offline=args.offline, timeout=args.timeout) as session:
        session.load()
        rules = session.engine.rules()
        status = session.engine.status()
    if args.json:
        print_json(rules, sys.stdout)
        return EXIT_OK
    if not status.loaded:
        sys.stdout.write("no rules loaded (see `enforcement status`)\n")
        return EXIT_OK
    title = f"{len(rules)} rule(s), generation {status.generation}, from {status.source}"
    rows, columns = rules_table(rules, status.local_spend)
    print_table(rows, columns, sys.stdout, title=title)
    return EXIT_OK


def verdict_text(explanation: Explanation) -> str:
    error = explanation.error
    if error is not None:
        rule = f"rule {error.rule_id} {error.rule_name!r}" if error.rule_id is not None else ""
        return f"BLOCKED {rule}".rstrip()
    if explanation.bypass:
        return "pass (REVENIUM_BYPASS is on)"
    if not explanation.enabled:
        return "pass (enforcement is off)"
    if not explanation.loaded:
        return "pass (no rules loaded; fail mode open)"
    return "pass"


def explanation_report(explanation: Explanation) -> dict[str, Any]:
    error = explanation.error
    return {
        "blocked": explanation.blocked,
        "verdict": verdict_text(explanation),
        "message": error.message if error is not None else None,
        "rule_id": error.rule_id if error is not None else None,
        "rule_name": error.rule_name if error is not None else None,
        "enabled": explanation.enabled,
        "bypass": explanation.bypass,
        "loaded": explanation.loaded,
        "rules": [
            {
                "id": verdict.rule_id,
                "name": verdict.name,
                "covers": verdict.covers,
                "blocks": verdict.blocks,
                "current": verdict.current_value,
                "threshold": verdict.threshold,
                "reason": verdict.reason,
            }
            for verdict in explanation.rules
        ],
    }


def print_explanation(report: Mapping[str, Any], show_all: bool) -> None:
    out = sys.stdout
    print_pairs([("verdict", report["verdict"]), ("message", report["message"])], out)
    rows = [row for row in report["rules"] if show_all or row["covers"]]
    others = len(report["rules"]) - len(rows)
    if rows:
        title = "rules" if show_all else "rules covering this call"
        print_table(rows, VERDICT_COLUMNS, out, title=title)
    else:
        out.write("no rule covers this call\n")
    if others:
        out.write(f"{others} other rule(s) do not cover it (--all lists them)\n")


def run_explain(args: argparse.Namespace) -> int:
    metadata = caller_metadata(args)
    with open_session(offline=args.offline, timeout=args.timeout) as session:
        session.load()
        explanation = session.engine.explain(metadata, model=args.model, provider=args.provider)
    report = explanation_report(explanation)
    if args.json:
        print_json(report, sys.stdout)
    else:
        print_explanation(report, args.all)
    return EXIT_BLOCKED if explanation.blocked else EXIT_OK
