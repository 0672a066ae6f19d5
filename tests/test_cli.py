"""The ``enforcement`` command, run as a user runs it: a subprocess against a real rules server."""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple, Optional

import httpx
import pytest

from enforcement import Engine
from enforcement.cli._local import local_spend_report
from enforcement.cli._output import as_json_value, print_table
from enforcement.cli._rules import rules_table
from enforcement.cli._status import rules_age
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


def _strict_json(text: str) -> Any:
    """JSON as a strict parser reads it: ``NaN`` or ``Infinity`` is an error, not a number."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_help_imports_neither_the_engine_nor_httpx() -> None:
    probe = (
        "import sys\n"
        "from enforcement.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('httpx', 'pydantic', 'enforcement._engine', 'rich')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert "usage: enforcement" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"


def test_status_json_reports_local_spend_and_counters(cli_env: dict[str, str]) -> None:
    done = run(["status", "--json"], cli_env)
    assert done.returncode == 0, done.stderr
    report = _strict_json(done.stdout)
    counters = report["counters"]
    assert counters["blocked_local"] == 0 and counters["listener_dropped"] == 0
    spend = report["local_spend"]
    # The cache directory is set, so the host's processes share one ledger file there.
    assert [ledger["scope"] for ledger in spend["ledgers"]] == ["host", "process"]
    assert spend["ledger"] == "host" and spend["ledgers"][0]["error"] is None
    assert {name: spend[name] for name in ("holds", "holds_open", "holds_refused")} == {
        "holds": 0,
        "holds_open": 0,
        "holds_refused": 0,
    }
    assert spend["settled"] == 0 and spend["unpriced"] == 0 and spend["rules"] == []
    assert isinstance(spend["prices"], dict) and "unpriced" in spend["prices"]
    assert report["installed_at"].endswith("Z")


def test_status_says_local_spend_is_off(cli_env: dict[str, str]) -> None:
    environ = dict(cli_env, REVENIUM_CB_LOCAL_ACCRUAL="off")
    assert _strict_json(run(["status", "--json"], environ).stdout)["local_spend"] is None
    done = run(["status"], environ)
    assert done.returncode == 0, done.stderr
    assert "local spend:" in done.stdout and "off" in done.stdout


def test_status_text_shows_rule_set_age_counters_and_ledger(cli_env: dict[str, str]) -> None:
    done = run(["status"], cli_env)
    assert done.returncode == 0, done.stderr
    lines = {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in done.stdout.splitlines()
    }
    assert lines["installed_age"].endswith(" s")
    assert "blocked_local 0" in lines["counters"]
    assert lines["local spend"].startswith("ledger host; holds 0, holds_open 0")
    assert lines["ledgers"].startswith("host at ") and lines["ledgers"].endswith("; process ok")


def test_offline_status_keeps_the_trusted_etag(cli_env: dict[str, str]) -> None:
    if "offline" not in inspect.signature(Engine).parameters:
        pytest.skip("Engine(offline=True) not there yet: offline hides the key, and its seal")
    online = _strict_json(run(["status", "--json"], cli_env).stdout)
    offline = _strict_json(run(["status", "--offline", "--json"], cli_env).stdout)
    assert offline["source"] == "disk" and offline["last_fetch"] == "not attempted (offline)"
    assert offline["etag"] == online["etag"] is not None


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enforcement", "serve-rules", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_serve_rules_refuses_the_network_without_public(tmp_path: Path) -> None:
    payload = tmp_path / "rules.json"
    payload.write_text("[]")
    for host in ("0.0.0.0", "10.1.2.3", "rules.example.com"):
        done = _serve(str(payload), "--host", host)
        assert done.returncode == 1
        assert "--public" in done.stderr and done.stdout == ""


def test_serve_rules_on_a_port_in_use_exits_1(tmp_path: Path, server: RulesServer) -> None:
    payload = tmp_path / "rules.json"
    payload.write_text("[]")
    done = _serve(str(payload), "--port", str(server.port))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server.port}" in done.stderr


def test_serve_rules_on_a_chosen_port_and_public_host(tmp_path: Path) -> None:
    payload = tmp_path / "rules.json"
    payload.write_text(json.dumps([make_rule(1, "public")]))
    with RulesServer() as probe:
        port = probe.port  # a port the OS just handed out, free again once closed
    command = [sys.executable, "-m", "enforcement", "serve-rules", str(payload)]
    command += ["--host", "0.0.0.0", "--public", "--port", str(port)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            exports = _read_exports(process.stdout)
            assert exports["REVENIUM_ENFORCEMENT_BASE_URL"] == f"http://127.0.0.1:{port}"
            url = f"http://127.0.0.1:{port}/v2/api/ai/enforcement-rules/local-team"
            assert httpx.get(url, headers={"x-api-key": "any"}).json()[0]["name"] == "public"
            process.send_signal(signal.SIGINT)
            assert process.wait(TIMEOUT) == 0
            assert "no authentication" in process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()


def _spent_engine(server: RulesServer) -> Engine:
    """An engine on the server's rules that has admitted and settled one priced call."""
    from enforcement._prices import PriceTable
    from enforcement._usage import Estimate, Usage

    prices = PriceTable(overrides={"gpt-4o": {"input": 5.0, "output": 15.0}}, use_table=False)
    engine = Engine(environ=server.env(REVENIUM_CACHE_DIR="off"), prices=prices)
    assert engine.refresh()
    held = engine.begin(
        {"organizationName": "zeta"},
        model="gpt-4o",
        provider="openai",
        estimate=lambda: Estimate(1000, 1000),
    )
    assert held is not None
    held.settle(Usage(100_000, 0))  # $0.50 at $5 per million input tokens
    return engine


