"""``REVENIUM_CB_RULES_FILE``: a payload on disk as the rule source, for CI and air gaps.

Real files; the poller re-reads the file when it changes, so the tests wait
for the verdict to flip rather than for a time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from _support import wait_until

from enforcement import BudgetExceededError, Engine
from enforcement.testing import make_rule


def write(path: Path, payload: Any) -> None:
    """Replace the file whole, with a new mtime, as an editor or a deploy would."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload) if not isinstance(payload, str) else payload)
    os.replace(temporary, path)


def blocked(engine: Engine) -> bool:
    try:
        engine.check(model="gpt-4o", provider="openai")
    except BudgetExceededError:
        return True
    return False


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.json"
    write(path, {"rules": [make_rule(1, "offline cap", breached=True)]})
    return path


def engine_for(rules_file: Path, **env: str) -> Engine:
    environ = {
        "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
        "REVENIUM_CB_RULES_FILE": str(rules_file),
        "REVENIUM_CB_POLL_INTERVAL_SECONDS": "1",
        "REVENIUM_CACHE_DIR": "off",
        **env,
    }
    return Engine(environ=environ)


def test_the_file_is_the_rule_source_with_no_key_and_no_server(rules_file: Path) -> None:
    with engine_for(rules_file) as engine:
        assert blocked(engine)  # loaded by the first call, before it is judged
        status = engine.status()
        assert status.source == "file" and status.snapshot_path == str(rules_file)
        assert status.configured and status.last_error is None and not status.stale


def test_a_changed_file_is_read_again(rules_file: Path) -> None:
    with engine_for(rules_file) as engine:
        assert blocked(engine)
        write(rules_file, [make_rule(1, "offline cap", breached=False)])  # a bare list works too
        assert wait_until(lambda: not blocked(engine))
        assert engine.status().generation == 2


def test_a_bad_file_keeps_the_last_good_rules_and_says_why(rules_file: Path) -> None:
    with engine_for(rules_file) as engine:
        assert blocked(engine)
        write(rules_file, "{not json")
        assert wait_until(lambda: engine.status().last_error is not None)
        assert blocked(engine)  # the last good verdict stands
        assert str(rules_file) in (engine.status().last_error or "")
        write(rules_file, {"error": "no rules here"})
        assert wait_until(lambda: "rules" in (engine.status().last_error or ""))
        assert blocked(engine)
        write(rules_file, {"rules": []})
        assert wait_until(lambda: not blocked(engine))
        assert engine.status().last_error is None


def test_a_missing_file_fails_closed_only_when_asked(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    with engine_for(missing) as engine:
        assert not blocked(engine)  # fail-open: nothing loaded, nothing blocked
        assert "cannot read" in (engine.status().last_error or "")
    with engine_for(missing, REVENIUM_CB_FAIL_MODE="closed") as engine:
        assert blocked(engine)


def test_refresh_reads_the_file_now(rules_file: Path) -> None:
    with engine_for(rules_file, REVENIUM_CB_POLL_INTERVAL_SECONDS="3600") as engine:
        assert blocked(engine)
        write(rules_file, {"rules": []})
        assert engine.refresh()
        assert not blocked(engine)
