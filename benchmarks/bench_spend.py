"""What local spend costs per call: the hold before it and the settlement after.

Side by side in one run, interleaved: the same call judged with local
accrual on (``Engine.begin`` then ``Spend.settle``) and off (``Engine.check``,
the server's verdict alone), for a call that one pooled rule covers and for
one no rule covers, on the per-process and the per-host ledger. Prints
medians and the added cost.

    python benchmarks/bench_spend.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Callable

sys.path.insert(0, os.path.dirname(__file__))

from _harness import compare, fmt_ns

from enforcement import Engine
from enforcement._prices import PriceTable
from enforcement._usage import Estimate, Usage
from enforcement.testing import make_filter, make_rule

MODEL = "gpt-4o-mini"
PRICES = PriceTable(overrides={MODEL: {"input": 0.15, "output": 0.60}}, use_table=False)
USAGE = Usage(200, 100)
ESTIMATE = Estimate(200, 100)
METADATA = {"organizationName": "acme", "subscriber": {"id": "u-1"}}


def engine(cache_dir: str, accrual: bool) -> Engine:
    environ = {
        "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
        "REVENIUM_CACHE_DIR": cache_dir,
        "REVENIUM_TEAM_ID": "bench",
        "REVENIUM_METERING_API_KEY": "hak_bench",
        "REVENIUM_ENFORCEMENT_BASE_URL": "http://127.0.0.1:9",
        "REVENIUM_CB_LOCAL_ACCRUAL": "on" if accrual else "off",
    }
    built = Engine(environ=environ, prices=PRICES)
    built.load_payload(
        [
            make_rule(
                1, "acme daily", threshold=1e12, filters=[make_filter("ORGANIZATION", "IS", "acme")]
            ),
            make_rule(2, "other model", threshold=1e12, filters=[make_filter("MODEL", "IS", "o3")]),
        ]
    )
    return built


def held_call(built: Engine, model: str) -> Callable[[], None]:
    def call() -> None:
        spend = built.begin(METADATA, model=model, provider="openai", estimate=lambda: ESTIMATE)
        if spend is not None:
            spend.settle(USAGE)

    return call


def checked_call(built: Engine, model: str) -> Callable[[], None]:
    return lambda: built.check(METADATA, model=model, provider="openai")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    rounds = 5 if parser.parse_args().quick else 15
    print(f"{'scenario':<52} {'accrual on':>11} {'off':>9} {'added':>9}")
    for ledger in ("process", "host"):
        directory = tempfile.mkdtemp() if ledger == "host" else "off"
        if ledger == "host":
            os.chmod(directory, 0o700)
        on, off = engine(directory, True), engine(directory, False)
        for label, model in (("covered by one rule", MODEL), ("covered by none", "gpt-4.1")):
            if model != MODEL:
                on.load_payload(
                    [
                        make_rule(
                            2,
                            "other model",
                            threshold=1e12,
                            filters=[make_filter("MODEL", "IS", "o3")],
                        )
                    ]
                )
                off.load_payload(
                    [
                        make_rule(
                            2,
                            "other model",
                            threshold=1e12,
                            filters=[make_filter("MODEL", "IS", "o3")],
                        )
                    ]
                )
            result = compare(label, held_call(on, model), checked_call(off, model), rounds=rounds)
            added = result.ours_ns - (result.reference_ns or 0.0)
            name = f"{ledger} ledger, a call {label}"
            on_ns, off_ns = fmt_ns(result.ours_ns), fmt_ns(result.reference_ns)
            print(f"{name:<52} {on_ns:>11} {off_ns:>9} {fmt_ns(added):>9}")
        on.close()
        off.close()


if __name__ == "__main__":
    main()
