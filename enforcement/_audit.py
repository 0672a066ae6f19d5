"""``enforcement audit FILE``: what a decision log says was blocked, and would have been.

The point of shadow mode is this read-out: turn a rule on in shadow, let it
run a day, then see what it would have refused (per rule, per caller, per
model) before flipping it to enforce. The log is read with its rotated
backups, oldest first; a line that is torn or garbled (a process killed
mid-write, a hand edit) is counted and skipped, never fatal.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, TextIO

from ._decision_log import PathLike

__all__ = ["AuditSummary", "log_files", "run_audit", "summarize"]

KINDS = ("block", "shadow", "warn_only", "warn_tier")
TOP_CALLERS = 20


@dataclass
class AuditSummary:
    """Counts of decisions, each keyed ``(what, kind)``: ``what`` is a rule, caller or model."""

    files: list[str] = field(default_factory=list)
    lines: int = 0
    garbled: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)
    rule_names: dict[str, str] = field(default_factory=dict)
    callers: Counter[tuple[str, str]] = field(default_factory=Counter)
    models: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_at: Optional[str] = None
    last_at: Optional[str] = None

    def add(self, record: dict[str, Any]) -> None:
        kind = str(record["kind"])
        self.lines += 1
        self.kinds[kind] += 1
        rule = str(record.get("rule_id"))
        self.rules[rule, kind] += 1
        if record.get("rule_name") is not None:
            self.rule_names[rule] = str(record["rule_name"])
        for caller_kind, digest in (record.get("callers") or {}).items():
            self.callers[f"{caller_kind}:{digest}", kind] += 1
        self.models[str(record.get("model")), kind] += 1
        self._cover(record.get("at"))

    def _cover(self, at: Any) -> None:
        if not isinstance(at, str):
            return
        # ISO-8601 in UTC with a fixed layout: the text orders like the time.
        if self.first_at is None or at < self.first_at:
            self.first_at = at
        if self.last_at is None or at > self.last_at:
            self.last_at = at

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "lines": self.lines,
            "garbled": self.garbled,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "kinds": dict(self.kinds),
            "rules": [
                {"rule_id": rule, "rule_name": self.rule_names.get(rule), **counts}
                for rule, counts in _by_key(self.rules)
            ],
            "callers": [{"caller": caller, **counts} for caller, counts in _by_key(self.callers)],
            "models": [{"model": model, **counts} for model, counts in _by_key(self.models)],
        }


def log_files(path: PathLike) -> list[Path]:
    """``path`` and its rotated backups (``path.1``, ``path.2``...), oldest first."""
    base = Path(path)
    backups = []
    for candidate in base.parent.glob(f"{base.name}.*"):
        suffix = candidate.name[len(base.name) + 1 :]
        if suffix.isdigit():
            backups.append((int(suffix), candidate))
    ordered = [candidate for _, candidate in sorted(backups, reverse=True)]
    return [*ordered, base] if base.exists() else ordered


def summarize(paths: Iterable[PathLike]) -> AuditSummary:
    """Every decision in ``paths``, counted; unreadable lines counted in ``garbled``."""
    summary = AuditSummary()
    for path in paths:
        summary.files.append(os.fspath(path))
        with open(path, "rb") as lines:
            for line in lines:
                record = _parse(line)
                if record is None:
                    summary.garbled += 1
                else:
                    summary.add(record)
    return summary


def _parse(line: bytes) -> Optional[dict[str, Any]]:
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError:  # UnicodeDecodeError is one
        return None
    if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
        return None
    if not isinstance(record.get("callers", {}), dict):
        return None
    return record


def run_audit(path: str, *, as_json: bool, out: TextIO) -> int:
    """Print the summary of the decision log at ``path``; 0, or 1 when there is no log there."""
    files = log_files(path)
    if not files:
        out.write(f"No decision log at {path} (nor rotated backups of one).\n")
        return 1
    try:
        summary = summarize(files)
    except OSError as error:
        out.write(f"Cannot read the decision log {path}: {error}\n")
        return 1
    if as_json:
        json.dump(summary.as_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(render_text(summary))
    return 0


# -- text ----------------------------------------------------------------------


def render_text(summary: AuditSummary) -> str:
    """Plain tables: what a terminal, a CI log and a ticket all show the same way."""
    covered = f"{summary.first_at} to {summary.last_at}" if summary.first_at else "nothing"
    kinds = ", ".join(f"{summary.kinds[kind]} {kind}" for kind in KINDS)
    per_rule = [
        ([rule, summary.rule_names.get(rule, "")], counts)
        for rule, counts in _by_key(summary.rules)
    ]
    per_caller = [([caller], counts) for caller, counts in _by_key(summary.callers)]
    per_model = [([model], counts) for model, counts in _by_key(summary.models)]
    parts = [
        f"{summary.lines} decisions in {len(summary.files)} file(s), {covered}",
        f"{kinds}; {summary.garbled} garbled line(s) skipped",
        "",
        _table("Per rule", ["rule_id", "rule_name"], per_rule),
        _table(f"Per caller (hashed; top {TOP_CALLERS})", ["caller"], per_caller[:TOP_CALLERS]),
        _table("Per model", ["model"], per_model),
    ]
    return "\n".join(parts)


def _by_key(counts: Counter[tuple[str, str]]) -> list[tuple[str, dict[str, int]]]:
    """Per key, its count of each kind; most blocks and would-blocks first."""
    grouped: dict[str, dict[str, int]] = {}
    for (key, kind), count in counts.items():
        grouped.setdefault(key, dict.fromkeys(KINDS, 0))[kind] = count
    return sorted(
        grouped.items(), key=lambda item: (-item[1]["block"] - item[1]["shadow"], item[0])
    )


def _table(
    title: str, key_headers: list[str], entries: list[tuple[list[str], dict[str, int]]]
) -> str:
    headers = [*key_headers, *KINDS]
    rows = [[*key, *(str(counts.get(kind, 0)) for kind in KINDS)] for key, counts in entries]
    if not rows:
        return f"{title}: none\n"
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"
