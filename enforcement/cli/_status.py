"""``status``: the engine's state as the application would see it, and whether it is healthy.

Health is two questions an orchestrator can act on: would a call be refused
because no rules were ever loaded (fail-closed), and are the rules older than
the operator accepts (``--max-age``)?
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

from . import EXIT_OK, EXIT_UNHEALTHY
from ._local import SPEND_COLUMNS, local_spend_pairs, local_spend_report, spend_rows
from ._output import format_age, format_time, print_json, print_pairs, print_table
from ._session import open_session

if TYPE_CHECKING:
    from .. import EngineStatus
    from ._session import Session

__all__ = ["describe", "run_status"]


def _file_age(path: Optional[str], now: float) -> Optional[float]:
    if not path:
        return None
    try:
        return max(0.0, now - os.stat(path).st_mtime)
    except OSError:
        return None


def rules_age(status: EngineStatus, snapshot_age: Optional[float], now: float) -> Optional[float]:
    """How old the rules held are: since the last good fetch, else the snapshot file's age.

    A snapshot read from disk is as old as its file, not as the moment this
    process read it; anything else (a payload installed by hand) is as old as
    its installation (``installed_at``).
    """
    if not status.loaded:
        return None
    if status.last_success_at is not None:
        return max(0.0, now - status.last_success_at)
    if status.source == "disk":
        return snapshot_age
    if status.installed_at is not None:
        return max(0.0, now - status.installed_at)
    return None


def _last_fetch(session: Session, status: EngineStatus) -> str:
    if status.last_attempt_at is None:
        return "not attempted (offline)" if session.offline else "not attempted (no key or team)"
    return "ok" if status.last_error is None else "failed"


def describe(session: Session, max_age: Optional[float] = None) -> dict[str, Any]:
    """Everything ``status`` reports, the verdict on health included, never the key."""
    status = session.engine.status()
    now = time.time()
    snapshot_age = _file_age(status.snapshot_path, now)
    age = rules_age(status, snapshot_age, now)
    problems = []
    if status.enabled and not status.bypass and not status.loaded:
        problems.append(
            "enforcement would fail closed: no rule set is loaded"
            if status.fail_closed
            else "no rule set is loaded: calls pass unjudged (fail-open)"
        )
    if max_age is not None and (age is None or age > max_age):
        problems.append(
            f"rules are older than --max-age {max_age:g} s ({format_age(age)})"
            if age is not None
            else f"no rules with a known age (--max-age {max_age:g} s)"
        )
    return {
        "healthy": not problems,
        "problems": problems,
        "enabled": status.enabled,
        "bypass": status.bypass,
        "fail_mode": "closed" if status.fail_closed else "open",
        "team_id": status.team_id,
        "base_url": status.base_url,
        "configured": status.configured
        or (session.offline and session.key_set and bool(status.team_id)),
        "loaded": status.loaded,
        "source": status.source,
        "stale": status.stale,
        "rule_count": status.rule_count,
        "tripped_count": status.tripped_count,
        "generation": status.generation,
        "rules_age_seconds": age,
        # When this generation was installed: how long the rules have been the same.
        "installed_at": format_time(status.installed_at),
        "installed_age_seconds": _since(status.installed_at, now),
        "last_fetch": _last_fetch(session, status),
        "last_fetch_at": format_time(status.last_attempt_at),
        "last_success_at": format_time(status.last_success_at),
        "last_error": status.last_error,
        "consecutive_failures": status.consecutive_failures,
        "etag": status.etag,
        "snapshot_path": status.snapshot_path,
        "snapshot_age_seconds": snapshot_age,
        # This process's poller: the CLI fetches on its own thread, so it is usually off.
        "poller": "running" if status.poller_alive else "stopped",
        "counters": dict(status.counters),
        "local_spend": local_spend_report(status.local_spend),
    }


def _since(moment: Optional[float], now: float) -> Optional[float]:
    return None if moment is None else max(0.0, now - moment)


def _print_human(report: dict[str, Any]) -> None:
    out = sys.stdout
    verdict = "healthy" if report["healthy"] else "UNHEALTHY: " + "; ".join(report["problems"])
    pairs: list[tuple[str, Any]] = [("status", verdict)]
    for name, value in report.items():
        if name in ("healthy", "problems", "counters", "local_spend"):
            continue
        if name.endswith("_seconds"):
            name, value = name[: -len("_seconds")], format_age(value)
        pairs.append((name, value))
    counters = report["counters"]
    pairs.append(("counters", ", ".join(f"{name} {counters[name]}" for name in sorted(counters))))
    pairs.extend(local_spend_pairs(report["local_spend"]))
    print_pairs(pairs, out)
    rows = spend_rows(report["local_spend"])
    if rows:
        print_table(rows, SPEND_COLUMNS, out, title="local spend by rule")


def run_status(args: argparse.Namespace) -> int:
    with open_session(offline=args.offline, timeout=args.timeout) as session:
        session.load()
        report = describe(session, args.max_age)
    if args.json:
        print_json(report, sys.stdout)
    else:
        _print_human(report)
    return EXIT_OK if report["healthy"] else EXIT_UNHEALTHY
