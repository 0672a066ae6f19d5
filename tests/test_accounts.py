"""The rule set's side of local spend: which rules a call counts toward (CONTRACT §9)."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from enforcement._accounts import Account, accrual_metric, accrual_operator
from enforcement._callfacts import CallFacts
from enforcement._ruleset import RuleSet
from enforcement._wire import parse_payload

NOW = 1_800_000_000.0
CALLER = {
    "subscriber": {"id": "u-42", "email": "Dev@Example.com"},
    "organizationName": "acme",
    "productName": "chat",
}


def rule(rule_id: int, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ruleId": rule_id,
        "name": f"rule-{rule_id}",
        "metricType": "TOTAL_COST",
        "operatorType": "GREATER_THAN_OR_EQUAL_TO",
        "threshold": "10.00",
        "currentValue": "4.5",
        "windowEnd": "2099-01-01T00:00:00Z",
        "breached": False,
        "filters": [],
    }
    body.update(fields)
    return body


def accounts(
    payload: Any,
    metadata: Optional[dict[str, Any]] = None,
    model: str = "gpt-4o",
    provider: str = "openai",
) -> tuple[Account, ...]:
    ruleset = RuleSet(parse_payload(payload), 1)
    return ruleset.accounts(
        CallFacts(CALLER if metadata is None else metadata, model, provider), NOW
    )


def org_filter(value: str) -> list[dict[str, str]]:
    return [{"dimension": "ORGANIZATION", "operator": "IS", "value": value}]


@pytest.mark.parametrize(
    ("metric_type", "metric"),
    [
        ("TOTAL_COST", "cost"),
        (" total_cost ", "cost"),
        ("INPUT_TOKENS", "input_tokens"),
        ("PROMPT_TOKEN_COUNT", "input_tokens"),
        ("OUTPUT_TOKENS", "output_tokens"),
        ("COMPLETION_TOKENS", "output_tokens"),
        ("TOKEN_COUNT", "tokens"),
        ("TOTAL_TOKENS", "tokens"),
        ("REQUEST_COUNT", "requests"),
        ("API_CALLS", "requests"),
        ("INPUT_TOKEN_COST", None),
        ("LATENCY", None),
        ("", None),
        (None, None),
        (7, None),
    ],
)
def test_a_metric_accrues_what_its_name_says_and_nothing_else(
    metric_type: Any, metric: Optional[str]
) -> None:
    assert accrual_metric(metric_type) == metric
    found = accounts({"rules": [rule(1, metricType=metric_type)]})
    assert [a.metric for a in found] == ([metric] if metric else [])


@pytest.mark.parametrize(
    ("operator", "inclusive"),
    [
        ("GREATER_THAN_OR_EQUAL_TO", True),
        (None, True),
        ("GREATER_THAN", False),
        ("LESS_THAN", None),
        ("EQUALS", None),
        (3, None),
    ],
)
def test_only_the_operators_local_spend_understands_accrue(
    operator: Any, inclusive: Optional[bool]
) -> None:
    assert accrual_operator(operator) is inclusive
    found = accounts({"rules": [rule(1, operatorType=operator)]})
    assert [a.inclusive for a in found] == ([] if inclusive is None else [inclusive])


@pytest.mark.parametrize("threshold", [None, "lots", True, "NaN", "Infinity"])
def test_a_rule_without_a_usable_threshold_accrues_nothing(threshold: Any) -> None:
    assert accounts({"rules": [rule(1, threshold=threshold)]}) == ()


def test_a_pooled_account_carries_the_server_figure_and_the_headroom() -> None:
    (account,) = accounts({"rules": [rule(1, breached=True, action="WARN_ONLY")]})
    assert account.rule.identifier == 1
    assert (account.entry, account.metric, account.base, account.threshold) == (
        "",
        "cost",
        4.5,
        10.0,
    )
    assert account.headroom == 5.5
    assert account.window_end == 4070908800.0
    assert (account.blocks, account.shadow) == (False, False)


def test_every_covering_rule_is_an_account_tripped_or_not_in_payload_order() -> None:
    rules = [rule(3), rule(1, breached=True), rule(2, currentValue=None)]
    found = accounts({"rules": rules})
    assert [(a.rule.identifier, a.base) for a in found] == [(3, 4.5), (1, 4.5), (2, 0.0)]


def breakdown(*entries: tuple[str, float, bool]) -> list[dict[str, Any]]:
    return [
        {"groupValue": key, "currentValue": value, "breached": breached}
        for key, value, breached in entries
    ]


@pytest.mark.parametrize(
    ("entries", "entry", "base"),
    [
        ([("dev@example.com", 3.0, False), ("u-42", 1.0, False)], "u-42", 1.0),
        ([("dev@example.com", 3.0, True), ("other", 1.0, True)], "dev@example.com", 3.0),
        ([("Dev@Example.com", 2.0, False)], "Dev@Example.com", 2.0),
        ([("someone-else", 9.0, True)], "u-42", 0.0),
        ([], "u-42", 0.0),
    ],
)
def test_a_grouped_rule_accrues_to_the_entry_the_verdict_judges(
    entries: list[tuple[str, float, bool]], entry: str, base: float
) -> None:
    grouped = rule(1, groupBy="SUBSCRIBER", groupBreakdown=breakdown(*entries))
    (account,) = accounts({"rules": [grouped]})
    assert (account.entry, account.base) == (entry, base)


def test_a_grouped_rule_and_a_caller_with_no_key_accrue_nothing() -> None:
    grouped = rule(1, groupBy="SUBSCRIBER", groupBreakdown=breakdown(("u-1", 1.0, True)))
    assert accounts({"rules": [grouped]}, {"organizationName": "acme"}) == ()


def departments(**maps: Any) -> dict[str, Any]:
    rules = [rule(7, departmentId=3, name="dept"), rule(8, departmentId=4), rule(9)]
    return {"rules": rules, **maps}


def test_a_department_rule_accrues_to_the_caller_balance_only() -> None:
    payload = departments(
        departmentBudgetWarnings={"dev@example.com": 7},
        departmentBudgetBlockBalances={"DEV@example.com": "8.25"},
    )
    found = accounts(payload)
    assert [(a.rule.identifier, a.entry, a.base) for a in found] == [
        (7, "dev@example.com", 8.25),
        (9, "", 4.5),
    ]
    assert [a.rule.identifier for a in accounts(payload, {"subscriber": {"id": "x"}})] == [9]


def test_department_candidates_give_each_rule_its_own_balance() -> None:
    candidates = [
        {"ruleId": 8, "tier": "WARN", "departmentId": 4, "balance": 2.0},
        {"ruleId": 7, "tier": "BLOCK", "departmentId": 3, "balance": "11"},
        {"ruleId": 99, "tier": "BLOCK", "balance": 1.0},
    ]
    payload = departments(departmentBudgetCandidates={"dev@example.com": candidates})
    found = [(a.rule.identifier, a.base) for a in accounts(payload) if a.rule.is_department]
    assert found == [(7, 11.0), (8, 2.0)]


def test_a_rule_whose_window_has_ended_accrues_nothing() -> None:
    rules = [rule(1, windowEnd="2020-01-01T00:00:00Z"), rule(2, windowEnd=NOW - 1), rule(3)]
    assert [a.rule.identifier for a in accounts({"rules": rules})] == [3]


def test_filters_and_the_legacy_credential_decide_coverage() -> None:
    rules = [
        rule(1, filters=org_filter("acme")),
        rule(2, filters=org_filter("globex")),
        rule(3, filters=[{"dimension": "MODEL", "operator": "IS", "value": "gpt-4o"}]),
        rule(4, filters=[{"dimension": "MODEL", "operator": "IS", "value": "claude-3"}]),
        rule(5, filters=[{"dimension": "PRODUCT", "operator": "IN", "values": ["a", "chat"]}]),
        rule(6, credential="key-1"),
        rule(
            7, filters=[{"dimension": "SUBSCRIBER", "operator": "IS", "value": "DEV@example.com"}]
        ),
    ]
    assert [a.rule.identifier for a in accounts({"rules": rules})] == [1, 3, 5, 7]
    with_key = {**CALLER, "subscriber_credential": "key-1", "organizationName": "globex"}
    assert [a.rule.identifier for a in accounts({"rules": rules}, with_key)] == [2, 3, 5, 6, 7]


def test_a_shadow_rule_is_an_account_that_says_so() -> None:
    (account,) = accounts({"rules": [rule(1, shadowMode=True)]})
    assert (account.shadow, account.blocks) == (True, True)


def test_a_caller_covered_by_none_of_many_rules_gets_no_account() -> None:
    rules = [rule(i, filters=org_filter(f"org-{i}")) for i in range(1, 2001)]
    ruleset = RuleSet(parse_payload({"rules": rules}), 1)
    assert ruleset.accounts(CallFacts(CALLER, "gpt-4o", "openai"), NOW) == ()
    facts = CallFacts({"organizationName": "org-1500"}, "gpt-4o", "openai")
    assert [a.rule.identifier for a in ruleset.accounts(facts, NOW)] == [1500]


def test_an_unreadable_organization_reaches_every_rule_filtered_on_it() -> None:
    rules = [rule(1, filters=org_filter("acme")), rule(2, filters=org_filter("globex"))]
    found = accounts({"rules": rules}, {"organizationName": 42})
    assert [a.rule.identifier for a in found] == [1, 2]


def test_routes_are_cached_per_model_and_provider_without_changing_answers() -> None:
    rules = [rule(1, filters=[{"dimension": "MODEL", "operator": "IS", "value": "gpt-4o"}])]
    ruleset = RuleSet(parse_payload({"rules": rules}), 1)
    for model, expected in [("gpt-4o", [1]), ("claude-3", []), ("gpt-4o", [1]), ("o1", [])]:
        facts = CallFacts(CALLER, model, "openai")
        assert [a.rule.identifier for a in ruleset.accounts(facts, NOW)] == expected


def test_the_index_is_built_without_compiling_a_rule_and_a_call_compiles_what_it_reaches() -> None:
    rules = [rule(i, filters=org_filter(f"org-{i}")) for i in range(1, 101)] + [rule(101)]
    ruleset = RuleSet(parse_payload({"rules": rules}), 1)
    ruleset.prepare_accounts()
    assert ruleset._compiled == {}  # lean records only: position, metric, threshold, operator
    facts = CallFacts({"organizationName": "org-7"}, "gpt-4o", "openai")
    first = ruleset.accounts(facts, NOW)
    assert [a.rule.identifier for a in first] == [7, 101]
    assert sorted(ruleset._compiled) == [6, 100]
    assert ruleset.accounts(facts, NOW) == first
