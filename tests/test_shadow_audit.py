"""Shadow-mode auditing end to end: rules from a real server, a real decision log, the CLI.

A shadow rule would block two callers; its would-blocks land in the file
named by ``REVENIUM_CB_DECISION_LOG`` (no email in it) and
``enforcement audit`` counts them per rule, caller and model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from enforcement import BudgetExceededError, Engine
from enforcement.testing import RulesServer, make_rule

EMAILS = ("ana@acme.example", "bo@acme.example")


def test_shadow_would_blocks_are_logged_without_emails_and_audited(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    with RulesServer() as server:
        server.set_rules(
            [
                make_rule(1, "shadow cap", breached=True, shadow_mode=True),
                make_rule(2, "hard cap", breached=False),
            ]
        )
        environ = {
            **server.env(),
            "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
            "REVENIUM_CACHE_DIR": "off",
            "REVENIUM_CB_DECISION_LOG": str(log),
        }
        with Engine(environ=environ) as engine:
            assert engine.refresh()
            for email in EMAILS * 3:
                engine.check({"subscriber": {"email": email}}, model="gpt-4o", provider="openai")
            server.set_rules([make_rule(2, "hard cap", breached=True)])  # flipped to enforce
            assert engine.refresh()
            try:
                engine.check({"subscriber": {"email": EMAILS[0]}}, model="gpt-4o")
            except BudgetExceededError:
                pass
            else:
                raise AssertionError("the enforced rule did not block")
            assert engine.flush_listeners()
    text = log.read_text()
    assert all(email not in text for email in EMAILS) and "@" not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["kind"] for r in records] == ["shadow"] * 6 + ["block"]
    assert {r["rule_id"] for r in records} == {1, 2}
    assert len({json.dumps(r["callers"], sort_keys=True) for r in records[:6]}) == 2
    audited = subprocess.run(
        [sys.executable, "-m", "enforcement", "audit", str(log), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "@" not in audited.stdout
    summary = json.loads(audited.stdout)
    assert summary["kinds"] == {"shadow": 6, "block": 1}
    rules = {row["rule_id"]: (row["shadow"], row["block"]) for row in summary["rules"]}
    assert rules == {"1": (6, 0), "2": (0, 1)}
    shadowed = [row for row in summary["callers"] if row["shadow"]]
    assert sorted(row["shadow"] for row in shadowed) == [3, 3]  # per caller, by digest
    assert summary["models"] == [
        {"model": "gpt-4o", "block": 1, "shadow": 6, "warn_only": 0, "warn_tier": 0}
    ]
    plain = subprocess.run(
        [sys.executable, "-m", "enforcement", "audit", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "shadow cap" in plain.stdout and "gpt-4o" in plain.stdout
