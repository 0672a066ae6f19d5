"""The verdict of Engine.check on rule sets installed by hand (no network)."""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest
from _support import FUTURE

from enforcement import BudgetExceededError, Decision, EnforcementUnavailableError, Engine

PAST = "2001-01-01T00:00:00.123456789Z"


def rule(rule_id: int = 1, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ruleId": rule_id,
        "name": f"rule-{rule_id}",
        "breached": False,
        "action": "BLOCK",
        "threshold": 100.0,
        "currentValue": 10.0,
        "windowEnd": FUTURE,
        "filters": [],
    }
    base.update(fields)
    return base


@pytest.fixture
def engine(env: dict[str, str], make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(environ=env)


def test_disabled_engine_passes_everything(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(environ={"REVENIUM_CB_FAIL_MODE": "closed"})
    engine.load_payload([rule(breached=True)])
    engine.check({})
    assert not engine.status().poller_alive


def test_switches_are_read_on_every_call(engine: Engine, env: dict[str, str]) -> None:
    engine.load_payload([rule(breached=True)])
    with pytest.raises(BudgetExceededError):
        engine.check()
    env["REVENIUM_BYPASS"] = "yes"
    engine.check()
    env["REVENIUM_BYPASS"] = "0"
    env["REVENIUM_CIRCUIT_BREAKER_ENABLED"] = " OFF "
    engine.check()
    env["REVENIUM_CIRCUIT_BREAKER_ENABLED"] = "On"
    with pytest.raises(BudgetExceededError):
        engine.check()


def test_unrecognised_flag_is_off_and_warned_once(
    make_engine: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    def warnings() -> int:
        return sum("not a recognised value" in r.getMessage() for r in caplog.records)

    # Two engines, so the count does not depend on what an earlier test warned about.
    for expected in (1, 2):
        engine = make_engine(environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "enabled-please"})
        engine.load_payload([rule(breached=True)])
        engine.check()
        engine.check()
        assert warnings() == expected


def test_fail_closed_without_rules_raises_unavailable(engine: Engine, env: dict[str, str]) -> None:
    env["REVENIUM_CB_FAIL_MODE"] = "closed"
    with pytest.raises(EnforcementUnavailableError) as raised:
        engine.check()
    assert isinstance(raised.value, BudgetExceededError)
    assert str(raised.value) == (
        "Request blocked: enforcement cache is uninitialized and REVENIUM_CB_FAIL_MODE=closed."
    )
    env["REVENIUM_CB_FAIL_MODE"] = "open"
    engine.check()


def test_empty_loaded_rule_set_passes_fail_closed(engine: Engine, env: dict[str, str]) -> None:
    env["REVENIUM_CB_FAIL_MODE"] = "closed"
    engine.load_payload({"rules": []})
    engine.check()


def test_block_carries_structured_fields(engine: Engine) -> None:
    engine.load_payload(
        [
            rule(
                7,
                name="daily",
                breached=True,
                threshold="500",
                currentValue="512.4",
                resetsAt="2026-11-24T00:00:00Z",
                denyMessage="  Ask finance.  ",
                periodType="DAILY",
                metricType="TOTAL_COST",
            )
        ]
    )
    with pytest.raises(BudgetExceededError) as raised:
        engine.check({"organizationName": "acme"}, model="gpt-4o", provider="openai")
    err = raised.value
    assert str(err) == "Request blocked by Revenium enforcement rule: daily. Ask finance."
    assert (err.rule_name, err.rule_id, err.current_value, err.threshold) == (
        "daily",
        7,
        512.4,
        500.0,
    )
    assert err.resets_at == "2026-11-24T00:00:00Z"
    assert err.deny_message == "Ask finance."
    assert (err.period_type, err.metric_type, err.action, err.source) == (
        "DAILY",
        "TOTAL_COST",
        "BLOCK",
        "server",
    )


def test_resets_at_falls_back_to_window_end(engine: Engine) -> None:
    engine.load_payload([rule(breached=True, windowEnd=4102444800)])
    with pytest.raises(BudgetExceededError) as raised:
        engine.check()
    assert raised.value.resets_at == "2100-01-01T00:00:00Z"


@pytest.mark.parametrize("window_end", [PAST, 978307200, "2001-01-01T00:00:00+05:00[Asia/Kolkata]"])
def test_ended_window_blocks_nobody(engine: Engine, window_end: object) -> None:
    engine.load_payload([rule(breached=True, windowEnd=window_end)])
    engine.check()


def test_unreadable_window_end_keeps_the_breach(engine: Engine) -> None:
    engine.load_payload([rule(breached=True, windowEnd="yesterday")])
    with pytest.raises(BudgetExceededError):
        engine.check()


def test_warn_only_rule_passes_and_warns_once_per_window(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[Decision] = []
    engine.add_listener(events.append)
    engine.load_payload([rule(breached=True, action="WARN_ONLY"), rule(2)])
    for _ in range(3):
        engine.check()
    assert engine.flush_listeners()
    assert sum("over its threshold" in r.message for r in caplog.records) == 1
    assert [e.kind for e in events] == ["warn_only"] * 3


def test_a_warned_rule_warns_again_after_leaving_and_returning(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    warned = rule(breached=True, action="WARN_ONLY")
    engine.load_payload([warned, rule(2)])
    engine.check()
    engine.load_payload([warned, rule(2), rule(3)])  # still served: no second warning
    engine.check()
    assert sum("over its threshold" in r.message for r in caplog.records) == 1
    engine.load_payload([rule(2)])  # gone: forgotten
    engine.load_payload([warned, rule(2)])
    engine.check()
    assert sum("over its threshold" in r.message for r in caplog.records) == 2


def test_shadow_rule_reports_instead_of_blocking(engine: Engine) -> None:
    events: list[Decision] = []
    engine.add_listener(events.append)
    engine.load_payload([rule(breached=True, shadowMode=True)])
    engine.check()
    assert engine.flush_listeners()
    assert [(e.kind, e.rule_id) for e in events] == [("shadow", 1)]
    assert engine.status().counters["shadow"] == 1


def test_first_blocking_rule_in_order_wins(engine: Engine) -> None:
    engine.load_payload(
        [
            rule(1),
            rule(2, breached=True, action="NOTIFY"),
            rule(3, breached=True),
            rule(4, breached=True),
        ]
    )
    with pytest.raises(BudgetExceededError) as raised:
        engine.check()
    assert raised.value.rule_id == 3


def test_filters_narrow_a_rule(engine: Engine) -> None:
    engine.load_payload(
        [
            rule(
                breached=True,
                filters=[
                    {"dimension": "MODEL", "operator": "IS", "value": "gpt-4o-mini-2024-07-18"},
                    {"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"},
                ],
            )
        ]
    )
    engine.check({"organizationName": "acme"}, model="gpt-4o", provider="openai")
    engine.check({"organizationName": "other"}, model="gpt-4o-mini", provider="openai")
    engine.check({}, model="gpt-4o-mini", provider="openai")
    with pytest.raises(BudgetExceededError):
        engine.check({"organizationName": "acme"}, model="gpt-4o-mini", provider="openai")
    with pytest.raises(BudgetExceededError):  # an Azure deployment says nothing about the model
        engine.check({"organizationName": "acme"}, model="my-deployment", provider="azure")


def test_grouped_rule_judges_the_callers_own_entry(engine: Engine) -> None:
    engine.load_payload(
        [
            rule(
                groupBy="SUBSCRIBER",
                breached=True,
                groupBreakdown=[
                    {"groupValue": "u-1", "currentValue": 5, "breached": False},
                    {"groupValue": "ann@example.com", "currentValue": "150", "breached": True},
                ],
            )
        ]
    )
    engine.check({"subscriber": {"id": "u-1", "email": "ann@example.com"}})
    engine.check({"subscriber": {"email": "bob@example.com"}})
    engine.check()
    with pytest.raises(BudgetExceededError) as raised:
        engine.check({"subscriber": {"email": "  Ann@Example.com "}})
    assert raised.value.current_value == 150.0


def test_department_map_blocks_by_normalized_email(engine: Engine) -> None:
    engine.load_payload(
        {
            "rules": [rule(9, name="eng-dept", departmentId=3, breached=True, currentValue=900)],
            "departmentBudgetBlocks": {" Ann@Example.com": 9, "bob@example.com": 404},
            "departmentBudgetBlockBalances": {"ann@example.com": "120.5"},
        }
    )
    engine.check({"subscriber": {"email": "carol@example.com"}})
    with pytest.raises(BudgetExceededError) as raised:
        engine.check({"subscriber_email": "ANN@example.com"})
    assert (raised.value.rule_name, raised.value.current_value) == ("eng-dept", 120.5)
    with pytest.raises(BudgetExceededError) as raised:  # a rule id the rules do not carry
        engine.check({"subscriber": {"email": "bob@example.com"}})
    assert (raised.value.rule_name, raised.value.rule_id) == ("Department budget", 404)


def test_department_warn_tier_logs_once_per_generation_without_email(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    engine.load_payload(
        {"rules": [rule(5, departmentId=1)], "departmentBudgetWarnings": {"ann@example.com": 5}}
    )
    for _ in range(3):
        engine.check({"subscriber": {"email": "ann@example.com"}})
    lines = [r.message for r in caplog.records if "Approaching" in r.message]
    assert len(lines) == 1 and "ann@" not in lines[0]


@pytest.mark.parametrize("metadata", ["a string", ["a", "list"], 42, object()])
def test_metadata_that_is_not_a_mapping_is_no_metadata(engine: Engine, metadata: Any) -> None:
    engine.load_payload(
        [
            rule(groupBy="SUBSCRIBER", groupBreakdown=[{"groupValue": "x", "breached": True}]),
            rule(
                2,
                breached=True,
                filters=[{"dimension": "AGENT", "operator": "IS_NOT", "value": "bot"}],
            ),
        ]
    )
    with pytest.raises(BudgetExceededError) as raised:
        engine.check(metadata)
    assert raised.value.rule_id == 2


def test_odd_metadata_never_raises_anything_else(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    engine.load_payload(
        {
            "rules": [
                rule(groupBy="SUBSCRIBER", groupBreakdown=[{"groupValue": "x", "breached": True}]),
                rule(2, filters=[]),
            ],
            "departmentBudgetBlocks": {"a@b.c": 1},
        }
    )
    for metadata in (
        {"subscriber": {"id": ["unhashable"], "email": {"x": 1}}},
        {"subscriber": "not a dict", "subscriber_email": 12},
        {"subscriber_id": 10**400},
    ):
        engine.check(metadata, model=None, provider=None)
    # ``check`` lets a call through when it crashes, so a crash shows only in the log.
    assert unexpected_failures(caplog) == []


def unexpected_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log lines of a check that crashed and let its call through."""
    return [r.getMessage() for r in caplog.records if "failed unexpectedly" in r.getMessage()]


def test_explain_names_every_rule(engine: Engine) -> None:
    engine.load_payload(
        [
            rule(
                1,
                breached=True,
                filters=[{"dimension": "MODEL", "operator": "IS", "value": "claude-3-5-haiku"}],
            ),
            rule(2),
            rule(3, breached=True, shadowMode=True),
        ]
    )
    explanation = engine.explain(model="gpt-4o", provider="openai")
    assert not explanation.blocked
    assert [(v.rule_id, v.covers, v.blocks) for v in explanation.rules] == [
        (1, False, False),
        (2, True, False),
        (3, True, False),
    ]
    assert "shadow" in explanation.rules[2].reason


def test_status_is_a_value(engine: Engine) -> None:
    assert not engine.status().loaded
    engine.load_payload([rule(breached=True), rule(2)])
    status = engine.status()
    assert (status.loaded, status.rule_count, status.tripped_count, status.generation) == (
        True,
        2,
        1,
        1,
    )


def test_identical_payload_is_not_a_new_generation(engine: Engine) -> None:
    engine.load_payload([rule()])
    engine.load_payload([rule()])
    assert engine.status().generation == 1
    engine.load_payload([rule(breached=True)])
    assert engine.status().generation == 2


def test_load_payload_refuses_a_body_without_rules(engine: Engine) -> None:
    with pytest.raises(ValueError):
        engine.load_payload({"error": "bad gateway"})


async def test_acheck_blocks_and_passes(engine: Engine) -> None:
    engine.load_payload(
        [
            rule(
                breached=True,
                filters=[{"dimension": "PROVIDER", "operator": "IS", "value": "ANTHROPIC"}],
            )
        ]
    )
    await engine.acheck(model="gpt-4o", provider="openai")
    with pytest.raises(BudgetExceededError):
        await engine.acheck(model="claude-opus-4", provider="claudecode")


def test_listener_failure_is_contained(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    def broken(decision: Decision) -> None:
        raise RuntimeError("listener bug")

    heard: list[Decision] = []
    engine.add_listener(broken)
    engine.add_listener(heard.append)
    engine.load_payload([rule(breached=True)])
    with pytest.raises(BudgetExceededError):
        engine.check()
    assert engine.flush_listeners()
    assert [decision.kind for decision in heard] == ["block"]  # the next listener still hears
    logged = [r for r in caplog.records if r.name.startswith("enforcement") and r.exc_info]
    assert [str(r.exc_info[1]) for r in logged if r.exc_info] == ["listener bug"]
    assert all(r.levelno <= logging.WARNING for r in logged)
    assert unexpected_failures(caplog) == []
