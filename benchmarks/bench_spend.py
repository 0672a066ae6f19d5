"""What local spend costs per call: the reservation before it and the commit after.

Side by side in one run, interleaved: the same hooked call (``Engine.begin``,
then ``Spend.settle`` on what it returned) with local accrual on and off,
for a call one pooled rule covers and for one no rule covers, on the
per-process and the per-host ledger. Each round times a batch of ``begin``
calls (the reservation) and then settles that batch (the commit), for every
engine in turn, so a noisy neighbour slows every row of a round alike.
Medians over the rounds; ``added`` is on minus off, ``ratio`` on / off.

Then the targets, yes or no: a call no rule covers adds at most 0.5 us over
accrual off, and the accrual lookup's rows of ``bench_check`` (``accounts()``
for two covering rules of 10,000 <= 2 us, for a caller none covers <= 0.3 us).

    python benchmarks/bench_spend.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(__file__))

from _harness import fmt_ns

from enforcement import Engine
from enforcement._prices import PriceTable
from enforcement._usage import Estimate, Spend, Usage
from enforcement.testing import make_filter, make_rule

MODEL = "gpt-4o-mini"
PRICES = PriceTable(overrides={MODEL: {"input": 0.15, "output": 0.60}}, use_table=False)
USAGE = Usage(200, 100)
ESTIMATE = Estimate(200, 100)
METADATA = {"organizationName": "acme", "subscriber": {"id": "u-1"}}
BATCH_NS = 2e6  # each timed batch of begin calls takes about this long
NONE_TARGET_NS = 500.0
ACCOUNTS_TARGETS = {
    "accounts(): 10,000 pooled rules, caller covered by 2": 2000.0,
    "accounts(): 10,000 pooled rules, caller covered by none": 300.0,
}


def engine(cache_dir: str, accrual: bool, covered: bool) -> Engine:
    """An engine with a rule on another model, and (``covered``) one on the caller's org."""
    environ = {
        "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
        "REVENIUM_CACHE_DIR": cache_dir,
        "REVENIUM_TEAM_ID": "bench",
        "REVENIUM_METERING_API_KEY": "hak_bench",
        "REVENIUM_ENFORCEMENT_BASE_URL": "http://127.0.0.1:9",
        "REVENIUM_CB_LOCAL_ACCRUAL": "on" if accrual else "off",
    }
    built = Engine(environ=environ, prices=PRICES)
    other_model = make_rule(
        2, "other model", threshold=1e12, filters=[make_filter("MODEL", "IS", "o3")]
    )
    acme = make_rule(
        1, "acme daily", threshold=1e12, filters=[make_filter("ORGANIZATION", "IS", "acme")]
    )
    built.load_payload([acme, other_model] if covered else [other_model])
    return built


class Side:
    """One engine and one call to it: a batch of reservations, then their commits."""

    def __init__(self, built: Engine, model: str) -> None:
        self.engine, self.model = built, model
        self.begin_ns: list[float] = []
        self.settle_ns: list[float] = []
        self.batch = 1
        self.batch = max(1, int(BATCH_NS / max(self.round(record=False), 1.0)))

    def round(self, record: bool = True) -> float:
        """Time ``batch`` begins, then settle them all; the begin's per-call ns."""
        begin, model, batch = self.engine.begin, self.model, self.batch
        spends: list[Optional[Spend]] = [None] * batch
        start = time.perf_counter_ns()
        for index in range(batch):
            spends[index] = begin(METADATA, model=model, provider="openai", estimate=_estimate)
        middle = time.perf_counter_ns()
        for spend in spends:
            if spend is not None:
                spend.settle(USAGE)
        end = time.perf_counter_ns()
        if record:
            self.begin_ns.append((middle - start) / batch)
            self.settle_ns.append((end - middle) / batch)
        return (middle - start) / batch


def _estimate() -> Estimate:
    return ESTIMATE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    rounds = 7 if quick else 21
    engines, rows = [], {}
    for ledger in ("process", "host"):
        directory = tempfile.mkdtemp() if ledger == "host" else "off"
        if ledger == "host":
            os.chmod(directory, 0o700)
        for label, covered in (("covered by one rule", True), ("covered by none", False)):
            on, off = engine(directory, True, covered), engine(directory, False, covered)
            engines += [on, off]
            rows[f"{ledger} ledger, a call {label}"] = (Side(on, MODEL), Side(off, MODEL))
    for _ in range(rounds):
        for on_side, off_side in rows.values():
            on_side.round()
            off_side.round()
    for built in engines:
        built.close()
    print(f"local spend per hooked call, medians of {rounds} interleaved rounds")
    print(f"load average {_load()}")
    print_table(rows)
    print_targets(rows, 5 if quick else 15)


def print_table(rows: dict[str, tuple[Side, Side]]) -> None:
    header = f"{'scenario':<42} {'op':<7} {'accrual on':>10} {'off':>9} {'added':>9} {'on/off':>7}"
    print(header)
    print("-" * len(header))
    for name, (on, off) in rows.items():
        for op, on_ns, off_ns in (
            ("begin", on.begin_ns, off.begin_ns),
            ("settle", on.settle_ns, off.settle_ns),
            ("both", _sums(on), _sums(off)),
        ):
            mine, theirs = statistics.median(on_ns), statistics.median(off_ns)
            print(
                f"{name if op == 'begin' else '':<42} {op:<7} {fmt_ns(mine):>10} "
                f"{fmt_ns(theirs):>9} {fmt_ns(mine - theirs):>9} {mine / theirs:>6.1f}x"
            )


def print_targets(rows: dict[str, tuple[Side, Side]], rounds: int) -> None:
    print()
    for ledger in ("process", "host"):
        on, off = rows[f"{ledger} ledger, a call covered by none"]
        added = statistics.median(_sums(on)) - statistics.median(_sums(off))
        print(
            f"{ledger} ledger, a call no rule covers: begin + settle adds {fmt_ns(added)} over "
            f"accrual off (<= {fmt_ns(NONE_TARGET_NS)}: {_yes(added <= NONE_TARGET_NS)})"
        )
    import bench_check

    print(f"accrual lookup (bench_check.accounts_rows), load average {_load()}:")
    for result in bench_check.accounts_rows(rounds):
        target = ACCOUNTS_TARGETS.get(result.name)
        verdict = (
            "" if target is None else f" (<= {fmt_ns(target)}: {_yes(result.ours_ns <= target)})"
        )
        print(f"  {result.name:<68} {fmt_ns(result.ours_ns):>9}{verdict}")


def _sums(side: Side) -> list[float]:
    return [begin + settle for begin, settle in zip(side.begin_ns, side.settle_ns)]


def _yes(met: bool) -> str:
    return "yes" if met else "no"


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
