"""The decision log: real files, real rotation, two real processes appending to one log."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import enforcement
from enforcement._decision_log import EMAIL_MASK, DecisionLog, backup_paths, decision_record
from enforcement._dispatch import Dispatcher
from enforcement._events import Decision, caller_digests

EMAIL = "dev@acme.com"
REPO_ROOT = str(Path(enforcement.__file__).resolve().parent.parent)
AT = 1_795_000_000.25  # 2026-11-18T11:06:40.250Z


def shadow(rule_id: Any = 7, **fields: Any) -> Decision:
    values: dict[str, Any] = {
        "kind": "shadow",
        "rule_id": rule_id,
        "rule_name": "gpt-4o daily cap",
        "current_value": 512.4,
        "threshold": 500.0,
        "message": None,
        "model": "gpt-4o",
        "provider": "openai",
        "at": AT,
        "callers": caller_digests([("subscriber_email", EMAIL)], salt="team-1"),
    }
    values.update(fields)
    return Decision(**values)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_json_line_per_decision(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "decisions.jsonl"
    log = DecisionLog(path)
    log(shadow())
    log(shadow(rule_id=8, kind="block", message="Request blocked by Revenium rule: cap"))
    (first, second) = read_lines(path)
    assert first == {
        "at": "2026-11-18T11:06:40.250Z",
        "kind": "shadow",
        "rule_id": 7,
        "rule_name": "gpt-4o daily cap",
        "model": "gpt-4o",
        "provider": "openai",
        "current_value": 512.4,
        "threshold": 500.0,
        "source": "server",
        "callers": {
            "subscriber_email": caller_digests([("subscriber_email", EMAIL)], "team-1")[0][1]
        },
        "message": None,
    }
    assert second["kind"] == "block" and second["rule_id"] == 8
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert log.written == 2 and log.errors == 0
    log.close()


def test_no_email_reaches_the_file(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path, salt="team-1")
    log(shadow(callers=(("subscriber_email", EMAIL), ("subscriber_id", "u-42"))))
    log(shadow(rule_name=f"cap for {EMAIL}", message=f"Blocked. Ask {EMAIL.upper()}."))
    text = path.read_text()
    assert "acme.com" not in text.lower()
    assert "u-42" not in text
    first, second = read_lines(path)
    assert first["callers"] == dict(
        caller_digests([("subscriber_email", EMAIL), ("subscriber_id", "u-42")], "team-1")
    )
    assert second["rule_name"] == f"cap for {EMAIL_MASK}"
    log.close()


def test_a_real_block_message_names_no_email(tmp_path: Path) -> None:
    from enforcement import BudgetExceededError, Engine
    from enforcement.testing import RulesServer, make_rule

    with RulesServer() as server:
        server.set_rules(
            [make_rule(1, "daily-cap", breached=True, window_end="2099-01-01T00:00:00Z")]
        )
        engine = Engine(environ=server.env(REVENIUM_CACHE_DIR="off"))
        try:
            assert engine.refresh()
            with pytest.raises(BudgetExceededError) as raised:
                engine.check({"subscriber": {"email": EMAIL}}, model="gpt-4o", provider="openai")
        finally:
            engine.close()
    assert "acme" not in raised.value.message


def test_rotation_by_size_keeps_backups(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    line_bytes = len(json.dumps(decision_record(shadow()), separators=(",", ":"))) + 1
    log = DecisionLog(path, max_bytes=line_bytes * 10, backups=2)
    for rule_id in range(35):
        log(shadow(rule_id=rule_id))
    backup1, backup2 = backup_paths(path, 2)
    assert not Path(f"{path}.3").exists()
    assert [line["rule_id"] for line in read_lines(backup2)] == list(range(10, 20))
    assert [line["rule_id"] for line in read_lines(backup1)] == list(range(20, 30))
    assert [line["rule_id"] for line in read_lines(path)] == list(range(30, 35))
    for file in (path, backup1, backup2):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    log.close()


def test_never_raises_into_the_caller(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    log = DecisionLog(directory)
    log(shadow())
    log(shadow(current_value=float("nan"), rule_id=object()))
    assert log.errors == 2 and log.written == 0


def test_non_finite_figures_are_written_as_null(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path)
    log(shadow(current_value=float("inf"), threshold=float("nan")))
    (line,) = read_lines(path)
    assert line["current_value"] is None and line["threshold"] is None
    log.close()


def test_through_a_dispatcher(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path)
    dispatcher = Dispatcher()
    dispatcher.add(log)
    for rule_id in range(100):
        dispatcher.submit(shadow(rule_id=rule_id))
    assert dispatcher.close(30.0)
    assert [line["rule_id"] for line in read_lines(path)] == list(range(100))
    log.close()


WRITER = textwrap.dedent(
    """
    import sys
    from enforcement._decision_log import DecisionLog
    from enforcement._events import Decision

    path, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = DecisionLog(path, max_bytes=16_384, backups=1_000)
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    sys.stdin.readline()  # start together
    for seq in range(count):
        log(Decision("shadow", f"{writer}-{seq}", "cap " + "x" * 200, 1.0, 2.0, None))
    sys.exit(1 if log.errors else 0)
    """
)


def test_two_processes_share_one_log_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    count = 1500
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": REPO_ROOT},
        )
        for name in ("a", "b")
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.close()
        for writer in writers:
            assert writer.wait(timeout=120) == 0
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
            for stream in (writer.stdin, writer.stdout):
                if stream is not None:
                    stream.close()
    files = [path, *(candidate for candidate in backup_paths(path, 1_000) if candidate.exists())]
    assert len(files) > 10  # it did rotate, many times, while both wrote
    ids: list[str] = []
    for file in files:
        raw = file.read_bytes()
        # The live file is empty when the very last line filled the one before it.
        assert raw.endswith(b"\n") or (file == path and not raw)
        ids += [json.loads(line)["rule_id"] for line in raw.splitlines()]  # no torn line
    expected = {f"{name}-{seq}" for name in ("a", "b") for seq in range(count)}
    assert len(ids) == len(expected) and set(ids) == expected
