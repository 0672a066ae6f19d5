"""The public surface, and the module functions' default engine."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import enforcement
from enforcement import BudgetExceededError, EnforcementUnavailableError, Engine
from enforcement._mirror import Mirror
from enforcement._wire import parse_payload


def test_all_names_exactly_the_public_exports() -> None:
    public = {name for name in dir(enforcement) if not name.startswith("_")}
    modules = {"testing", "hooks", "auto", "otel", "cli"}  # submodules, once imported
    assert set(enforcement.__all__) == public - modules - {"annotations"}
    for name in enforcement.__all__:
        assert getattr(getattr(enforcement, name), "__module__", "enforcement") == "enforcement"


def test_import_is_lazy_and_each_name_public_on_first_use() -> None:
    """A fresh interpreter: ``import enforcement`` loads no engine, and ``dir()`` lists it all."""
    probe = """
import json, sys
import enforcement
report = {
    "heavy": sorted(n for n in ("httpx", "pydantic", "enforcement._engine") if n in sys.modules),
    "listed": sorted(set(enforcement.__all__) - set(dir(enforcement))),
    "error_module": enforcement.BudgetExceededError.__module__,
}
from enforcement._engine import Engine
from enforcement._status import Explanation
report["before"] = [Engine.__module__, Explanation.__module__]
from enforcement import Engine as PublicEngine, EngineStatus
report["same"] = PublicEngine is Engine
# A name is rewritten when loaded, with the other public names of its module.
report["after"] = [Engine.__module__, EngineStatus.__module__, Explanation.__module__]
report["hooks"] = enforcement.hooks.__name__
print(json.dumps(report))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "heavy": [],
        "listed": [],
        "error_module": "enforcement",
        "before": ["enforcement._engine", "enforcement._status"],
        "same": True,
        "after": ["enforcement", "enforcement", "enforcement"],
        "hooks": "enforcement.hooks",
    }


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Enigne'"):
        enforcement.Enigne  # noqa: B018
    assert not hasattr(enforcement, "_engine_typo")


def test_contract_names_are_exported() -> None:
    for name in (
        "check_enforcement",
        "acheck_enforcement",
        "explain",
        "BudgetExceededError",
        "EnforcementUnavailableError",
        "stop_polling",
        "fetch_enforcement_rule",
        "fetch_enforcement_rule_roster",
        "fetch_advisory_budgets",
        "normalize_email",
        "Engine",
    ):
        assert name in enforcement.__all__


def test_error_is_an_exception_with_the_reference_signature() -> None:
    err = BudgetExceededError("m", "r", 1.5, 2.0, "t", 7, "d")
    assert (
        str(err),
        err.rule_name,
        err.current_value,
        err.threshold,
        err.resets_at,
        err.rule_id,
        err.deny_message,
    ) == ("m", "r", 1.5, 2.0, "t", 7, "d")
    assert BudgetExceededError.__mro__[1] is Exception
    assert issubclass(EnforcementUnavailableError, BudgetExceededError)


@pytest.fixture
def default_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in ("REVENIUM_METERING_API_KEY", "REVENIUM_BYPASS", "REVENIUM_CB_FAIL_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REVENIUM_CIRCUIT_BREAKER_ENABLED", "true")
    monkeypatch.setenv("REVENIUM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("REVENIUM_ENFORCEMENT_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("REVENIUM_TEAM_ID", "team-a")
    enforcement.set_default_engine(None)
    yield tmp_path
    enforcement.set_default_engine(None)


def write_snapshot(directory: Path, team: str, rules: list[dict[str, object]]) -> None:
    payload = parse_payload(rules)
    Mirror(str(directory), "http://127.0.0.1:9", team).save(payload, etag=None, fetched_at=0.0)


def test_module_functions_follow_the_team_in_the_environment(
    default_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_snapshot(default_env, "team-a", [{"ruleId": 1, "name": "a-cap", "breached": True}])
    write_snapshot(default_env, "team-b", [{"ruleId": 2, "name": "b-cap", "breached": False}])
    with pytest.raises(BudgetExceededError, match="a-cap"):
        enforcement.check_enforcement({})
    first = enforcement.default_engine()
    monkeypatch.setenv("REVENIUM_TEAM_ID", "team-b")
    enforcement.check_enforcement({})
    assert enforcement.default_engine() is not first
    assert enforcement.explain({}).rules[0].name == "b-cap"


def test_set_default_engine_pins_an_engine(default_env: Path) -> None:
    engine = Engine(environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true"})
    engine.load_payload([{"ruleId": 1, "name": "pinned", "breached": True}])
    enforcement.set_default_engine(engine)
    with pytest.raises(BudgetExceededError, match="pinned"):
        enforcement.check_enforcement()


def test_every_call_racing_the_first_sees_the_snapshot(
    default_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVENIUM_CB_FAIL_MODE", "closed")
    write_snapshot(default_env, "team-a", [{"ruleId": i, "name": f"r{i}"} for i in range(3000)])
    barrier = threading.Barrier(32)
    outcomes: list[str] = []

    def racer() -> None:
        barrier.wait()
        try:
            enforcement.check_enforcement({})
            outcomes.append("pass")
        except BudgetExceededError as err:
            outcomes.append(type(err).__name__)

    threads = [threading.Thread(target=racer) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == ["pass"] * 32


async def test_acheck_enforcement_module_function(default_env: Path) -> None:
    write_snapshot(default_env, "team-a", [{"ruleId": 1, "name": "cap", "breached": True}])
    with pytest.raises(BudgetExceededError):
        await enforcement.acheck_enforcement({}, model="gpt-4o", provider="openai")


def test_stop_polling_without_an_engine_is_harmless(default_env: Path) -> None:
    write_snapshot(default_env, "team-a", [{"ruleId": 1, "name": "cap", "breached": True}])
    enforcement.stop_polling()  # no default engine yet: nothing to stop, nothing raised
    enforcement.stop_polling()
    with pytest.raises(BudgetExceededError, match="cap"):
        enforcement.check_enforcement({})  # the first enabled call still starts it all
    enforcement.stop_polling()
    assert not enforcement.default_engine().status().poller_alive
