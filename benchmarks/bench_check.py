"""The check's hot path, ours and the reference SDK's, side by side.

    python benchmarks/bench_check.py [--quick]

Both sides are driven through their public module function
(``check_enforcement``), read the same ``os.environ`` and load the same rules
from the same snapshot files: each scenario gets its own team id, and both
libraries drop the previous team's rules and read the new team's snapshot on
the next call. Neither fetches anything (no API key). Medians of interleaved
rounds; the ratio is reference / ours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import timeit
import warnings
from collections.abc import Mapping
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import Result, calibrate, compare, fmt_ns, per_call_ns, print_table

import enforcement
from enforcement import BudgetExceededError
from enforcement._default import _default
from enforcement._mirror import Mirror
from enforcement._wire import parse_payload

BASE = "http://127.0.0.1:9"
FUTURE = "2099-12-31T23:59:59.999999999Z"
CALLER = {
    "subscriber": {"id": "user-42", "email": "dev@example.com"},
    "organizationName": "acme",
    "productName": "chat",
    "agent": "support-bot",
}


def rule(i: int, *, breached: bool = False, filtered: bool = False, **extra: Any) -> dict[str, Any]:
    """A rule shaped like the control plane's, optionally with realistic filters."""
    body: dict[str, Any] = {
        "ruleId": i,
        "teamId": 1,
        "name": f"rule-{i}",
        "metricType": "TOTAL_COST",
        "operatorType": "GREATER_THAN_OR_EQUAL_TO",
        "threshold": "500.00",
        "currentValue": "512.5" if breached else "12.5",
        "periodType": "DAILY",
        "windowStart": "2026-11-23T00:00:00Z",
        "windowEnd": FUTURE,
        "percentUsed": 2.5,
        "breached": breached,
        "groupBy": None,
        "filters": [],
        "compiledAt": 1776829860.156,
        "shadowMode": False,
        "action": "BLOCK",
        "denyMessage": None,
    }
    if filtered:
        body["filters"] = [
            {"dimension": "MODEL", "operator": "IS", "value": f"model-{i % 97}"},
            {"dimension": "ORGANIZATION", "operator": "IS", "value": f"org-{i}"},
        ]
    body.update(extra)
    return body


def write_snapshot(cache_dir: str, team: str, payload: Any) -> None:
    parsed = parse_payload(payload)
    Mirror(cache_dir, BASE, team).save(parsed, etag=None, fetched_at=time.time())


class Sides:
    """Both libraries in this process, pointed at one cache directory."""

    def __init__(self, cache_dir: str) -> None:
        self.cache_dir = cache_dir
        os.environ.update(
            {
                "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
                "REVENIUM_CACHE_DIR": cache_dir,
                "REVENIUM_ENFORCEMENT_BASE_URL": BASE,
            }
        )
        for name in ("REVENIUM_METERING_API_KEY", "REVENIUM_BYPASS", "REVENIUM_CB_FAIL_MODE"):
            os.environ.pop(name, None)
        warnings.simplefilter("ignore")
        from revenium_middleware._core import enforcement as reference

        self.reference_module = reference
        self.ours: Callable[..., None] = enforcement.check_enforcement
        self.reference: Callable[..., None] = reference.check_enforcement
        self._teams = 0

    def load(self, payload: Any, warm: bool = True) -> None:
        """Serve ``payload`` to both under a fresh team id, and (``warm``) load it into both."""
        self._teams += 1
        team = f"bench-{self._teams}"
        write_snapshot(self.cache_dir, team, payload)
        os.environ["REVENIUM_TEAM_ID"] = team
        for check in (self.ours, self.reference) if warm else ():
            try:
                check({}, model="warm-up", provider="openai")
            except Exception:
                pass

    def close(self) -> None:
        self.reference_module.stop_polling()
        enforcement.stop_polling()


def calling(
    check: Callable[..., None],
    metadata: Optional[Mapping[str, Any]] = CALLER,
    model: str = "gpt-4o",
) -> Callable[[], None]:
    def call() -> None:
        try:
            check(metadata, model=model, provider="openai")
        except Exception:
            pass

    return call


def pair(
    sides: Sides,
    name: str,
    rounds: int,
    metadata: Optional[Mapping[str, Any]] = CALLER,
    model: str = "gpt-4o",
) -> Result:
    return compare(
        name,
        calling(sides.ours, metadata, model),
        calling(sides.reference, metadata, model),
        rounds=rounds,
    )


