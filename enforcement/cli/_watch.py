"""``watch``: refresh on an interval and print only what changed.

A round is one refresh on this thread, then a comparison with the previous
round's view (not the engine's), so a change is reported once however it
arrived. ``--count`` bounds the rounds, for scripts and tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from . import EXIT_OK
from ._rules import explanation_report
from ._session import Session, caller_metadata, has_caller, open_session

__all__ = ["View", "changes", "run_watch"]


@dataclass(frozen=True)
class View:
    """What one round saw: rule names and breach flags, the rule set's generation, errors."""

    breached: Mapping[Any, bool] = field(default_factory=dict)
    names: Mapping[Any, Any] = field(default_factory=dict)
    generation: int = 0
    error: Optional[str] = None
    verdict: Optional[str] = None


def _tripped(rule: Mapping[str, Any]) -> bool:
    breakdown = rule.get("groupBreakdown")
    if isinstance(breakdown, list) and breakdown:
        return any(isinstance(entry, Mapping) and entry.get("breached") for entry in breakdown)
    return bool(rule.get("breached") or rule.get("blocked"))


def _look(session: Session, args: argparse.Namespace) -> View:
    engine = session.engine
    if engine.status().configured:
        engine.refresh()
    elif not engine.status().loaded:
        session.load_snapshot()
    rules = engine.rules()
    status = engine.status()
    verdict = None
    if has_caller(args):
        explanation = engine.explain(
            caller_metadata(args), model=args.model, provider=args.provider
        )
        report = explanation_report(explanation)
        verdict = report["verdict"] + (f": {report['message']}" if report["message"] else "")
    ids = [rule.get("ruleId", rule.get("id")) for rule in rules]
    return View(
        breached={rule_id: _tripped(rule) for rule_id, rule in zip(ids, rules)},
        names={rule_id: rule.get("name") for rule_id, rule in zip(ids, rules)},
        generation=status.generation,
        error=status.last_error,
        verdict=verdict,
    )


def _rule(view: View, rule_id: Any) -> str:
    return f"rule {rule_id} {view.names.get(rule_id)!r}"


def changes(before: Optional[View], after: View) -> list[str]:
    """What differs, one line each; the first round describes the whole view."""
    if before is None:
        lines = [f"{len(after.breached)} rule(s), generation {after.generation}"]
        lines += [f"{_rule(after, i)} is breached" for i, over in after.breached.items() if over]
        if after.error:
            lines.append(f"fetch failed: {after.error}")
        if after.verdict is not None:
            lines.append(f"verdict: {after.verdict}")
        return lines
    lines = []
    for rule_id, over in after.breached.items():
        if rule_id not in before.breached:
            lines.append(f"{_rule(after, rule_id)} added" + (", breached" if over else ""))
        elif before.breached[rule_id] != over:
            lines.append(
                f"{_rule(after, rule_id)} " + ("breached" if over else "no longer breached")
            )
    lines += [f"{_rule(before, i)} removed" for i in before.breached if i not in after.breached]
    if len(before.breached) != len(after.breached):
        lines.append(f"rule count {len(before.breached)} -> {len(after.breached)}")
    if before.generation != after.generation:
        lines.append(f"generation {before.generation} -> {after.generation}")
    if before.error != after.error:
        lines.append(f"fetch failed: {after.error}" if after.error else "fetch ok again")
    if before.verdict != after.verdict and after.verdict is not None:
        lines.append(f"verdict: {after.verdict}")
    return lines


def _print_round(number: int, lines: list[str], view: View, as_json: bool) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    if as_json:
        record = {
            "round": number,
            "at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "rule_count": len(view.breached),
            "generation": view.generation,
            "breached": [rule_id for rule_id, over in view.breached.items() if over],
            "last_error": view.error,
            "verdict": view.verdict,
            "changes": lines,
        }
        sys.stdout.write(json.dumps(record, default=str) + "\n")
    else:
        stamp = now.strftime("%H:%M:%S")
        for line in lines:
            sys.stdout.write(f"{stamp}  {line}\n")
    sys.stdout.flush()


def run_watch(args: argparse.Namespace) -> int:
    caller_metadata(args)  # a bad --metadata is a usage error before the first round
    previous: Optional[View] = None
    with open_session(offline=False, timeout=args.timeout) as session:
        number = 0
        while args.count is None or number < args.count:
            if number:
                time.sleep(max(0.0, args.interval))
            number += 1
            view = _look(session, args)
            _print_round(number, changes(previous, view), view, args.json)
            previous = view
    return EXIT_OK
