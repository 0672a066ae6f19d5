"""Local spend through the engine (CONTRACT §9): holds, settlements, refusals, cut-offs.

The rules come from a real server on 127.0.0.1; the hooks' side (what a
provider reports it used) is played by calling :meth:`Engine.begin` and
settling, as the hook kit does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcement import BudgetExceededError, Engine
from enforcement._prices import PriceTable
from enforcement._usage import Estimate, Usage
from enforcement.testing import RulesServer, make_rule

MODEL = "gpt-4o-mini"
PRICES = {MODEL: {"input": 0.15, "output": 0.60}}  # dollars per million tokens
CALL = Usage(20_000, 11_667)  # $0.0100002 at these prices
WORST = Estimate(20_000, 11_667)


@pytest.fixture
def server() -> Iterator[RulesServer]:
    with RulesServer() as running:
        running.set_rules([make_rule(1, "dollar cap", threshold=1.0, current_value=0.0)])
        yield running


def build(server: RulesServer, cache_dir: Optional[Path] = None, **env: str) -> Engine:
    environ = {
        **server.env(),
        "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
        "REVENIUM_CACHE_DIR": str(cache_dir) if cache_dir else "off",
        **env,
    }
    engine = Engine(environ=environ, prices=PriceTable(overrides=PRICES, use_table=False))
    assert engine.refresh()
    return engine


def run(engine: Engine, calls: int, **metadata: Any) -> int:
    """Admitted calls, each settled with its usage, until one is refused."""
    for admitted in range(calls):
        try:
            spend = engine.begin(
                metadata or None, model=MODEL, provider="openai", estimate=lambda: WORST
            )
        except BudgetExceededError:
            return admitted
        assert spend is not None
        spend.settle(CALL)
    return calls


def test_a_runaway_loop_stops_at_the_cap(server: RulesServer) -> None:
    with build(server) as engine:
        assert run(engine, 500) == 99  # the 100th would reach $1.00: breached under >=
        with pytest.raises(BudgetExceededError) as refused:
            engine.begin(model=MODEL, provider="openai", estimate=lambda: WORST)
        error = refused.value
        assert error.source == "local"
        assert error.rule_id == 1 and error.rule_name == "dollar cap"
        assert "dollar cap" in str(error) and "local spend" in str(error)
        assert error.threshold == 1.0 and error.current_value == pytest.approx(1.0, abs=1e-3)
        engine.check(model=MODEL, provider="openai")  # $0.99: not breached yet
        stats = engine.stats()
        assert stats["blocked_local"] == 2 and stats["settled"] == 99
        spend = engine.status().local_spend
        assert spend is not None and spend["ledger"] == "process"
        assert spend["rules"][0]["rule_id"] == 1
        assert spend["rules"][0]["local"] == pytest.approx(0.99, abs=1e-3)


def test_a_call_that_costs_more_than_its_hold_counts_what_it_cost(server: RulesServer) -> None:
    with build(server) as engine:
        spend = engine.begin(model=MODEL, provider="openai", estimate=lambda: Estimate(0, 0))
        assert spend is not None
        spend.settle(Usage(7_000_000, 0))  # $1.05: the estimate was far short
        with pytest.raises(BudgetExceededError) as refused:  # a plain check sees it
            engine.check(model=MODEL, provider="openai")
        assert refused.value.source == "local"


def test_a_released_hold_gives_its_room_back(server: RulesServer) -> None:
    with build(server) as engine:
        held = [
            engine.begin(model=MODEL, provider="openai", estimate=lambda: Estimate(0, 1_000_000))
            for _ in range(1)
        ]  # $0.60 held
        with pytest.raises(BudgetExceededError):
            engine.begin(model=MODEL, provider="openai", estimate=lambda: Estimate(0, 1_000_000))
        for spend in held:
            assert spend is not None
            spend.settle(None)  # the call failed: nothing was spent
        spend = engine.begin(
            model=MODEL, provider="openai", estimate=lambda: Estimate(0, 1_000_000)
        )
        assert spend is not None
        spend.settle(None)
        spend.settle(CALL)  # settling twice does nothing


def test_concurrent_holds_never_overshoot_together(server: RulesServer) -> None:
    admitted: list[Any] = []
    lock = threading.Lock()
    with build(server) as engine:

        def worker() -> None:
            for _ in range(40):
                try:
                    spend = engine.begin(model=MODEL, provider="openai", estimate=lambda: WORST)
                except BudgetExceededError:
                    return
                with lock:
                    admitted.append(spend)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(admitted) == 99  # held, never settled: the holds alone fill the cap


def test_a_new_payload_drops_the_spend_it_already_counts(server: RulesServer) -> None:
    with build(server) as engine:
        assert run(engine, 500) == 99
        # The control plane counted those calls: $0.50 now, compiled after them.
        time.sleep(0.25)  # spend is kept in 0.1 s slots; the one holding compiledAt counts
        server.set_rules(
            [make_rule(1, "dollar cap", threshold=1.0, current_value=0.5)], compiledAt=time.time()
        )
        assert engine.refresh()
        assert run(engine, 500) == 49


def test_spend_before_compiled_at_is_not_counted_twice_even_with_the_same_rules(
    server: RulesServer,
) -> None:
    with build(server) as engine:
        assert run(engine, 10) == 10
        time.sleep(0.25)  # spend is kept in 0.1 s slots; the one holding compiledAt counts
        server.set_rules(
            [make_rule(1, "dollar cap", threshold=1.0, current_value=0.0)], compiledAt=time.time()
        )
        assert engine.refresh()
        assert run(engine, 500) == 99


def test_accrual_off_leaves_the_verdict_to_the_server(server: RulesServer) -> None:
    with build(server, REVENIUM_CB_LOCAL_ACCRUAL="off") as engine:
        for _ in range(200):
            assert engine.begin(model=MODEL, provider="openai", estimate=lambda: WORST) is None
        assert engine.status().local_spend is None


def test_a_grouped_rule_accrues_to_the_callers_own_entry(server: RulesServer) -> None:
    server.set_rules(
        [
            make_rule(
                1,
                "per subscriber",
                threshold=0.05,
                group_by="SUBSCRIBER",
                group_breakdown=[{"groupValue": "alice", "currentValue": 0.0}],
            )
        ]
    )
    with build(server) as engine:
        assert run(engine, 50, subscriber={"id": "alice"}) == 4
        assert run(engine, 50, subscriber={"id": "bob"}) == 4  # bob has his own entry
        engine.check({"subscriber": {"id": "carol"}}, model=MODEL, provider="openai")


def test_shadow_and_warn_only_rules_never_refuse(server: RulesServer) -> None:
    server.set_rules(
        [
            make_rule(1, "shadow cap", threshold=0.05, shadow_mode=True),
            make_rule(2, "warn cap", threshold=0.05, action="WARN_ONLY"),
        ]
    )
    heard: list[Any] = []
    with build(server) as engine:
        engine.add_listener(heard.append)
        assert run(engine, 20) == 20
        assert engine.flush_listeners()
    assert {(d.kind, d.source) for d in heard} == {("shadow", "local"), ("warn_only", "local")}
    # Once over locally, each call reports each rule once (from $0.05: calls 5 to 20).
    assert sorted(d.kind for d in heard).count("shadow") == 16


def test_the_host_ledger_is_used_when_there_is_a_cache_directory(
    server: RulesServer, cache_dir: Path
) -> None:
    with build(server, cache_dir) as first, build(server, cache_dir) as second:
        assert run(first, 60) == 60
        assert run(second, 500) <= 40  # the second process sees the first one's spend
        spend = second.status().local_spend
        assert spend is not None and spend["ledger"] == "host"


def test_an_unpriced_model_holds_nothing_but_still_counts_requests(server: RulesServer) -> None:
    server.set_rules([make_rule(1, "calls", threshold=3, metric_type="REQUEST_COUNT")])
    with build(server) as engine:
        for _ in range(2):
            spend = engine.begin(model="unknown-model", provider="openai")
            assert spend is not None
            spend.settle(Usage(10, 10))
        with pytest.raises(BudgetExceededError):
            engine.begin(model="unknown-model", provider="openai")


# --------------------------------------------------------------------------- only adds refusals

SUBSCRIBERS = ("alice", "bob", "carol")


@st.composite
def rule_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    rules = []
    for rule_id in range(1, draw(st.integers(1, 4)) + 1):
        grouped = draw(st.booleans())
        rules.append(
            make_rule(
                rule_id,
                f"rule {rule_id}",
                breached=draw(st.booleans()),
                threshold=draw(st.sampled_from([0.02, 0.05, 1.0])),
                current_value=draw(st.sampled_from([0.0, 0.01, 0.04])),
                action=draw(st.sampled_from(["BLOCK", "WARN_ONLY"])),
                shadow_mode=draw(st.booleans()),
                metric_type=draw(st.sampled_from(["TOTAL_COST", "REQUEST_COUNT", "ODD"])),
                group_by="SUBSCRIBER" if grouped else None,
                group_breakdown=[
                    {"groupValue": name, "currentValue": 0.01, "breached": draw(st.booleans())}
                    for name in SUBSCRIBERS[: draw(st.integers(0, 2))]
                ]
                if grouped
                else None,
            )
        )
    return rules


@settings(max_examples=40, deadline=None)
@given(rules=rule_sets(), calls=st.lists(st.sampled_from(SUBSCRIBERS), min_size=1, max_size=12))
def test_local_spend_only_ever_adds_refusals(rules: list[dict[str, Any]], calls: list[str]) -> None:
    """Whatever the server says, accrual on refuses at least what accrual off refuses."""
    environ = {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}
    prices = PriceTable(overrides=PRICES, use_table=False)
    with (
        Engine(environ=environ, prices=prices) as on,
        Engine(environ={**environ, "REVENIUM_CB_LOCAL_ACCRUAL": "off"}) as off,
    ):
        on.load_payload(rules)
        off.load_payload(rules)
        for subscriber in calls:
            metadata = {"subscriber": {"id": subscriber}}
            try:
                off.check(metadata, model=MODEL, provider="openai")
                server_refuses = False
            except BudgetExceededError:
                server_refuses = True
            try:
                spend = on.begin(metadata, model=MODEL, provider="openai", estimate=lambda: WORST)
            except BudgetExceededError:
                continue
            assert not server_refuses, "accrual let through a call the server refuses"
            if spend is not None:
                spend.settle(CALL)