def grouped(entries: int, caller_at: Optional[str]) -> dict[str, Any]:
    breakdown = [
        {
            "groupValue": f"user-{i}",
            "displayName": f"User {i}",
            "currentValue": 10.0,
            "usagePercent": 2.0,
            "breached": True,
        }
        for i in range(entries)
    ]
    caller = {"groupValue": "user-42", "currentValue": 1.0, "usagePercent": 0.1, "breached": False}
    breakdown = [e for e in breakdown if e["groupValue"] != "user-42"]
    if caller_at == "first":
        breakdown.insert(0, caller)
    elif caller_at == "last":
        breakdown.append(caller)
    return {"rules": [rule(1, breached=True, groupBy="SUBSCRIBER", groupBreakdown=breakdown)]}


def departments(people: int, warned: Optional[str] = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "rules": [rule(1, departmentId=3, breached=True), rule(2, departmentId=4), rule(3)],
        "departmentBudgetBlocks": {f"person-{i}@example.com": 1 for i in range(people)},
        "departmentBudgetBlockBalances": {f"person-{i}@example.com": 600.0 for i in range(people)},
    }
    if warned is not None:
        payload["departmentBudgetWarnings"] = {warned: 2}
        payload["departmentBudgetBlockBalances"][warned] = 450.0
    return payload


def steady_grouped(entries: int, breached_share: float = 0.01) -> dict[str, Any]:
    """A grouped rule over ``entries`` subscribers, some over, the caller among the rest."""
    every = max(1, round(1 / breached_share))
    breakdown = [
        {
            "groupValue": f"user-{i}",
            "currentValue": 520.0 if i % every == 1 else 10.0,
            "usagePercent": 2.0,
            "breached": i % every == 1,
        }
        for i in range(entries)
    ]
    assert not breakdown[42]["breached"]
    return {"rules": [rule(1, breached=True, groupBy="SUBSCRIBER", groupBreakdown=breakdown)]}


def steady_pooled(count: int) -> dict[str, Any]:
    """Tripped pooled rules, each filtered to an organization and product the caller is not."""
    filters = [
        [
            {"dimension": "ORGANIZATION", "operator": "IS", "value": f"org-{i}"},
            {"dimension": "PRODUCT", "operator": "IN", "values": [f"product-{i}", "other"]},
        ]
        for i in range(count)
    ]
    return {"rules": [rule(i + 1, breached=True, filters=f) for i, f in enumerate(filters)]}


QUIET_COUNTS = (0, 10, 100, 1000, 10000)
STEADY = (
    "steady: grouped 10,000 entries, 1% breached, caller not",
    "steady: department maps of 100,000, caller absent",
    "steady: department maps of 100,000, caller warn tier",
    "steady: 100 tripped pooled rules, other orgs/products",
)


def run(quick: bool) -> list[Result]:
    rounds = 5 if quick else 15
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as cache_dir:
        sides = Sides(cache_dir)
        for count in QUIET_COUNTS:
            sides.load({"rules": [rule(i) for i in range(1, count + 1)]})
            results.append(pair(sides, f"allow, {count} rules", 3 if count >= 1000 else rounds))
        sides.load({"rules": [rule(i, filtered=True) for i in range(1, 1001)]})
        results.append(pair(sides, "allow, 1000 rules with filters", 3))
        for count in (0, 10, 100, 1000, 10000):
            rules = [rule(i) for i in range(1, count)] + [rule(count, breached=True)]
            sides.load({"rules": rules})
            results.append(
                pair(
                    sides,
                    f"block, {count or 1} rules (last breached)",
                    3 if count >= 1000 else rounds,
                )
            )
        results.extend(steady_state(sides, rounds))
        for where in ("first", "last", None):
            sides.load(grouped(10000, where))
            results.append(
                pair(sides, f"grouped 10,000 entries, caller {where or 'absent'}", rounds)
            )
        sides.load(departments(100_000))
        results.append(pair(sides, "department maps of 100,000 emails, caller absent", 3))
        results.append(
            pair(
                sides,
                "department maps of 100,000, caller blocked",
                3,
                {"subscriber": {"email": "person-7@example.com"}},
            )
        )
        sides.load({"rules": [rule(i) for i in range(1, 1001)]})
        os.environ["REVENIUM_BYPASS"] = "true"
        results.append(pair(sides, "bypass on (1000 rules)", rounds))
        del os.environ["REVENIUM_BYPASS"]
        os.environ["REVENIUM_CIRCUIT_BREAKER_ENABLED"] = "false"
        results.append(pair(sides, "disabled", rounds))
        os.environ["REVENIUM_CIRCUIT_BREAKER_ENABLED"] = "true"
        results.append(_async_check(sides, rounds))
        sides.close()
    results.extend(accounts_rows(rounds))
    results.extend(gate_rows(rounds))
    return results


