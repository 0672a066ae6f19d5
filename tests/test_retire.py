"""Replaced rule sets: freed in slices by the installer, never by whoever dropped them last.

Real engines and threads; the rules carry markers that record, when freed,
which thread freed them.
"""

from __future__ import annotations

import gc
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from enforcement import BudgetExceededError, Engine
from enforcement._retire import SLICE, Retirer
from enforcement._ruleset import RuleSet
from enforcement._wire import Payload, same_rules
from enforcement.testing import RulesServer

ENVIRON = {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}


class Marker:
    """A rules-list entry (not a rule: a rule set skips it) that records its freeing thread."""

    def __init__(self, freed_on: list[str]) -> None:
        self.freed_on = freed_on

    def __del__(self) -> None:
        self.freed_on.append(threading.current_thread().name)


def markers(freed_on: list[str], count: int = 3 * SLICE + 5) -> list[Any]:
    return [Marker(freed_on) for _ in range(count)]


@pytest.fixture
def engine() -> Iterator[Engine]:
    built = Engine(environ=ENVIRON)
    yield built
    built.close()


def test_a_rule_set_dropped_last_by_a_caller_thread_is_freed_by_the_next_install(
    engine: Engine,
) -> None:
    freed_on: list[str] = []
    engine.load_payload({"rules": markers(freed_on)})
    mid_check = [engine._ruleset]  # what a check running during the swap holds
    engine.load_payload({"rules": []})

    caller = threading.Thread(target=mid_check.clear, name="caller")
    caller.start()
    caller.join()
    assert freed_on == []  # the caller's thread did not pay for the old rules

    engine.load_payload({"rules": [{"ruleId": 1}]})
    assert len(freed_on) == 3 * SLICE + 5
    assert set(freed_on) == {threading.current_thread().name}


def test_rules_someone_still_holds_are_left_intact() -> None:
    retirer = Retirer()
    freed_on: list[str] = []
    rules = markers(freed_on)
    held_rules = rules  # a user's own dict or list still holds the rules
    retirer.retire(RuleSet(Payload(rules), 1))
    del rules
    retirer.collect()
    assert len(held_rules) == 3 * SLICE + 5 and freed_on == []
    assert len(retirer) == 0  # the rule set itself went
    del held_rules
    gc.collect()
    assert len(freed_on) == 3 * SLICE + 5


def test_a_payload_held_elsewhere_keeps_its_rule_set_waiting() -> None:
    retirer = Retirer()
    freed_on: list[str] = []
    payload = Payload(markers(freed_on))
    retirer.retire(RuleSet(payload, 1))
    assert retirer.collect() == 0
    assert len(payload.rules) == 3 * SLICE + 5 and len(retirer) == 1
    del payload
    assert retirer.collect() == 1
    assert len(freed_on) == 3 * SLICE + 5 and len(retirer) == 0


def test_a_rule_set_in_use_is_waited_for_and_still_judges() -> None:
    retirer = Retirer()
    ruleset = RuleSet(Payload([{"ruleId": 7, "breached": True}]), 1)
    retirer.retire(ruleset)
    assert retirer.collect() == 0
    assert [rule.identifier for rule in ruleset.active] == [7]
    assert ruleset.payload.rules == [{"ruleId": 7, "breached": True}]


def test_held_rule_sets_are_bounded() -> None:
    retirer = Retirer()
    keep = [RuleSet(Payload([]), generation) for generation in range(20)]
    for ruleset in keep:
        retirer.retire(ruleset)
    assert len(retirer) <= 8


def test_gc_freeze_is_opt_in() -> None:
    gc.unfreeze()
    plain = Engine(environ=ENVIRON)
    plain.load_payload({"rules": [{"ruleId": 1}]})
    assert gc.get_freeze_count() == 0
    plain.close()
    frozen = Engine(environ={**ENVIRON, "REVENIUM_CB_GC_FREEZE": "on"})
    try:
        frozen.load_payload({"rules": [{"ruleId": 1}]})
        assert frozen.settings.gc_freeze and gc.get_freeze_count() > 0
    finally:
        frozen.close()
        gc.unfreeze()


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ([], []),
        ([{"a": 1}], [{"a": 1}]),
        ([{"a": 1}], [{"a": 2}]),
        ([{"a": 1}], [{"a": 1}, {"a": 1}]),
        ([{"i": i} for i in range(3 * 256)], [{"i": i} for i in range(3 * 256)]),
        ([{"i": i} for i in range(600)], [*({"i": i} for i in range(599)), {"i": -1}]),
        ([{"i": i} for i in range(600)], [{"i": -1}, *({"i": i} for i in range(1, 600))]),
    ],
)
def test_sliced_comparison_is_list_equality(ours: list[Any], theirs: list[Any]) -> None:
    assert same_rules(ours, theirs) is (ours == theirs)


def test_sliced_comparison_keeps_identity_first() -> None:
    nan = {"v": math.nan}
    assert same_rules([nan] * 300, [nan] * 300) is ([nan] * 300 == [nan] * 300)


def test_each_refresh_leaves_nothing_retired_behind(
    server: RulesServer, make_engine: Callable[..., Engine], cache_dir: Path
) -> None:
    engine = make_engine(environ=server.env(REVENIUM_CACHE_DIR=str(cache_dir)))
    for generation in range(3):
        server.set_rules([{"ruleId": i, "name": f"g{generation}"} for i in range(2 * SLICE)])
        assert engine.refresh()
        assert len(engine._refresher._retirer) == 0
        assert engine.rules()[0]["name"] == f"g{generation}"
    with pytest.raises(BudgetExceededError):
        server.set_rules([{"ruleId": 1, "name": "cap", "breached": True}])
        assert engine.refresh()
        engine.check({}, model="gpt-4o")


def test_a_rule_set_with_its_accrual_index_is_taken_apart(engine: Engine) -> None:
    """The accrual index (built after each install by the poller) refers to the payload too."""
    freed_on: list[str] = []
    engine.load_payload({"rules": markers(freed_on)})
    ruleset = engine._ruleset
    assert ruleset is not None
    ruleset.prepare_accounts()
    del ruleset
    engine.load_payload({"rules": []})
    engine._refresher._retirer.collect()  # what the poller does after each refresh
    assert len(freed_on) == 3 * SLICE + 5
    assert len(engine._refresher._retirer) == 0
