"""Large rules arrays kept encoded once compiled: exact, equal where lists are, out of gc's way.

Unit tests of enforcement._packed, then real engines taking in real bodies:
the rules an engine holds read back exactly as served, every verdict and
account stays, and a 10,000-rule set leaves the collector next to nothing
to track (counted with ``gc.get_objects``, not timed).
"""

from __future__ import annotations

import gc
import json
import math
from typing import Any

import pytest

from enforcement import BudgetExceededError, Engine
from enforcement._packed import PACK_OVER, PackedRules, packed
from enforcement._wire import Payload, same_rules

ENVIRON = {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}


def rule(i: int, *, breached: bool = False, org: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ruleId": i,
        "name": f"rule-{i}",
        "metricType": "TOTAL_COST",
        "operatorType": "GREATER_THAN_OR_EQUAL_TO",
        "threshold": "500.00",
        "currentValue": "512.5" if breached else "12.5",
        "breached": breached,
        "filters": [],
        "shadowMode": False,
        "action": "BLOCK",
    }
    if org is not None:
        body["filters"] = [
            {"dimension": "MODEL", "operator": "IS", "value": f"model-{i % 7}"},
            {"dimension": "ORGANIZATION", "operator": "IS", "value": org},
        ]
    return body


def many(count: int = 2 * PACK_OVER) -> list[dict[str, Any]]:
    return [rule(i, org=f"org-{i}" if i % 2 else None) for i in range(1, count + 1)]


ODD_VALUES: list[Any] = [
    {"b": 1, "a": [1.5, -0.0, None, True, False], "c": {"nested": ["x", {"y": 2**80}]}},
    float("inf"),
    -float("inf"),
    "text with \u00e9 and \U0001f600 and \ud800",  # a lone surrogate, as surrogatepass decodes
    [],
    {},
    0,
    None,
]


def test_values_come_back_exactly_in_their_key_order() -> None:
    rules = PackedRules(ODD_VALUES)
    assert list(rules) == ODD_VALUES == rules[:]
    assert [type(value) for value in rules] == [type(value) for value in ODD_VALUES]
    assert list(rules[0]) == ["b", "a", "c"]
    assert math.copysign(1.0, rules[0]["a"][1]) == -1.0  # -0.0 stays negative
    assert rules[-1] is None and len(rules) == len(ODD_VALUES)


def test_nan_comes_back_as_nan() -> None:
    assert math.isnan(PackedRules([float("nan")])[0])


def test_each_read_is_a_copy() -> None:
    rules = PackedRules([{"filters": []}])
    rules[0]["filters"].append("changed")
    assert rules[0] == {"filters": []}


def test_equal_where_the_lists_are() -> None:
    first, second = many(), many()
    assert PackedRules(first) == PackedRules(second) == first
    assert same_rules(PackedRules(first), PackedRules(second))
    second[-1]["currentValue"] = "13"
    assert PackedRules(first) != PackedRules(second) and PackedRules(first) != second
    assert not same_rules(PackedRules(first), second)
    assert PackedRules(first) != PackedRules(first[:-1])


def test_different_bytes_of_equal_rules_are_still_equal() -> None:
    # 1 and 1.0 (and True) are equal as == has it, and pack to different bytes.
    assert PackedRules([{"threshold": 1}]) == PackedRules([{"threshold": 1.0}])
    assert PackedRules([{"threshold": True}]) == [{"threshold": 1}]
    assert PackedRules([{"threshold": 1}]) != PackedRules([{"threshold": 2}])


def test_only_large_arrays_of_plain_values_are_packed() -> None:
    small = many(PACK_OVER - 1)
    assert packed(small) is small
    large = many()
    assert isinstance(packed(large), PackedRules)

    class Text(str):
        pass

    own = [*many(), {"name": Text("a str subclass marshal would not give back")}]
    assert packed(own) is own


def test_a_packed_array_tracks_one_container() -> None:
    rules = PackedRules(many())
    assert not gc.is_tracked(rules._blobs[0])
    assert sum(gc.is_tracked(blob) for blob in rules._blobs) == 0


def test_payload_equality_across_packed_and_decoded() -> None:
    decoded = Payload(many(), {"a@b.c": {"ruleId": 1}})
    assert decoded.packed() == decoded == Payload(many(), {"a@b.c": {"ruleId": 1}}).packed()
    assert decoded.packed().blocks is decoded.blocks  # the maps are shared, not copied
    assert decoded.packed() != Payload(many()).packed()
    small = Payload([rule(1)])
    assert small.packed() is small


# -- real engines ---------------------------------------------------------------------


def body(rules: list[dict[str, Any]]) -> bytes:
    return json.dumps({"rules": rules}).encode()


def test_an_engine_holds_a_large_set_encoded_and_reads_it_back_exactly() -> None:
    rules = many()
    rules[-1] = rule(len(rules), breached=True, org="org-hot")
    with Engine(environ=ENVIRON) as engine:
        engine.load_payload(body(rules))
        ruleset = engine._ruleset
        assert ruleset is not None and isinstance(ruleset.payload.rules, PackedRules)
        assert engine.rules() == rules
        model = f"model-{len(rules) % 7}"
        with pytest.raises(BudgetExceededError):
            engine.check({"organizationName": "org-hot"}, model=model, provider="openai")
        engine.check({"organizationName": "org-cold"}, model=model, provider="openai")
        # Local spend's index was built at the install, from the decoded rules.
        assert ruleset._accruals is not None
        accounts = ruleset.accounts(_facts({"organizationName": "org-3"}, "model-3"), 0.0)
        positions = {account.rule.position for account in accounts}
        assert 2 in positions and 4 not in positions  # org-3's rule, not org-5's
        assert all(position % 2 for position in positions - {2})  # the rest: unfiltered rules


def _facts(metadata: dict[str, Any], model: str) -> Any:
    from enforcement._callfacts import CallFacts

    return CallFacts(metadata, model, "openai")


def test_a_body_taken_in_by_hand_leaves_no_decoded_rule_behind() -> None:
    rules = many()
    with Engine(environ=ENVIRON) as engine:
        retirer = engine._refresher._retirer
        engine.load_payload(body(rules))
        engine.load_payload(body([*rules, rule(len(rules) + 1)]))
        assert len(retirer) == 0  # the decoded rules and the replaced set: taken apart
        kept = json.loads(body(rules))
        engine.load_payload(kept)  # decoded rules the caller keeps are the caller's own
        assert kept["rules"] == rules and len(retirer) == 0  # left whole, to the caller


def test_ten_thousand_rules_leave_the_collector_almost_nothing_to_track() -> None:
    rules = many(10_000)
    with Engine(environ=ENVIRON) as engine:
        engine.load_payload(body(rules[:10]))
        gc.collect()
        before = len(gc.get_objects())
        engine.load_payload(body(rules))
        gc.collect()
        added = len(gc.get_objects()) - before
        assert engine._ruleset is not None and engine._ruleset.count == 10_000
    assert added < 1_000  # decoded and indexed as before, this was 50,000
    assert gc.isenabled()


def test_the_same_text_reuses_the_rules_held_instead_of_encoding_them_again() -> None:
    held = Payload(many(), rules_text="[the text]").packed()
    again = Payload(many(), {"a@b.c": {"ruleId": 1}}, rules_text="[the text]")
    assert again.packed(held).rules is held.rules and again.packed(held).blocks is again.blocks
    other = Payload(many(), rules_text="[another text]")
    assert other.packed(held).rules is not held.rules and other.packed(held) == held