def steady_state(sides: Sides, rounds: int) -> list[Result]:
    """Someone is always over a cap in production; the caller is not."""
    grouped_name, absent_name, warned_name, pooled_name = STEADY
    sides.load(steady_grouped(10_000))
    results = [pair(sides, grouped_name, rounds)]
    sides.load(departments(100_000, warned="dev@example.com"))
    results.append(pair(sides, absent_name, 3, {**CALLER, "subscriber": {"id": "user-42"}}))
    results.append(pair(sides, warned_name, 3))
    sides.load(steady_pooled(100))
    results.append(pair(sides, pooled_name, rounds))
    return results


def accounts_rows(rounds: int) -> list[Result]:
    """Local accrual's lookup as ``Engine.begin`` makes it: 10 rules against 10,000.

    ``RuleSet.may_accrue`` on the raw metadata first, then a ``CallFacts`` and
    ``RuleSet.accounts`` only when some rule may cover the call. Two rules
    cover the caller, or (the usual case) none of 10,000 does; the last row
    is that caller without the gate, for comparison.
    """
    from enforcement._ruleset import RuleSet

    results = []
    for count in (10, 10_000):
        rules = [rule(i, filters=[_org(f"org-{i}")]) for i in range(1, count - 1)] + [
            rule(count - 1, filters=[_org("acme")]),
            rule(count),
        ]
        ruleset = RuleSet(parse_payload({"rules": rules}), 1)
        ruleset.prepare_accounts()
        lookup = _accrual_lookup(ruleset.may_accrue, ruleset.accounts)
        assert len(lookup()) == 2
        name = f"accounts(): {count:,} pooled rules, caller covered by 2"
        results.append(compare(name, lookup, None, rounds))
    ruleset = RuleSet(
        parse_payload({"rules": [rule(i, filters=[_org(f"org-{i}")]) for i in range(1, 10_001)]}), 1
    )
    ruleset.prepare_accounts()
    for gated, name in ((True, ACCOUNTS_NONE), (False, f"{ACCOUNTS_NONE}, no gate")):
        lookup = _accrual_lookup(ruleset.may_accrue, ruleset.accounts, gated)
        assert lookup() == ()
        results.append(compare(name, lookup, None, rounds))
    return results


def _accrual_lookup(
    may_accrue: Callable[[Any, Any, Any], bool],
    accounts: Callable[[Any, float], tuple[object, ...]],
    gated: bool = True,
) -> Callable[[], tuple[object, ...]]:
    """What ``Engine.begin`` asks a rule set (its index built) for the caller."""
    from enforcement._callfacts import CallFacts

    now = time.time()

    def lookup() -> tuple[object, ...]:
        if gated and not may_accrue(CALLER, "gpt-4o", "openai"):
            return ()
        return accounts(CallFacts(CALLER, "gpt-4o", "openai", None), now)

    return lookup


ACCOUNTS_NONE = "accounts(): 10,000 pooled rules, caller covered by none"
GATE_PAYLOADS = {
    "grouped": lambda: steady_grouped(10_000),
    "departments": lambda: departments(100_000, warned="dev@example.com"),
    "pooled": lambda: steady_pooled(100),
}


def gate_rows(rounds: int) -> list[Result]:
    """The rule set's share of a steady-state check: judged in full, against the screen.

    In full: ``may_cover``, a ``CallFacts`` and ``evaluate``; what
    ``Engine.check`` asks instead is ``RuleSet.screen``, which answers these
    callers from the raw metadata.
    """
    from enforcement._callfacts import CallFacts
    from enforcement._ruleset import PASSES, RuleSet

    absent = {**CALLER, "subscriber": {"id": "user-42"}}
    results = []
    for name, make in GATE_PAYLOADS.items():
        ruleset = RuleSet(parse_payload(make()), 1)
        caller = absent if name == "departments" else CALLER

        def today(ruleset: RuleSet = ruleset, caller: Mapping[str, Any] = caller) -> object:
            return ruleset.may_cover("gpt-4o", "openai") and ruleset.evaluate(
                CallFacts(caller, "gpt-4o", "openai", None), time.time()
            )

        def gated(ruleset: RuleSet = ruleset, caller: Mapping[str, Any] = caller) -> object:
            return ruleset.screen(caller, "gpt-4o", "openai")

        assert not today() and gated() is PASSES
        results.append(
            compare(f"rule set, steady {name}: CallFacts + evaluate", today, None, rounds)
        )
        results.append(compare(f"rule set, steady {name}: screen", gated, None, rounds))
    return results


