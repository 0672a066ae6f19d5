"""The rule set's screen never changes a verdict: it only answers sooner.

:meth:`RuleSet.screen` answers most callers from the raw metadata (and
remembers a warn tier's notice per address); :meth:`RuleSet.judge` walks
everything. For every payload and call the differential generator makes,
both must give the same error and the same notices, the first time a caller
is seen and every time after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

import pytest
from compat.generate import Call, generate_calls, generate_payload

from enforcement._callfacts import CallFacts
from enforcement._ruleset import JUDGE, PASSES, RuleSet, Verdict
from enforcement._wire import parse_payload

PAYLOADS = 1500
NOW = 1_900_000_000.0


def _wire(rules: list[Any], maps: Optional[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {"rules": rules}
    if maps is not None:
        for name, key in (
            ("blocks", "departmentBudgetBlocks"),
            ("balances", "departmentBudgetBlockBalances"),
            ("warnings", "departmentBudgetWarnings"),
            ("candidates", "departmentBudgetCandidates"),
        ):
            if name in maps:
                body[key] = maps[name]
    return body


def _shape(verdict: Optional[Verdict]) -> Any:
    if verdict is None:
        return None
    error = verdict.error
    fields = None if error is None else (error.message, error.rule_id, error.current_value)
    return fields, verdict.notices


def _screened(ruleset: RuleSet, facts: CallFacts) -> Optional[Verdict]:
    screened = ruleset.screen(facts.metadata, facts.model, facts.provider)
    if screened is PASSES:
        return None
    if screened is JUDGE:
        return ruleset.judge(facts, NOW)
    # What Reporter.remembered relies on: a remembered verdict is warn tiers, nothing refused.
    assert screened.error is None and {n.kind for n in screened.notices} == {"warn_tier"}
    return screened


def _generated(chunk: int) -> Iterator[tuple[int, RuleSet, list[Call]]]:
    """Every fifth payload of the differential generator, from ``chunk``, with its calls."""
    for seed in range(chunk, PAYLOADS, 5):
        generated = generate_payload(seed)
        try:
            payload = parse_payload(_wire(generated.rules, generated.maps))
        except ValueError:
            continue
        yield seed, RuleSet(payload, 1), generate_calls(seed, generated, 15)


@pytest.mark.parametrize("chunk", range(5))
def test_the_screen_gives_the_verdict_judging_everything_gives(chunk: int) -> None:
    checked = 0
    for seed, ruleset, calls in _generated(chunk):
        for call in calls:
            facts = CallFacts(call.metadata, call.model, call.provider)
            expected = _shape(ruleset.judge(facts, NOW))
            for _ in range(2):  # the second time from what the screen remembered
                fresh = CallFacts(call.metadata, call.model, call.provider)
                assert _shape(_screened(ruleset, fresh)) == expected, (seed, call.summary())
            checked += 1
    assert checked > 1000


def test_a_warn_tier_caller_is_remembered_by_the_address_as_sent() -> None:
    ruleset = RuleSet(
        parse_payload(
            {
                "rules": [{"ruleId": 2, "name": "dept", "departmentId": 4, "threshold": 500}],
                "departmentBudgetWarnings": {"dev@example.com": 2},
                "departmentBudgetBlockBalances": {"dev@example.com": 450.0},
            }
        ),
        1,
    )
    caller = {"subscriber": {"email": " Dev@Example.com"}}
    first = ruleset.screen(caller, "gpt-4o", "openai")
    assert isinstance(first, Verdict) and first.error is None
    (notice,) = first.notices
    assert (notice.kind, notice.rule_id, notice.value, notice.email) == (
        "warn_tier",
        2,
        450.0,
        "dev@example.com",
    )
    assert ruleset.screen(caller, "gpt-4o", "openai") is first
    assert ruleset.screen({"subscriber": {"email": "other@example.com"}}, None, None) is PASSES
    assert ruleset.screen({"subscriber_email": "dev@example.com"}, None, None) == first


def test_remembered_callers_are_bounded() -> None:
    ruleset = RuleSet(parse_payload({"rules": [], "departmentBudgetBlocks": {"x@y.z": 1}}), 1)
    for i in range(10_000):
        assert ruleset.screen({"subscriber": {"email": f"u{i}@example.com"}}, None, None) is PASSES
    assert len(ruleset._by_email) <= 4096
    assert ruleset.screen({"subscriber": {"email": "X@y.z"}}, None, None) is JUDGE


@pytest.mark.parametrize("chunk", range(5))
def test_a_pair_left_alone_is_never_judged_or_accrued(chunk: int) -> None:
    """``leaves_alone`` answers from the pair alone: every call to it must then pass untouched."""
    left_alone = 0
    for seed, ruleset, calls in _generated(chunk):
        ruleset.prepare_accounts()
        for call in calls:
            if not ruleset.leaves_alone(call.model, call.provider, True):
                continue
            left_alone += 1
            facts = CallFacts(call.metadata, call.model, call.provider)
            assert ruleset.judge(facts, NOW) is None, (seed, call.summary())
            assert ruleset.accounts(facts, NOW) == (), (seed, call.summary())
    assert left_alone > 50


def test_an_address_that_is_a_str_subclass_is_answered_but_never_remembered() -> None:
    class Odd(str):
        def __hash__(self) -> int:
            return hash("dev@example.com")

        def __eq__(self, other: object) -> bool:
            return True

    ruleset = RuleSet(
        parse_payload({"rules": [], "departmentBudgetBlocks": {"blocked@example.com": 1}}), 1
    )
    assert ruleset.screen({"subscriber": {"email": "dev@example.com"}}, None, None) is PASSES
    odd = Odd("blocked@example.com")
    assert ruleset.screen({"subscriber": {"email": odd}}, None, None) is JUDGE
    assert len(ruleset._by_email) == 1
