"""Local spend (CONTRACT §9) as the CLI shows it: the ledger, its counts, spend per rule.

The engine describes local spend as a mapping of plain values, dataclasses
and lists; this module reads it defensively, because a ledger added later
may describe itself with fields this CLI has never seen, and a status
command that crashes on them answers nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ._output import as_json_value, cell

__all__ = [
    "COUNTS",
    "SPEND_COLUMNS",
    "local_by_rule",
    "local_spend_pairs",
    "local_spend_report",
    "spend_rows",
]

COUNTS = ("holds", "holds_open", "holds_refused", "settled", "unpriced")
SPEND_COLUMNS = ("rule_id", "rule_name", "metric", "server", "local", "threshold", "entry_digest")


def local_spend_report(local_spend: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """The engine's description, JSON-ready; ``None`` when local accrual is off."""
    if local_spend is None:
        return None
    report: dict[str, Any] = as_json_value(local_spend)
    return report


def _ledger_text(info: Any) -> str:
    if not isinstance(info, Mapping):
        return str(info)
    text = str(info.get("scope", "?"))
    if info.get("where"):
        text += f" at {info['where']}"
    problem = info.get("error") or info.get("last_error")
    return f"{text} FAILING: {problem}" if problem else f"{text} ok"


def _prices_text(prices: Any) -> str:
    if not isinstance(prices, Mapping):
        return cell(prices)
    parts = [f"table {cell(prices.get('table'))}"]
    if prices.get("table_error"):
        parts.append(f"table error: {prices['table_error']}")
    parts.append(f"{cell(prices.get('overrides', 0))} override(s)")
    if prices.get("overrides_error"):
        parts.append(f"overrides error: {prices['overrides_error']}")
    unpriced = prices.get("unpriced")
    if unpriced:
        parts.append("unpriced: " + ", ".join(str(model) for model in unpriced))
    return "; ".join(parts)


def local_spend_pairs(report: Optional[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """``status`` lines for local spend: in use, counts, every ledger, prices."""
    if report is None:
        return [("local spend", "off (REVENIUM_CB_LOCAL_ACCRUAL)")]
    counts = ", ".join(f"{name} {cell(report.get(name, 0))}" for name in COUNTS)
    ledgers = report.get("ledgers")
    return [
        ("local spend", f"ledger {cell(report.get('ledger'))}; {counts}"),
        (
            "ledgers",
            "; ".join(_ledger_text(info) for info in ledgers)
            if isinstance(ledgers, Sequence) and ledgers
            else None,
        ),
        ("prices", _prices_text(report.get("prices"))),
    ]


def spend_rows(report: Optional[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The per-rule rows of local spend (rule, caller digest, server figure, local, limit)."""
    rows = report.get("rules") if report is not None else None
    if not isinstance(rows, Sequence):
        return []
    return [row for row in rows if isinstance(row, Mapping)]


def local_by_rule(report: Optional[Mapping[str, Any]]) -> dict[str, float]:
    """Local spend per rule id (as text, the wire's ids being ints or strings), entries summed.

    A grouped rule has one row per caller; its total is what this host
    added under the rule since the server's figures.
    """
    totals: dict[str, float] = {}
    for row in spend_rows(report):
        local = row.get("local")
        if isinstance(local, (int, float)) and not isinstance(local, bool):
            key = str(row.get("rule_id"))
            totals[key] = math.fsum((totals.get(key, 0.0), float(local)))
    return totals
