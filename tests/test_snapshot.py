"""The disk snapshot, with real files and real processes, and its interchange with the oracle."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
from _support import FAST, FUTURE, wait_until

from enforcement import BudgetExceededError, Engine
from enforcement._mirror import Mirror, snapshot_scope
from enforcement.testing import RulesServer, make_rule

DEPARTMENT_PAYLOAD_MAPS = {
    "departmentBudgetBlocks": {"ann@example.com": 7},
    "departmentBudgetBlockBalances": {"ann@example.com": "42.5"},
}

# A process that checks one call and reports the verdict on stdout.
OURS = textwrap.dedent(
    """
    import json, os, sys
    from enforcement import BudgetExceededError, check_enforcement
    try:
        check_enforcement(json.loads(sys.argv[1]), model="gpt-4o", provider="openai")
        print(json.dumps({"verdict": "pass"}))
    except BudgetExceededError as err:
        print(json.dumps({"verdict": "block", "type": type(err).__name__, "message": str(err),
                          "current_value": err.current_value}))
    """
)
ORACLE = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    from revenium_middleware._core.enforcement import check_enforcement, stop_polling
    from revenium_middleware._core.exceptions import BudgetExceededError
    try:
        check_enforcement(json.loads(sys.argv[1]), model="gpt-4o", provider="openai")
        print(json.dumps({"verdict": "pass"}))
    except BudgetExceededError as err:
        print(json.dumps({"verdict": "block", "type": type(err).__name__, "message": str(err),
                          "current_value": err.current_value}))
    stop_polling()
    """
)


def run_process(script: str, env: dict[str, str], metadata: dict[str, Any]) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REVENIUM_")}
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(metadata)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    verdict: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return verdict


def offline_env(server: RulesServer, cache_dir: Path, **extra: str) -> dict[str, str]:
    """The server's address (for the snapshot's scope) but no key: nothing is fetched."""
    return {
        **server.env(REVENIUM_CACHE_DIR=str(cache_dir), REVENIUM_METERING_API_KEY=None),
        **extra,
    }


def fetch_snapshot(
    server: RulesServer,
    cache_dir: Path,
    make_engine: Callable[..., Engine],
    rules: list[dict[str, Any]],
    **maps: Any,
) -> Engine:
    server.set_rules(rules, **maps)
    engine = make_engine(environ=server.env(REVENIUM_CACHE_DIR=str(cache_dir)), retry_policy=FAST)
    assert engine.refresh()
    return engine


def test_snapshot_files_have_the_reference_names_shapes_and_mode(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> None:
    rules = [make_rule(7, "dept", departmentId=3, window_end=FUTURE), make_rule(8, "plain")]
    fetch_snapshot(server, cache_dir, make_engine, rules, **DEPARTMENT_PAYLOAD_MAPS)
    scope = snapshot_scope(server.base_url, server.team_id)
    rules_file = cache_dir / f"revenium_enforcement_rules.{scope}.json"
    maps_file = cache_dir / f"revenium_enforcement_org_unit_blocks.{scope}.json"
    assert json.loads(rules_file.read_text()) == rules
    maps = json.loads(maps_file.read_text())
    assert maps["blocks"] == {"ann@example.com": 7}
    assert maps["balances"] == {"ann@example.com": 42.5}
    canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"))
    import hashlib

    assert maps["rules_fingerprint"] == hashlib.sha256(canonical.encode()).hexdigest()
    for path in (rules_file, maps_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".revenium_enforcement_tmp.")]


