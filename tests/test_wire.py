"""Unit tests of enforcement._wire: the rules payload of CONTRACT §2, split and coerced once.

A payload of the wrong shape is refused whole (the last good rules stay); a
malformed piece inside a good payload is dropped alone and never fatal.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enforcement import BudgetExceededError, Engine
from enforcement._wire import (
    Candidate,
    Payload,
    PayloadError,
    coerce_float,
    normalize_email,
    parse_payload,
    rules_fingerprint,
)
from enforcement.testing import make_rule

# -- shapes ------------------------------------------------------------------------


def test_a_bare_list_is_the_rules_with_no_maps() -> None:
    rules: list[Any] = [{"ruleId": 1}, "junk"]
    assert parse_payload(rules) == Payload(rules)
    assert parse_payload([]) == Payload.empty()


def test_an_object_is_split_into_rules_and_maps() -> None:
    payload = parse_payload(
        {
            "rules": [{"ruleId": 7}],
            "compiledAt": 1776829860.156,
            "departmentBudgetBlocks": {"ann@example.com": 7},
            "departmentBudgetBlockBalances": {"ann@example.com": "42.5"},
            "departmentBudgetWarnings": {"bob@example.com": 8},
            "departmentBudgetCandidates": {
                "ann@example.com": [
                    {"ruleId": 7, "tier": "BLOCK", "departmentId": 3, "balance": "42.5"}
                ]
            },
        }
    )
    assert payload.rules == [{"ruleId": 7}]
    assert payload.blocks == {"ann@example.com": 7}
    assert payload.balances == {"ann@example.com": 42.5}
    assert payload.warnings == {"bob@example.com": 8}
    assert payload.candidates == {"ann@example.com": [Candidate(7, "BLOCK", 3, 42.5)]}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("rules", "str"),
        (42, "int"),
        (None, "NoneType"),
        (True, "bool"),
        ({"error": "bad gateway"}, "no 'rules' list"),
        ({"rules": None}, "no 'rules' list"),
        ({"rules": {"ruleId": 1}}, "no 'rules' list"),
        ({"rules": "[]"}, "no 'rules' list"),
    ],
)
def test_a_body_of_the_wrong_shape_is_refused_with_its_reason(body: Any, reason: str) -> None:
    with pytest.raises(PayloadError) as raised:
        parse_payload(body)
    assert reason in raised.value.reason
    assert str(raised.value) == raised.value.reason
    assert isinstance(raised.value, ValueError)


def test_maps_are_optional_and_a_null_or_odd_map_is_empty() -> None:
    payload = parse_payload(
        {
            "rules": [],
            "departmentBudgetBlocks": None,
            "departmentBudgetBlockBalances": ["not", "a", "map"],
            "departmentBudgetWarnings": "ann@example.com",
            "departmentBudgetCandidates": 12,
        }
    )
    assert payload == Payload([])


# -- older spellings ---------------------------------------------------------------

OLD_AND_NEW = [
    ("orgUnitBudgetBlocks", "departmentBudgetBlocks", "blocks", 7, 7),
    ("orgUnitBudgetBlockBalances", "departmentBudgetBlockBalances", "balances", "1.5", 1.5),
    ("orgUnitBudgetWarnings", "departmentBudgetWarnings", "warnings", 8, 8),
]


@pytest.mark.parametrize(("old", "new", "attribute", "raw", "read"), OLD_AND_NEW)
def test_the_old_spelling_is_read_when_the_new_is_absent_or_null(
    old: str, new: str, attribute: str, raw: Any, read: Any
) -> None:
    absent = parse_payload({"rules": [], old: {"ann@example.com": raw}})
    null = parse_payload({"rules": [], new: None, old: {"ann@example.com": raw}})
    assert getattr(absent, attribute) == getattr(null, attribute) == {"ann@example.com": read}


@pytest.mark.parametrize(("old", "new", "attribute", "raw", "read"), OLD_AND_NEW)
def test_the_new_spelling_wins_even_when_empty(
    old: str, new: str, attribute: str, raw: Any, read: Any
) -> None:
    both = parse_payload({"rules": [], new: {}, old: {"ann@example.com": raw}})
    assert getattr(both, attribute) == {}
    newer = parse_payload({"rules": [], new: {"bob@example.com": raw}, old: {"a@b.c": raw}})
    assert getattr(newer, attribute) == {"bob@example.com": read}


def test_candidates_have_no_old_spelling() -> None:
    payload = parse_payload(
        {"rules": [], "orgUnitBudgetCandidates": {"a@b.c": [{"ruleId": 1, "tier": "BLOCK"}]}}
    )
    assert payload.candidates == {}


# -- keys and numbers --------------------------------------------------------------


def test_map_keys_are_normalized_emails_and_the_first_key_wins() -> None:
    payload = parse_payload(
        {
            "rules": [],
            "departmentBudgetBlocks": {" Ann@Example.COM ": 1, "ann@example.com": 2, 5: 3},
            "departmentBudgetBlockBalances": {"ANN@example.com": "bad", "ann@example.com ": 4},
        }
    )
    assert payload.blocks == {"ann@example.com": 1}
    # An unusable balance is dropped before the first-key rule, so the usable one stays.
    assert payload.balances == {"ann@example.com": 4.0}


@pytest.mark.parametrize(
    ("raw", "balance"),
    [
        (12, 12.0),
        (-3.5, -3.5),
        ("42.5", 42.5),
        ("1E+2", 100.0),
        (" 7 ", 7.0),
        ("0", 0.0),
    ],
)
def test_a_balance_may_be_a_number_or_a_numeric_string(raw: Any, balance: float) -> None:
    payload = parse_payload({"rules": [], "departmentBudgetBlockBalances": {"a@b.c": raw}})
    assert payload.balances == {"a@b.c": balance}


@pytest.mark.parametrize(
    "raw", [None, True, False, "NaN", "Infinity", "-inf", "1e400", 10**400, "ten", [], {}]
)
def test_a_balance_that_is_not_a_finite_number_is_dropped(raw: Any) -> None:
    payload = parse_payload({"rules": [], "departmentBudgetBlockBalances": {"a@b.c": raw}})
    assert payload.balances == {}


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        (500, 500.0),
        ("500", 500.0),
        ("512.40", 512.4),
        ("-1", -1.0),
        (True, 1.0),  # float(True), as the reference reads it
        ("nan", math.nan),
        (None, None),
        ("five", None),
        ([500], None),
        ({"value": 500}, None),
        (10**400, None),
    ],
)
def test_coerce_float_reads_the_wire_numbers_as_the_reference_does(raw: Any, number: Any) -> None:
    result = coerce_float(raw)
    if number is not None and math.isnan(number):
        assert result is not None and math.isnan(result)
    else:
        assert result == number


# -- candidates --------------------------------------------------------------------


def candidates(items: Any) -> dict[str, list[Candidate]]:
    return parse_payload({"rules": [], "departmentBudgetCandidates": {"a@b.c": items}}).candidates


def test_a_candidate_is_read_with_its_tier_trimmed_and_upper_cased() -> None:
    assert candidates([{"ruleId": 7, "tier": " warn ", "departmentId": 3, "balance": 1}]) == {
        "a@b.c": [Candidate(7, "WARN", 3, 1.0)]
    }


def test_a_candidate_without_department_or_balance_keeps_them_unknown() -> None:
    assert candidates([{"ruleId": 7, "tier": "BLOCK"}]) == {
        "a@b.c": [Candidate(7, "BLOCK", None, None)]
    }
    odd = {"ruleId": 7, "tier": "BLOCK", "departmentId": "3", "balance": "NaN"}
    assert candidates([odd]) == {"a@b.c": [Candidate(7, "BLOCK", None, None)]}


@pytest.mark.parametrize(
    "item",
    [
        "junk",
        None,
        {"tier": "BLOCK"},
        {"ruleId": "7", "tier": "BLOCK"},
        {"ruleId": True, "tier": "BLOCK"},
        {"ruleId": 7.0, "tier": "BLOCK"},
        {"ruleId": 7},
        {"ruleId": 7, "tier": "NOTIFY"},
        {"ruleId": 7, "tier": 1},
    ],
)
def test_a_malformed_candidate_is_dropped_alone(item: Any) -> None:
    good = {"ruleId": 8, "tier": "BLOCK"}
    assert candidates([item, good]) == {"a@b.c": [Candidate(8, "BLOCK", None, None)]}
    assert candidates([item]) == {}  # a person left with no candidate is dropped


@pytest.mark.parametrize("items", [None, "BLOCK", {"ruleId": 7, "tier": "BLOCK"}, 7])
def test_candidates_that_are_not_a_list_are_none(items: Any) -> None:
    assert candidates(items) == {}


def test_candidate_order_is_kept_and_round_trips_to_the_wire() -> None:
    wire = [
        {"ruleId": 2, "tier": "WARN", "departmentId": 1, "balance": 3.5},
        {"ruleId": 1, "tier": "BLOCK", "departmentId": None, "balance": None},
    ]
    assert [c.to_wire() for c in candidates(wire)["a@b.c"]] == wire


# -- rules inside a payload --------------------------------------------------------


def test_malformed_rules_are_dropped_alone_when_the_payload_is_installed(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true"})
    good = make_rule(9, "still-enforced", breached=True, window_end="2099-01-01T00:00:00Z")
    junk: list[Any] = ["a string", 42, None, [], {"name": "no id"}, {"ruleId": {"odd": 1}}]
    engine.load_payload({"rules": [*junk, good]})
    with pytest.raises(BudgetExceededError) as raised:
        engine.check({}, model="gpt-4o", provider="openai")
    assert raised.value.rule_id == 9


def test_the_rules_fingerprint_is_the_contracts_digest() -> None:
    rules = [{"ruleId": 2, "name": "b", "threshold": "1.5"}, {"name": "ä", "ruleId": 1}]
    canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"))
    assert rules_fingerprint(rules) == hashlib.sha256(canonical.encode()).hexdigest()
    assert rules_fingerprint(list(reversed(rules))) != rules_fingerprint(rules)


def test_normalize_email_trims_and_lower_cases_simply() -> None:
    assert normalize_email("  Dev@Example.COM\t") == "dev@example.com"
    assert normalize_email("STRASSE@ß.de") == "strasse@ß.de"  # lower(), not casefold()


# -- properties --------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
MAP_NAMES = st.sampled_from(
    [
        "rules",
        "departmentBudgetBlocks",
        "orgUnitBudgetBlocks",
        "departmentBudgetBlockBalances",
        "orgUnitBudgetBlockBalances",
        "departmentBudgetWarnings",
        "orgUnitBudgetWarnings",
        "departmentBudgetCandidates",
    ]
)


@given(JSON | st.dictionaries(MAP_NAMES, JSON) | st.lists(JSON))
def test_any_body_is_a_payload_or_a_payload_error(body: Any) -> None:
    try:
        payload = parse_payload(body)
    except PayloadError as error:
        assert error.reason
        return
    assert isinstance(payload.rules, list)
    for mapping in (payload.blocks, payload.balances, payload.warnings, payload.candidates):
        assert all(key == normalize_email(key) for key in mapping)
    assert all(math.isfinite(value) for value in payload.balances.values())
    assert all(
        people and all(c.tier in ("BLOCK", "WARN") for c in people)
        for people in payload.candidates.values()
    )


def test_the_rules_text_a_payload_carries_is_not_part_of_its_identity() -> None:
    kept = parse_payload({"rules": [{"ruleId": 1}]}, '[{"ruleId":1}]')
    assert kept.rules_text == '[{"ruleId":1}]'
    assert kept == parse_payload({"rules": [{"ruleId": 1}]})
    assert parse_payload([{"ruleId": 1}], "[1]").rules_text == "[1]"


def test_payloads_with_the_same_rules_text_are_equal_without_comparing_the_rules() -> None:
    # The same text decodes to the same rules: 10,000 of them are not compared again.
    assert Payload([1], rules_text="[1]") == Payload([2], rules_text="[1]")
    assert Payload([1], rules_text="[1]") != Payload([1], {"a@b.c": 1}, rules_text="[1]")
    assert Payload([1], rules_text="[1]") == Payload([1], rules_text="[ 1 ]") == Payload([1])
    assert Payload([1]) != Payload([2]) and Payload([1]) != [1]
