"""Local accrual's fast paths give the answers of the slow ones (CONTRACT §9).

The gate (:meth:`RuleSet.may_accrue`) turns a call away before any
``CallFacts`` is built, and a pooled rule met before is judged from its
cached account and its one metadata row: neither may ever drop a rule that
covers the call. The hold's cached slots and the status view's epoch may
not change what is held, accrued or listed.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from hypothesis import event, given, settings
from hypothesis import strategies as st

from enforcement import Engine
from enforcement._callfacts import CallFacts
from enforcement._prices import PriceTable
from enforcement._ruleset import RuleSet
from enforcement._usage import Estimate, Usage
from enforcement._wire import parse_payload
from enforcement.testing import make_filter, make_rule

NOW = time.time()  # inside make_rule's default window (today), after an ended one
MODEL = "gpt-4o-mini"
PRICES = {MODEL: {"input": 0.15, "output": 0.60}}
CALL = Usage(20_000, 11_667)  # $0.0100002 at these prices
WORST = Estimate(20_000, 11_667)
ENVIRON = {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}

VALUES = ("acme", "globex", "Acme", "chat")
ROWS = st.fixed_dictionaries(
    {
        "dimension": st.sampled_from(
            ["ORGANIZATION", "PRODUCT", "AGENT", "SUBSCRIBER", "MODEL", "PROVIDER", "CREDENTIAL"]
        ),
        "operator": st.sampled_from(["IS", "IN", "IS_NOT", "CONTAINS"]),
        "value": st.sampled_from((*VALUES, "gpt-4o", "openai", "u-1")),
    }
).map(lambda row: {**row, "values": [row["value"], "globex"]} if row["operator"] == "IN" else row)
METADATA = st.fixed_dictionaries(
    {},
    optional={
        "organizationName": st.sampled_from((*VALUES, None)) | st.integers(0, 2),
        "organization_id": st.sampled_from(VALUES),
        "productName": st.sampled_from(VALUES),
        "agent": st.sampled_from(VALUES),
        "subscriber": st.fixed_dictionaries(
            {}, optional={"id": st.sampled_from(["u-1", "u-2"]), "email": st.just("Dev@x.com")}
        ),
        "subscriber_credential": st.just("key-1"),
    },
)


@st.composite
def rule_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    rules = []
    for rule_id in range(1, draw(st.integers(1, 6)) + 1):
        grouped = draw(st.booleans())
        extra: dict[str, Any] = {}
        if draw(st.integers(0, 5)) == 0:
            extra["credential"] = "key-1"
        rules.append(
            make_rule(
                rule_id,
                f"rule {rule_id}",
                threshold=1.0,
                filters=draw(st.lists(ROWS, max_size=2)),
                group_by="SUBSCRIBER" if grouped else None,
                group_breakdown=[{"groupValue": "u-1", "currentValue": 0.5}] if grouped else None,
                window_end=draw(st.sampled_from([None, NOW - 1.0])),
                **extra,
            )
        )
    return rules


def expected_ids(ruleset: RuleSet, facts: CallFacts) -> list[Any]:
    """The slow answer: every rule compiled and asked in full."""
    return [
        rule.identifier
        for rule in ruleset.rules
        if not rule.ended(NOW) and rule.covers(facts) and (rule.group is None or facts.group_keys())
    ]


@settings(max_examples=300, deadline=None)
@given(
    rules=rule_sets(),
    calls=st.lists(
        st.tuples(METADATA, st.sampled_from(["gpt-4o", "o3", None]), st.sampled_from(["openai"])),
        min_size=1,
        max_size=6,
    ),
)
def test_the_gate_and_the_cached_paths_never_drop_a_covering_rule(
    rules: list[dict[str, Any]], calls: list[tuple[dict[str, Any], Optional[str], str]]
) -> None:
    ruleset = RuleSet(parse_payload(rules), 1)
    assert ruleset.may_accrue({}, "gpt-4o", "openai")  # no index yet: asked in full
    ruleset.prepare_accounts()
    covered = 0
    for metadata, model, provider in calls * 2:  # the second time, every cache is warm
        facts = CallFacts(metadata, model, provider)
        found = [account.rule.identifier for account in ruleset.accounts(facts, NOW)]
        assert found == expected_ids(ruleset, facts)
        covered += bool(found)
        if not ruleset.may_accrue(metadata, model, provider):
            assert found == []
    event(f"calls that found an account: {'3 or more' if covered >= 3 else covered}")


def test_the_gate_turns_away_a_caller_no_rule_of_thousands_covers() -> None:
    rules = [
        make_rule(i, filters=[make_filter("ORGANIZATION", "IS", f"org-{i}")])
        for i in range(1, 2001)
    ]
    ruleset = RuleSet(parse_payload(rules), 1)
    ruleset.prepare_accounts()
    assert not ruleset.may_accrue({"organizationName": "acme"}, "gpt-4o", "openai")
    assert not ruleset.may_accrue(None, "gpt-4o", "openai")
    assert ruleset.may_accrue({"organizationName": "org-7"}, "gpt-4o", "openai")
    assert ruleset.may_accrue({"organizationName": 7}, "gpt-4o", "openai")  # unreadable: reaches
    # The first key set wins, as in the metering record: a later one is never read.
    assert not ruleset.may_accrue(
        {"organization_name": "acme", "organizationId": "org-7"}, "gpt-4o", "openai"
    )


def test_the_gate_asks_in_full_for_rules_no_plain_value_files() -> None:
    rules = [
        make_rule(1, filters=[make_filter("SUBSCRIBER", "IS", "u-1")]),
        make_rule(2, filters=[make_filter("MODEL", "IS", "o3")]),
    ]
    ruleset = RuleSet(parse_payload(rules), 1)
    ruleset.prepare_accounts()
    assert ruleset.may_accrue({}, "gpt-4o", "openai")  # a subscriber row: accounts() decides
    only_model = RuleSet(parse_payload(rules[1:]), 1)
    only_model.prepare_accounts()
    assert not only_model.may_accrue({}, "gpt-4o", "openai")
    assert only_model.may_accrue({}, "o3", "openai")


def test_the_gate_lets_department_callers_with_a_balance_through() -> None:
    payload = {
        "rules": [make_rule(7, departmentId=3)],
        "departmentBudgetWarnings": {"dev@example.com": 7},
        "departmentBudgetBlockBalances": {"dev@example.com": 8.25},
    }
    ruleset = RuleSet(parse_payload(payload), 1)
    ruleset.prepare_accounts()
    assert ruleset.may_accrue({"subscriber": {"email": "Dev@Example.com"}}, "gpt-4o", "openai")
    assert not ruleset.may_accrue({"subscriber": {"email": "x@example.com"}}, "gpt-4o", "openai")
    assert not ruleset.may_accrue({"subscriber": {"id": "u-1"}}, "gpt-4o", "openai")


# --------------------------------------------------------------------------- the engine


def engine(**environ: str) -> Engine:
    return Engine(
        environ={**ENVIRON, **environ}, prices=PriceTable(overrides=PRICES, use_table=False)
    )


def begin(built: Engine, metadata: Optional[dict[str, Any]] = None) -> Any:
    return built.begin(metadata, model=MODEL, provider="openai", estimate=lambda: WORST)


def test_a_call_no_rule_covers_holds_nothing_and_a_covered_one_is_held() -> None:
    acme = make_rule(1, "acme", threshold=0.05, filters=[make_filter("ORGANIZATION", "IS", "acme")])
    with engine() as built:
        built.load_payload([acme])
        for _ in range(20):
            assert begin(built, {"organizationName": "globex"}) is None
        assert built.stats()["holds"] == 0
        admitted = 0
        for _ in range(20):
            try:
                begin(built, {"organizationName": "acme"}).settle(CALL)
            except Exception:
                break
            admitted += 1
        assert admitted == 4  # $0.05 at $0.01 a call: the cap still stops the loop


def test_a_switched_off_engine_never_builds_the_accrual_index() -> None:
    with engine(REVENIUM_BYPASS="true") as built:
        built.load_payload([make_rule(1, "cap")])
        assert begin(built) is None
        ruleset = built._ruleset
        assert ruleset is not None and ruleset._accruals is None


def test_two_cost_rules_each_accrue_the_call_and_a_request_rule_counts_it() -> None:
    rules = [
        make_rule(1, "dollars a", threshold=1.0),
        make_rule(2, "dollars b", threshold=1.0, shadow_mode=True),
        make_rule(3, "calls", threshold=100, metric_type="REQUEST_COUNT"),
    ]
    with engine() as built:
        built.load_payload(rules)
        for _ in range(3):
            begin(built).settle(CALL)
        spend = built.status().local_spend
        assert spend is not None
        local = {row["rule_id"]: row["local"] for row in spend["rules"]}
    assert local[1] == local[2]  # priced once, accrued to both
    assert abs(local[1] - 3 * 0.0100002) < 1e-9
    assert local[3] == 3.0


def test_status_lists_a_rule_again_after_many_others_pushed_it_out() -> None:
    rules = [
        make_rule(i, f"org {i}", filters=[make_filter("ORGANIZATION", "IS", f"org-{i}")])
        for i in range(1, 301)
    ]
    with engine() as built:
        built.load_payload(rules)
        for i in [1, *range(2, 301), 1]:
            begin(built, {"organizationName": f"org-{i}"}).settle(CALL)
        spend = built.status().local_spend
        assert spend is not None
        listed = [row["rule_id"] for row in spend["rules"]]
    assert 1 in listed and len(listed) == 256
