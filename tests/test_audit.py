"""``audit``: a real decision log, with rotated backups and damaged lines, summarized."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from enforcement._audit import log_files, run_audit, summarize
from enforcement._decision_log import DecisionLog, decision_record
from enforcement._events import Decision, caller_digests

ALICE = caller_digests([("subscriber_email", "alice@acme.com")], salt="team-1")
BOB = caller_digests([("subscriber_email", "bob@acme.com")], salt="team-1")


def decision(kind: str, rule_id: int, at: float, **fields: Any) -> Decision:
    values: dict[str, Any] = {
        "kind": kind,
        "rule_id": rule_id,
        "rule_name": f"cap-{rule_id}",
        "current_value": 2.0,
        "threshold": 1.0,
        "message": None,
        "model": "gpt-4o",
        "provider": "openai",
        "at": at,
        "callers": ALICE,
    }
    values.update(fields)
    return Decision(**values)


def write_log(path: Path) -> None:
    """Ten decisions over three files (two rotations), then a torn and a garbled line."""
    line_bytes = len(json.dumps(decision_record(decision("shadow", 1, 1.0)))) + 1
    log = DecisionLog(path, max_bytes=line_bytes * 4, backups=5)
    for second in range(6):
        log(decision("shadow", 1, 1_800_000_000 + second))
    log(decision("block", 2, 1_800_000_010, callers=BOB, model="claude-sonnet-4"))
    log(decision("block", 2, 1_800_000_011, callers=BOB, model="claude-sonnet-4"))
    log(decision("warn_only", 3, 1_800_000_012))
    log(decision("warn_tier", 4, 1_799_999_999))
    log.close()
    with open(path, "ab") as file:
        file.write(b"\xff\xfe not json\n")
        file.write(b'["a list"]\n')
        file.write(b'{"kind": "shadow", "rule_id": 1, "at": "2027-0')  # torn: a killed writer


def test_log_files_are_read_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    write_log(path)
    (tmp_path / "decisions.jsonl.lock").touch()
    (tmp_path / "decisions.jsonl.old").touch()
    assert log_files(path) == [tmp_path / "decisions.jsonl.2", tmp_path / "decisions.jsonl.1", path]


def test_summary_counts_per_rule_caller_and_model(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    write_log(path)
    summary = summarize(log_files(path))
    assert summary.lines == 10
    assert summary.garbled == 3
    assert dict(summary.kinds) == {"shadow": 6, "block": 2, "warn_only": 1, "warn_tier": 1}
    assert summary.rules["1", "shadow"] == 6
    assert summary.rules["2", "block"] == 2
    assert summary.callers[f"subscriber_email:{BOB[0][1]}", "block"] == 2
    assert summary.callers[f"subscriber_email:{ALICE[0][1]}", "shadow"] == 6
    assert summary.models["claude-sonnet-4", "block"] == 2
    assert summary.first_at == "2027-01-15T07:59:59.000Z"
    assert summary.last_at == "2027-01-15T08:00:12.000Z"


def test_run_audit_as_json(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    write_log(path)
    out = io.StringIO()
    assert run_audit(str(path), as_json=True, out=out) == 0
    report = json.loads(out.getvalue())
    assert report["lines"] == 10 and report["garbled"] == 3
    assert report["rules"][0] == {
        "rule_id": "1",
        "rule_name": "cap-1",
        "block": 0,
        "shadow": 6,
        "warn_only": 0,
        "warn_tier": 0,
    }
    assert [model["model"] for model in report["models"]] == ["gpt-4o", "claude-sonnet-4"]
    assert "acme" not in out.getvalue()


def test_run_audit_as_text(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    write_log(path)
    out = io.StringIO()
    assert run_audit(str(path), as_json=False, out=out) == 0
    text = out.getvalue()
    assert "10 decisions in 3 file(s), 2027-01-15T07:59:59.000Z to 2027-01-15T08:00:12.000Z" in text
    assert "2 block, 6 shadow, 1 warn_only, 1 warn_tier; 3 garbled line(s) skipped" in text
    rule_rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if "cap-" in line}
    assert rule_rows["1"] == ["cap-1", "0", "6", "0", "0"]
    assert rule_rows["2"] == ["cap-2", "2", "0", "0", "0"]
    assert f"subscriber_email:{BOB[0][1]}" in text
    assert "acme" not in text


def test_run_audit_without_a_log(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_audit(str(tmp_path / "missing.jsonl"), as_json=False, out=out) == 1
    assert "No decision log" in out.getvalue()


def test_an_empty_log(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    path.touch()
    out = io.StringIO()
    assert run_audit(str(path), as_json=False, out=out) == 0
    assert "0 decisions in 1 file(s), nothing" in out.getvalue()