def prepare_accounts_ms() -> float:
    """``RuleSet.prepare_accounts()`` on 10,000 filtered rules: median of 5, in ms."""
    from enforcement._ruleset import RuleSet

    payload = parse_payload({"rules": [rule(i, filtered=i % 2 == 0) for i in range(1, 10_001)]})
    times = []
    for _ in range(5):
        ruleset = RuleSet(payload, 1)
        started = time.perf_counter()
        ruleset.prepare_accounts()
        times.append(time.perf_counter() - started)
    return sorted(times)[2] * 1e3


def _org(name: str) -> dict[str, str]:
    return {"dimension": "ORGANIZATION", "operator": "IS", "value": name}


def _async_check(sides: Sides, rounds: int) -> Result:
    """``acheck_enforcement`` awaited in a running loop vs the reference's sync check there."""
    sides.load({"rules": [rule(i) for i in range(1, 101)]})
    loop = asyncio.new_event_loop()

    async def ours_batch(n: int) -> None:
        for _ in range(n):
            await enforcement.acheck_enforcement(CALLER, model="gpt-4o", provider="openai")

    async def reference_batch(n: int) -> None:
        for _ in range(n):
            sides.reference(CALLER, model="gpt-4o", provider="openai")

    def batched(coro: Callable[[int], Any]) -> Callable[[], None]:
        return lambda: loop.run_until_complete(coro(1000))

    result = compare(
        "acheck in an event loop, 100 rules (x1000)",
        batched(ours_batch),
        batched(reference_batch),
        rounds=rounds,
    )
    loop.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    results = run(args.quick)
    print_table(results)
    summarize({r.name: r for r in results})
    print_interleaved(10 if args.quick else 30)