def test_restarted_process_blocks_on_its_first_call(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> None:
    fetch_snapshot(
        server, cache_dir, make_engine, [make_rule(1, "cap", breached=True, window_end=FUTURE)]
    )
    verdict = run_process(OURS, offline_env(server, cache_dir), {})
    assert verdict == {
        "verdict": "block",
        "type": "BudgetExceededError",
        "message": "Request blocked by Revenium enforcement rule: cap",
        "current_value": 0.0,
    }


def test_fail_closed_lets_a_clean_snapshot_through_on_the_first_call(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> None:
    fetch_snapshot(server, cache_dir, make_engine, [make_rule(1, "cap", window_end=FUTURE)])
    env = offline_env(server, cache_dir, REVENIUM_CB_FAIL_MODE="closed")
    assert run_process(OURS, env, {}) == {"verdict": "pass"}
    empty = offline_env(server, cache_dir.parent / "empty", REVENIUM_CB_FAIL_MODE="closed")
    assert run_process(OURS, empty, {})["type"] == "EnforcementUnavailableError"


def test_the_oracle_reads_our_snapshot(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> None:
    rules = [
        make_rule(7, "dept", departmentId=3, window_end=FUTURE, breached=True),
        make_rule(8, "quiet", window_end=FUTURE),
    ]
    fetch_snapshot(server, cache_dir, make_engine, rules, **DEPARTMENT_PAYLOAD_MAPS)
    env = offline_env(server, cache_dir)
    ann = {"subscriber": {"email": "Ann@Example.com"}}
    oracle = run_process(ORACLE, env, ann)
    assert oracle == run_process(OURS, env, ann)
    assert oracle["verdict"] == "block" and oracle["current_value"] == 42.5
    assert run_process(ORACLE, env, {"subscriber": {"email": "bob@example.com"}}) == {
        "verdict": "pass"
    }


def many_rules(count: int, **fields: Any) -> list[dict[str, Any]]:
    """Enough rules that the feed's body is decoded in pieces (over 256 KiB)."""
    return [make_rule(i, f"rule {i}", window_end=FUTURE, **fields) for i in range(10, 10 + count)]


def test_a_large_bodys_rules_are_written_as_they_came_and_the_oracle_reads_them(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> None:
    rules = [
        make_rule(7, "dept", departmentId=3, window_end=FUTURE, breached=True),
        *many_rules(1500),
        make_rule(9, "last", window_end=FUTURE, breached=True),
    ]
    fetch_snapshot(server, cache_dir, make_engine, rules, **DEPARTMENT_PAYLOAD_MAPS)
    scope = snapshot_scope(server.base_url, server.team_id)
    written = (cache_dir / f"revenium_enforcement_rules.{scope}.json").read_text()
    assert written == json.dumps(rules, separators=(",", ":"))  # the served text, not re-encoded
    maps = json.loads(
        (cache_dir / f"revenium_enforcement_org_unit_blocks.{scope}.json").read_text()
    )
    canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"))
    import hashlib

    assert maps["rules_fingerprint"] == hashlib.sha256(canonical.encode()).hexdigest()
    env = offline_env(server, cache_dir)
    ann = {"subscriber": {"email": "ann@example.com"}}
    oracle = run_process(ORACLE, env, ann)
    assert oracle == run_process(OURS, env, ann)
    assert oracle["verdict"] == "block" and oracle["current_value"] == 42.5
    assert run_process(ORACLE, env, {})["message"].endswith(": last")


def test_a_large_body_with_text_beyond_ascii_is_written_as_json_dumps_would(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> None:
    # The oracle opens the file in the locale's encoding: every byte stays ASCII.
    rules = [*many_rules(1500), make_rule(9, "café", window_end=FUTURE, breached=True)]
    fetch_snapshot(server, cache_dir, make_engine, rules)
    scope = snapshot_scope(server.base_url, server.team_id)
    written = (cache_dir / f"revenium_enforcement_rules.{scope}.json").read_bytes()
    assert written.isascii() and json.loads(written) == rules
    verdict = run_process(ORACLE, offline_env(server, cache_dir), {})
    assert verdict["message"] == "Request blocked by Revenium enforcement rule: café"


def test_we_read_the_oracles_snapshot(server: RulesServer, cache_dir: Path) -> None:
    rules = [
        make_rule(7, "dept", departmentId=3, window_end=FUTURE, breached=True),
        make_rule(
            9,
            "cap",
            window_end=FUTURE,
            breached=True,
            filters=[{"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}],
        ),
    ]
    server.set_rules(rules, **DEPARTMENT_PAYLOAD_MAPS)
    # The oracle fetches over HTTP (with a key) and writes its snapshot.
    run_process(
        ORACLE + "\nimport time; time.sleep(0)\n", server.env(REVENIUM_CACHE_DIR=str(cache_dir)), {}
    )
    mirror = Mirror(str(cache_dir), server.base_url, server.team_id)
    assert wait_until(lambda: os.path.exists(mirror.maps_path))
    assert not os.path.exists(mirror.meta_path)  # written by the oracle, not by us
    env = offline_env(server, cache_dir)
    assert (
        run_process(OURS, env, {"subscriber": {"email": "ann@example.com"}})["current_value"]
        == 42.5
    )
    assert run_process(OURS, env, {"organizationName": "acme"})["verdict"] == "block"
    assert run_process(OURS, env, {"organizationName": "other"})["verdict"] == "pass"


def test_a_torn_map_is_dropped_but_the_rules_load(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> None:
    rules = [make_rule(7, "dept", departmentId=3, window_end=FUTURE, breached=True)]
    fetch_snapshot(server, cache_dir, make_engine, rules, **DEPARTMENT_PAYLOAD_MAPS)
    mirror = Mirror(str(cache_dir), server.base_url, server.team_id)
    Path(mirror.rules_path).write_text(json.dumps([*rules, make_rule(8, "new")]))
    engine = make_engine(environ=offline_env(server, cache_dir))
    engine.check({"subscriber": {"email": "ann@example.com"}})
    assert engine.status().rule_count == 2


def test_processes_of_a_host_share_one_fetch_per_interval(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> None:
    server.set_rules([make_rule(1, "cap", breached=True, window_end=FUTURE)])
    env = server.env(REVENIUM_CACHE_DIR=str(cache_dir))
    first = make_engine(environ=env, retry_policy=FAST)
    first.check({})  # nothing loaded yet: passes, and starts the poller
    assert wait_until(lambda: first.status().loaded)
    with pytest.raises(BudgetExceededError):
        first.check({})
    assert server.request_count == 1
    script = OURS + "\nimport time; time.sleep(0.5)\n"
    verdicts = [run_process(script, env, {}) for _ in range(3)]
    assert all(v["verdict"] == "block" for v in verdicts)
    assert server.request_count == 1
