"""The ``enforcement`` command, run as a user runs it: a subprocess against a real rules server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Optional

import httpx
import pytest

from enforcement.testing import Fault, RulesServer, make_filter, make_rule

API_KEY = "hak_cli_secret_0123456789"
# Generous: a loaded machine starts Python slowly; nothing here waits on purpose.
TIMEOUT = 60


@pytest.fixture
def server() -> Iterator[RulesServer]:
    with RulesServer(team_id="team-cli", api_key=API_KEY) as running:
        running.set_rules(
            [
                make_rule(
                    7,
                    "gpt-4o daily cap",
                    breached=True,
                    threshold=500.0,
                    current_value=512.5,
                    deny_message="Ask finance.",
                    filters=[
                        make_filter("MODEL", "IS", "gpt-4o"),
                        make_filter("ORGANIZATION", "IN", ["acme", "beta"]),
                    ],
                ),
                make_rule(8, "monthly total", period_type="MONTHLY", threshold=9000.0),
            ]
        )
        yield running


@pytest.fixture
def cli_env(server: RulesServer, tmp_path: Path) -> dict[str, str]:
    environ = {
        name: value for name, value in os.environ.items() if not name.startswith("REVENIUM_")
    }
    environ.update(server.env(REVENIUM_CACHE_DIR=str(tmp_path / "cache")))
    return environ


def run(
    args: Sequence[str], environ: dict[str, str], command: Optional[Sequence[str]] = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(command or [sys.executable, "-m", "enforcement"]), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_status_never_prints_the_key(cli_env: dict[str, str]) -> None:
    for args in (["status"], ["doctor"]):
        done = run(args, cli_env)
        assert done.returncode == 0, done.stderr
        for text in (done.stdout, done.stderr):
            assert API_KEY not in text
            assert API_KEY[:8] not in text


def test_status_json_reports_the_engine(cli_env: dict[str, str], server: RulesServer) -> None:
    done = run(["status", "--json"], cli_env)
    assert done.returncode == 0, done.stderr
    assert API_KEY[:8] not in done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] is True
    assert report["enabled"] is True and report["bypass"] is False
    assert report["fail_mode"] == "open"
    assert report["team_id"] == "team-cli"
    assert report["base_url"] == server.base_url
    assert report["rule_count"] == 2 and report["tripped_count"] == 1
    assert report["generation"] == 1
    assert report["last_fetch"] == "ok" and report["last_error"] is None
    assert report["source"] == "network"
    assert report["etag"]
    assert Path(report["snapshot_path"]).is_file()
    assert report["rules_age_seconds"] is not None


def test_max_age_and_fail_closed_exit_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    done = run(["status", "--json"], cli_env)  # writes the snapshot
    snapshot = Path(json.loads(done.stdout)["snapshot_path"])
    hour_ago = snapshot.stat().st_mtime - 3600
    os.utime(snapshot, (hour_ago, hour_ago))
    assert run(["status", "--offline", "--max-age", "7200"], cli_env).returncode == 0
    stale = run(["status", "--offline", "--max-age", "60", "--json"], cli_env)
    assert stale.returncode == 2
    assert "older than --max-age" in json.loads(stale.stdout)["problems"][0]

    closed = dict(cli_env, REVENIUM_CB_FAIL_MODE="closed", REVENIUM_CACHE_DIR="off")
    report = run(["status", "--offline", "--json"], closed)
    assert report.returncode == 2
    assert "fail closed" in json.loads(report.stdout)["problems"][0]


def test_rules_json_is_what_the_server_serves(cli_env: dict[str, str], server: RulesServer) -> None:
    served = httpx.get(server.url, headers={"x-api-key": API_KEY}).json()["rules"]
    done = run(["rules", "--json"], cli_env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == served


def test_rules_table_through_the_console_script(cli_env: dict[str, str]) -> None:
    script = shutil.which("enforcement", path=os.path.dirname(sys.executable))
    assert script is not None, "the console script is not installed in this venv"
    done = run(["rules"], cli_env, command=[script])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split()[:3] == ["id", "name", "metric"]
    assert "model IS gpt-4o; org IN acme,beta" in done.stdout
    assert "every call" in done.stdout


def test_explain_names_the_blocking_rule_and_exits_3(cli_env: dict[str, str]) -> None:
    caller = ["--model", "gpt-4o", "--provider", "openai", "--org", "acme"]
    done = run(["explain", *caller], cli_env)
    assert done.returncode == 3, done.stderr
    assert "BLOCKED rule 7 'gpt-4o daily cap'" in done.stdout
    assert "Ask finance." in done.stdout

    elsewhere = run(["explain", "--json", *caller[:-1], "zeta"], cli_env)
    assert elsewhere.returncode == 0
    report = json.loads(elsewhere.stdout)
    assert report["blocked"] is False and report["verdict"] == "pass"
    assert {row["id"]: row["covers"] for row in report["rules"]} == {7: False, 8: True}


def test_usage_errors_exit_1(cli_env: dict[str, str]) -> None:
    bad = run(["explain", "--model", "m", "--provider", "p", "--metadata", "[1]"], cli_env)
    assert bad.returncode == 1
    assert "JSON object" in bad.stderr


def test_doctor_flags_a_missing_team_id(cli_env: dict[str, str]) -> None:
    environ = {name: value for name, value in cli_env.items() if name != "REVENIUM_TEAM_ID"}
    done = run(["doctor"], environ)
    assert done.returncode != 0
    assert "FAIL  team id" in done.stdout
    assert "set REVENIUM_TEAM_ID" in done.stdout

    report = json.loads(run(["doctor", "--json"], cli_env).stdout)
    assert report["ok"] is True
    assert {check["name"]: check["result"] for check in report["checks"]}["base url"] == "OK"


def test_serve_rules_serves_and_reloads_a_file(tmp_path: Path) -> None:
    payload = tmp_path / "rules.json"
    payload.write_text(json.dumps([make_rule(1, "hand-written", breached=True)]))
    command = [sys.executable, "-m", "enforcement", "serve-rules", str(payload), "--poll", "0.05"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            exports = _read_exports(process.stdout)
            base = exports["REVENIUM_ENFORCEMENT_BASE_URL"]
            url = f"{base}/v2/api/ai/enforcement-rules/local-team"
            headers = {"x-api-key": exports["REVENIUM_METERING_API_KEY"]}
            served = httpx.get(url, headers=headers).json()
            assert [rule["name"] for rule in served] == ["hand-written"]

            edited = {"rules": [make_rule(2, "edited"), make_rule(3, "new")]}
            payload.write_text(json.dumps(edited))
            assert process.stdout.readline().startswith("reloaded")
            served = httpx.get(url, headers=headers).json()
            assert [rule["ruleId"] for rule in served["rules"]] == [2, 3]
            process.send_signal(signal.SIGINT)
            assert process.wait(TIMEOUT) == 0
        finally:
            if process.poll() is None:
                process.kill()


def _read_exports(stdout: IO[str]) -> dict[str, str]:
    """The ``export NAME=value`` lines serve-rules prints before it serves."""
    exports = {}
    for line in iter(stdout.readline, ""):
        if line.startswith("export "):
            name, _, value = line[len("export ") :].strip().partition("=")
            exports[name] = value
        elif line.startswith("# any API key"):
            break
    return exports


def test_watch_sees_a_rule_flip(cli_env: dict[str, str], server: RulesServer) -> None:
    before = [make_rule(1, "daily-cap"), make_rule(2, "steady")]
    after = [make_rule(1, "daily-cap", breached=True, current_value=120.0), make_rule(2, "steady")]
    server.set_rules(after)
    # The first read gets the old rules, every later one the new: no race with the rounds.
    server.add_fault(Fault.body(json.dumps({"rules": before}).encode()))
    done = run(["watch", "--count", "2", "--interval", "0", "--json"], cli_env)
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["breached"] == [] and first["rule_count"] == 2
    assert second["breached"] == [1]
    assert "rule 1 'daily-cap' breached" in second["changes"]
    assert "generation 1 -> 2" in second["changes"]
