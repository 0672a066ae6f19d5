"""Poisoned payloads and snapshot files (issue 10): a check returns or raises
BudgetExceededError, nothing else, and a later good payload is still installed."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from _support import FAST, FUTURE, breached, verdict, wait_until

from enforcement import Engine
from enforcement._mirror import Mirror
from enforcement.testing import Fault, RulesServer, make_rule

HUGE = 10**400  # valid JSON, past float range


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def deep_rule(depth: int = 950) -> dict[str, Any]:
    return breached(9, notes=nested(depth))


def deep_rules_text(depth: int, *rules: dict[str, Any]) -> str:
    """A rules list ending in a rule nested ``depth`` deep, built as text (no recursion)."""
    shallow = json.dumps(breached(9))[:-1]
    deep = f'{shallow}, "notes": {"[" * depth}"bottom"{"]" * depth}}}'
    return "[" + "".join(json.dumps(rule) + ", " for rule in rules) + deep + "]"


def call_from_deep_stack(frames: int, call: Callable[[], str]) -> str:
    """Run ``call`` under ``frames`` extra frames, as a web framework's handler does."""
    if frames <= 0:
        return call()
    return call_from_deep_stack(frames - 1, call)


@pytest.fixture
def online(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> Callable[..., Engine]:
    def build(**env: str) -> Engine:
        environ = server.env(REVENIUM_CACHE_DIR=str(cache_dir), **env)
        return make_engine(environ=environ, retry_policy=FAST, timeout=2.0)

    return build


@pytest.fixture
def offline(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> Callable[..., Engine]:
    """An engine that reads the snapshot for the server's scope and fetches nothing."""

    def build(**env: str) -> Engine:
        environ = server.env(
            REVENIUM_CACHE_DIR=str(cache_dir), REVENIUM_METERING_API_KEY=None, **env
        )
        return make_engine(environ=environ)

    return build


def plant_rules(server: RulesServer, cache_dir: Path, rules: Any) -> Mirror:
    """Write a rules snapshot as the reference SDK would: whatever the feed served."""
    mirror = Mirror(str(cache_dir), server.base_url, server.team_id)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = Path(mirror.rules_path)
    path.write_text(rules if isinstance(rules, str) else json.dumps(rules))
    path.chmod(0o600)
    return mirror


# --------------------------------------------------------------------------- #3 and #4


def test_a_window_end_past_float_range_from_the_feed_does_not_stop_later_payloads(
    online: Callable[..., Engine], server: RulesServer
) -> None:
    engine = online()
    server.set_rules([breached(1, windowEnd=HUGE)])
    assert engine.refresh()
    assert verdict(engine) == "block"  # read as no window end, as the reference does
    server.update_rule(1, breached=False)
    assert engine.refresh()
    assert verdict(engine) == "pass"
    server.set_rules([breached(1, windowEnd=HUGE), breached(2)])
    assert engine.refresh()
    assert engine.status().rule_count == 2


def test_a_window_end_past_float_range_through_the_poller(
    online: Callable[..., Engine], server: RulesServer
) -> None:
    server.set_rules([breached(1, windowEnd=HUGE)])
    engine = online(REVENIUM_CB_POLL_INTERVAL_SECONDS="1")
    verdict(engine)
    assert wait_until(lambda: verdict(engine) == "block")
    assert engine.status().last_error is None
    server.set_rules([breached(1, windowEnd=HUGE, breached=False)])
    assert wait_until(lambda: verdict(engine) == "pass", timeout=5.0)


def test_a_window_end_past_float_range_in_a_snapshot_file(
    offline: Callable[..., Engine], server: RulesServer, cache_dir: Path
) -> None:
    plant_rules(server, cache_dir, [breached(1, windowEnd=HUGE)])
    engine = offline()
    for _ in range(3):
        assert verdict(engine) == "block"
    assert engine.status().source == "disk"


# --------------------------------------------------------------------------- #5


def test_a_deeply_nested_snapshot_never_makes_a_deep_first_call_raise(
    offline: Callable[..., Engine], server: RulesServer, cache_dir: Path
) -> None:
    plant_rules(server, cache_dir, deep_rules_text(950, breached(1)))
    engine = offline()
    frames = max(0, sys.getrecursionlimit() - 900)  # leaves far fewer than 950 frames
    for _ in range(3):
        assert call_from_deep_stack(frames, lambda: verdict(engine)) == "pass"
    assert not engine.status().loaded  # the file is unreadable, like any garbage


def test_a_deeply_nested_payload_is_a_failed_read_that_keeps_the_last_rules(
    online: Callable[..., Engine], server: RulesServer, cache_dir: Path
) -> None:
    engine = online()
    server.set_rules([breached(1)])
    assert engine.refresh()
    mirror = Mirror(str(cache_dir), server.base_url, server.team_id)
    on_disk = Path(mirror.rules_path).read_bytes()
    body = '{"rules": ' + deep_rules_text(950, breached(1, breached=False)) + "}"
    server.set_fault(Fault.body(body.encode()))
    assert not engine.refresh()
    status = engine.status()
    assert status.consecutive_failures == 1
    assert status.last_error is not None and "nested deeper" in status.last_error
    assert verdict(engine) == "block"
    assert Path(mirror.rules_path).read_bytes() == on_disk  # never written to disk


def test_a_deep_rule_in_a_large_payload_is_refused_too(
    online: Callable[..., Engine], server: RulesServer
) -> None:
    engine = online()
    server.set_rules([breached(1)])
    assert engine.refresh()
    filler = [make_rule(100 + i, f"quiet-{i}", window_end=FUTURE) for i in range(1500)]
    server.set_rules([*filler, deep_rule(40)])
    assert not engine.refresh()
    assert verdict(engine) == "block"


# --------------------------------------------------------------------------- #9

DEEP_BODY = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "body",
    [DEEP_BODY, b'{"rules": ' + b"[" * 100_000, b'{"rules": [' + b"{" * 50_000],
    ids=["balanced", "truncated", "objects"],
)
def test_a_100k_deep_body_is_a_failed_read(
    online: Callable[..., Engine], server: RulesServer, body: bytes
) -> None:
    engine = online()
    server.set_rules([breached(1)])
    assert engine.refresh()
    server.set_fault(Fault.body(body))
    assert not engine.refresh()
    status = engine.status()
    assert status.consecutive_failures == 1 and status.last_error
    assert "unreadable body" in status.last_error
    assert verdict(engine) == "block"
    server.set_fault(None)
    server.update_rule(1, breached=False)
    assert engine.refresh()
    assert verdict(engine) == "pass"


def test_a_deep_body_on_the_poller_is_recorded_and_retried_on_the_schedule(
    online: Callable[..., Engine], server: RulesServer
) -> None:
    server.set_fault(Fault.body(DEEP_BODY))
    engine = online(REVENIUM_CB_POLL_INTERVAL_SECONDS="1")
    verdict(engine)
    assert server.wait_for_requests(2, timeout=5.0)
    status = engine.status()
    assert status.consecutive_failures >= 1
    assert status.last_error is not None and "nested deeper" in status.last_error
    first, second = server.requests[:2]
    assert second.at - first.at >= 0.8  # the schedule (one interval here), not a tight loop
    server.set_fault(None)
    server.set_rules([breached(1)])
    assert wait_until(lambda: verdict(engine) == "block", timeout=5.0)
    assert engine.status().consecutive_failures == 0


def test_inspection_reads_of_a_deep_body_return_none(
    online: Callable[..., Engine], server: RulesServer
) -> None:
    engine = online()
    server.set_fault(Fault.body(DEEP_BODY))
    assert engine.fetch_enforcement_rule("1") is None
    assert engine.fetch_advisory_budgets() is None
    assert engine.fetch_enforcement_rule_roster("1") is None
    server.set_fault(Fault.body(json.dumps({"rules": [nested(40)]}).encode()))
    assert engine.fetch_enforcement_rule("1") is None


# --------------------------------------------------------------------------- #8


def sealed_sidecar(mirror: Mirror, body: dict[str, Any]) -> str:
    """A sidecar body sealed with the mirror's key, whatever its values."""
    return json.dumps({**body, "seal": mirror._seal(body)})


FINITE_POISON = [
    {"fetched_at": str(HUGE)},
    {"fetched_at": '"now"'},
    {"rules_file": f"[1, {HUGE}]"},
    {"rules_file": "[1.5, 2]"},
    {"pid": str(HUGE)},
    {"lease": f'{{"pid": 1, "at": {HUGE}}}'},
    {"lease": '"yes"'},
]
NON_FINITE_POISON = [
    {"fetched_at": "Infinity"},
    {"fetched_at": "1e400"},
    {"fetched_at": "NaN"},
    {"rules_file": "[1e400, 1]"},
    {"rules_file": "[Infinity, NaN]"},
    {"pid": "1e400"},
    {"lease": '{"pid": 1, "at": Infinity}'},
]


@pytest.mark.parametrize(
    ("fields", "sealed"),
    [(fields, False) for fields in FINITE_POISON + NON_FINITE_POISON]
    + [(fields, True) for fields in FINITE_POISON],  # a seal cannot cover a non-finite value
    ids=lambda value: (
        "-".join(f"{k}={v}"[:40] for k, v in value.items())
        if isinstance(value, dict)
        else ("sealed" if value else "planted")
    ),
)
def test_an_unreadable_sidecar_is_absent_and_the_poller_fetches(
    server: RulesServer,
    cache_dir: Path,
    online: Callable[..., Engine],
    fields: dict[str, str],
    sealed: bool,
) -> None:
    mirror = plant_rules(server, cache_dir, [breached(1)])
    rules_file = mirror.rules_file()
    assert rules_file is not None
    values = {
        "fetched_at": str(time.time()),
        "etag": '"x"',
        "rules_file": json.dumps(list(rules_file)),
        "pid": "1",
        **fields,
    }
    text = "{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}"
    if sealed:
        keyed = Mirror(
            str(cache_dir),
            server.base_url,
            server.team_id,
            secret=server.env()["REVENIUM_METERING_API_KEY"],
        )
        text = sealed_sidecar(keyed, json.loads(text))
    Path(mirror.meta_path).write_text(text)
    os.chmod(mirror.meta_path, 0o600)
    server.set_rules([breached(1, breached=False)])
    engine = online()
    assert verdict(engine) == "block"  # the snapshot's verdict, at once
    assert server.wait_for_requests(1, timeout=5.0)
    assert wait_until(lambda: verdict(engine) == "pass")


# --------------------------------------------------------------------------- #11


def test_warn_tier_lines_say_how_much_is_spent_and_name_no_email(
    online: Callable[..., Engine], server: RulesServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.set_rules(
        [breached(7, departmentId=3, threshold="1000", rule_name="eng-dept")],
        departmentBudgetWarnings={"ann@example.com": 7, "bob@example.com": 7},
        departmentBudgetBlockBalances={"ann@example.com": "812.5"},
    )
    engine = online()
    assert engine.refresh()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="enforcement"):
        assert verdict(engine, {"subscriber": {"email": "Ann@Example.com"}}) == "pass"
        assert verdict(engine, {"subscriber": {"email": "bob@example.com"}}) == "pass"
    lines = [r.getMessage() for r in caplog.records if "Approaching" in r.getMessage()]
    assert len(lines) == 2
    assert "eng-dept (812.50 of 1000.00 spent)" in lines[0]
    assert "spent" not in lines[1]  # no balance published for bob: nothing quoted
    assert "example.com" not in caplog.text


def test_warn_tier_from_candidates_quotes_the_candidates_balance(
    online: Callable[..., Engine], server: RulesServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.set_rules(
        [breached(7, departmentId=3, threshold=50, rule_name="eng-dept")],
        departmentBudgetCandidates={
            "ann@example.com": [{"ruleId": 7, "tier": "WARN", "departmentId": 3, "balance": 41}]
        },
    )
    engine = online()
    assert engine.refresh()
    with caplog.at_level(logging.WARNING, logger="enforcement"):
        assert verdict(engine, {"subscriber_email": "ann@example.com"}) == "pass"
    assert "eng-dept (41.00 of 50.00 spent)" in caplog.text
    assert "ann@" not in caplog.text