def test_rules_table_gains_a_local_column_with_local_spend(server: RulesServer) -> None:
    with _spent_engine(server) as engine:
        rows, columns = rules_table(engine.rules(), engine.status().local_spend)
    assert columns[columns.index("current") + 1] == "local"
    by_id = {row["id"]: row for row in rows}
    assert by_id[8]["local"] == pytest.approx(0.5)  # "monthly total" covers every call
    assert by_id[7]["local"] is None  # the gpt-4o cap covers acme and beta, not zeta
    out = io.StringIO()
    print_table(rows, columns, out)
    assert out.getvalue().splitlines()[0].split()[5:8] == ["current", "local", "percent"]


def test_rules_table_has_no_local_column_without_local_spend(server: RulesServer) -> None:
    with Engine(environ=server.env(REVENIUM_CACHE_DIR="off")) as engine:
        assert engine.refresh()
        _, columns = rules_table(engine.rules(), engine.status().local_spend)
        assert "local" not in columns
        assert rules_table(engine.rules(), None)[1] == columns


def test_status_lists_local_spend_by_rule(server: RulesServer) -> None:
    with _spent_engine(server) as engine:
        report = local_spend_report(engine.status().local_spend)
    assert report is not None and report["settled"] == 1
    assert [(row["rule_id"], row["local"]) for row in report["rules"]] == [(8, pytest.approx(0.5))]
    _strict_json(json.dumps(report))  # plain JSON already: dataclasses and tuples converted


def test_rules_age_of_a_payload_installed_by_hand_is_its_installation(
    server: RulesServer,
) -> None:
    with Engine(environ={}, wall_clock=lambda: 1_000.0) as engine:
        assert rules_age(engine.status(), None, 1_060.0) is None  # nothing held: no age
        engine.load_payload([make_rule(1, "by hand")])
        status = engine.status()
    assert status.source == "local" and status.installed_at == 1_000.0
    assert rules_age(status, snapshot_age=5.0, now=1_060.0) == 60.0


class _Limits(NamedTuple):
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class _Prices:
    table: str
    unpriced: tuple[str, ...]
    limits: _Limits


def test_as_json_value_makes_status_values_plain_json() -> None:
    value = {
        "prices": _Prices("maintained", ("m1", "m2"), _Limits(0.0, math.inf)),
        "ids": frozenset({3}),
        "nan": math.nan,
        7: None,
    }
    assert as_json_value(value) == {
        "prices": {
            "table": "maintained",
            "unpriced": ["m1", "m2"],
            "limits": {"low": 0.0, "high": "inf"},
        },
        "ids": [3],
        "nan": "nan",
        "7": None,
    }