def print_interleaved(rounds: int) -> None:
    """The steady rows against the quiet one, each round timing every scenario in turn.

    On a shared machine the rows of the table above are seconds apart and one
    quiet row moves 2x between runs; here a noisy moment slows every scenario
    of its round alike, so the ratios are the ones to read. One engine per
    scenario (no snapshot), timed two ways: ``Engine.check`` itself (the
    strict ratio: the quiet check costs little more than a call), and
    ``check_enforcement`` with that engine as the environment's default
    engine (the public function's own lookups included, as an application
    pays them).
    """
    absent = {**CALLER, "subscriber": {"id": "user-42"}}
    scenarios = {
        "quiet allow (100 untripped rules)": ({"rules": [rule(i) for i in range(1, 101)]}, CALLER),
        STEADY[0]: (steady_grouped(10_000), CALLER),
        STEADY[1]: (departments(100_000, warned="dev@example.com"), absent),
        STEADY[2]: (departments(100_000, warned="dev@example.com"), CALLER),
        STEADY[3]: (steady_pooled(100), CALLER),
    }
    engines, calls = {}, {}
    for name, (payload, caller) in scenarios.items():
        engine = enforcement.Engine(environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true"})
        engine.load_payload(payload)
        engines[name] = engine
        calls[name, "Engine.check"] = calling(engine.check, caller)
        calls[name, "check_enforcement"] = calling(enforcement.check_enforcement, caller)
    batches = {}
    for (name, way), call in calls.items():
        _as_default(engines[name])
        batches[name, way] = calibrate(call, 5e6)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for (name, way), call in calls.items():
            _as_default(engines[name])
            times[name, way].append(per_call_ns(call, batches[name, way]))
    _as_default(None)
    for engine in engines.values():
        engine.close()
    quiet_name = next(iter(scenarios))
    medians = {key: statistics.median(samples) for key, samples in times.items()}
    print()
    print(f"steady state interleaved, medians of {rounds} rounds (target: <= 2x quiet):")
    print(f"  {'':<56} {'Engine.check':>22} {'check_enforcement':>22}")
    for name in scenarios:
        cells = []
        for way in ("Engine.check", "check_enforcement"):
            ratio = medians[name, way] / medians[quiet_name, way]
            verdict = "" if name == quiet_name else (" yes" if ratio <= 2 else " no ")
            cells.append(f"{fmt_ns(medians[name, way]):>9} {ratio:5.2f}x{verdict:<4}")
        print(f"  {name:<56} {cells[0]:>22} {cells[1]:>22}")


def _as_default(engine: Optional[enforcement.Engine]) -> None:
    """``engine`` as the default engine built for this environment: not pinned.

    ``set_default_engine`` pins (a cheaper path than an application's) and
    closes the engine it replaces, so the benchmark sets the state itself.
    """
    _default.engine, _default.pinned = engine, False
    _default.identity = _default.read_identity()


def summarize(by_name: dict[str, Result]) -> None:
    def ours(name: str) -> float:
        return by_name[name].ours_ns

    flat = ours("allow, 10000 rules") / ours("allow, 0 rules")
    disabled = by_name["disabled"].reference_ns or float("nan")
    print()
    print(f"ours at 10,000 rules / ours at 0 rules:            {flat:.2f}x   (target <= 1.5)")
    print(
        f"ours at 10,000 rules / reference disabled:        "
        f"{ours('allow, 10000 rules') / disabled:.2f}x   (target <= 1.0)"
    )
    print(
        f"reference / ours at 1,000 rules:                  "
        f"{by_name['allow, 1000 rules'].ratio or 0:.0f}x   (target >= 500)"
    )
    print(
        f"reference / ours at 0 rules:                      "
        f"{by_name['allow, 0 rules'].ratio or 0:.1f}x   (target >= 5)"
    )
    print_steady(by_name)
    block = ours("block, 1000 rules (last breached)")
    allow = ours("allow, 1000 rules")
    raising = raise_cost_ns()
    print(
        f"ours block / ours allow at 1,000 rules:           {block / allow:.2f}x   "
        f"(block {fmt_ns(block)}, allow {fmt_ns(allow)})"
    )
    print(
        f"ours block / (3 x allow + raising):               "
        f"{block / (3 * allow + raising):.2f}x   (target <= 1.0; raising a "
        f"BudgetExceededError with its fields and catching it costs {fmt_ns(raising)} here)"
    )


def print_steady(by_name: dict[str, Result]) -> None:
    """Issue 13's targets: the steady state as cheap as the quiet one, with yes or no.

    The quiet allow path is the median of the five untripped ``allow`` rows
    (0 to 10,000 rules: one code path), so one noisy row does not move it.
    """
    quiet = statistics.median(by_name[f"allow, {n} rules"].ours_ns for n in QUIET_COUNTS)
    disabled = by_name["disabled"].reference_ns or float("nan")
    print()
    print(
        f"steady state (quiet allow path, median of the allow rows: ours {fmt_ns(quiet)}; "
        f"reference disabled "
        f"{fmt_ns(disabled)})"
    )
    for name in STEADY:
        steady = by_name[name].ours_ns
        within = steady / quiet
        print(
            f"  {name:<56} {fmt_ns(steady):>9}  {within:.2f}x quiet (<= 2: "
            f"{'yes' if within <= 2 else 'no'}), {steady / disabled:.2f}x reference disabled "
            f"(<= 1: {'yes' if steady <= disabled else 'no'})"
        )
    small, large = (
        by_name[f"accounts(): {n:,} pooled rules, caller covered by 2"] for n in (10, 10_000)
    )
    flat = large.ours_ns / small.ours_ns
    print(
        f"  accounts() at 10,000 rules / at 10 rules: {flat:.2f}x "
        f"({fmt_ns(large.ours_ns)} vs {fmt_ns(small.ours_ns)}; flat <= 1.5: "
        f"{'yes' if flat <= 1.5 else 'no'}; <= 2 us: {'yes' if large.ours_ns <= 2e3 else 'no'})"
    )
    none = by_name[ACCOUNTS_NONE].ours_ns
    print(
        f"  accounts(), no rule of 10,000 covers the call: {fmt_ns(none)} "
        f"(<= 0.3 us: {'yes' if none <= 300 else 'no'})"
    )
    prepare = prepare_accounts_ms()
    print(
        f"  prepare_accounts() at 10,000 rules: {prepare:.1f} ms "
        f"(< 100 ms: {'yes' if prepare < 100 else 'no'})"
    )


def raise_cost_ns() -> float:
    """What building, raising and catching a BudgetExceededError with its fields costs."""

    def raise_and_catch() -> None:
        try:
            raise BudgetExceededError(
                "Request blocked by Revenium enforcement rule: r999",
                rule_name="r999",
                current_value=12.0,
                threshold=10.0,
                resets_at="2099-01-01T00:00:00Z",
                rule_id=999,
            )
        except BudgetExceededError:
            pass

    number = 100_000
    return min(timeit.repeat(raise_and_catch, number=number, repeat=5)) / number * 1e9


if __name__ == "__main__":
    main()
