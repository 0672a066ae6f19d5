"""The check's hot path, ours and the reference SDK's, side by side.

    python benchmarks/bench_check.py [--quick]

Both engines get the same rules through the same snapshot files (the
reference reads them when its team id changes); neither fetches anything.
Prints medians and the ratio reference/ours for each scenario.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(__file__))

from _harness import Result, compare, print_table

import enforcement
from enforcement._mirror import Mirror
from enforcement._ruleset import rules_fingerprint
from enforcement._wire import parse_payload

BASE = "http://127.0.0.1:9"
FUTURE = "2099-12-31T23:59:59.999999999Z"
METADATA = {
    "subscriber": {"id": "user-42", "email": "dev@example.com"},
    "organizationName": "acme",
    "productName": "chat",
    "agent": "support-bot",
}


def make_rules(count: int, tripped: int = 0) -> list[dict[str, Any]]:
    """A realistic mix: model, org and provider filters; ``tripped`` of them breached."""
    rules = []
    for i in range(count):
        filters = [{"dimension": "MODEL", "operator": "IS", "value": f"model-{i % 97}"}]
        if i % 3 == 0:
            filters.append({"dimension": "ORGANIZATION", "operator": "IS", "value": f"org-{i}"})
        if i % 5 == 0:
            filters.append(
                {"dimension": "PROVIDER", "operator": "IN", "values": ["openai", "anthropic"]}
            )
        rules.append(
            {
                "ruleId": i + 1,
                "teamId": 1,
                "name": f"rule-{i + 1}",
                "metricType": "TOTAL_COST",
                "operatorType": "GREATER_THAN_OR_EQUAL_TO",
                "threshold": "500.00",
                "currentValue": "12.5",
                "periodType": "DAILY",
                "windowStart": "2026-11-23T00:00:00Z",
                "windowEnd": FUTURE,
                "percentUsed": 2.5,
                "breached": i < tripped,
                "groupBy": None,
                "filters": filters,
                "compiledAt": 1776829860.156,
                "shadowMode": False,
                "action": "BLOCK",
                "denyMessage": None,
            }
        )
    return rules


class Reference:
    """The reference SDK, driven through its public function and its snapshot files."""

    def __init__(self, cache_dir: str) -> None:
        os.environ.update(
            {
                "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
                "REVENIUM_CACHE_DIR": cache_dir,
                "REVENIUM_ENFORCEMENT_BASE_URL": BASE,
            }
        )
        os.environ.pop("REVENIUM_METERING_API_KEY", None)
        warnings.simplefilter("ignore")
        from revenium_middleware._core import enforcement as reference

        self.module = reference
        self.check: Callable[..., None] = reference.check_enforcement

    def use_team(self, team: str) -> None:
        os.environ["REVENIUM_TEAM_ID"] = team
        try:
            self.check({}, model="warm-up", provider="openai")
        except Exception:
            pass

    def close(self) -> None:
        self.module.stop_polling()


def write_snapshot(cache_dir: str, team: str, payload: dict[str, Any]) -> None:
    parsed = parse_payload(payload)
    Mirror(cache_dir, BASE, team).save(
        parsed, fingerprint=rules_fingerprint(parsed.rules), etag=None, fetched_at=time.time()
    )


def our_engine(cache_dir: str, team: str) -> enforcement.Engine:
    return enforcement.Engine(
        environ={
            "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
            "REVENIUM_CACHE_DIR": cache_dir,
            "REVENIUM_ENFORCEMENT_BASE_URL": BASE,
            "REVENIUM_TEAM_ID": team,
        }
    )


def run(quick: bool) -> list[Result]:
    rounds = 5 if quick else 15
    results = []
    with tempfile.TemporaryDirectory() as cache_dir:
        reference = Reference(cache_dir)
        for count in (0, 10, 100, 1000, 10000):
            team = f"bench-allow-{count}"
            write_snapshot(cache_dir, team, {"rules": make_rules(count)})
            reference.use_team(team)
            ours = our_engine(cache_dir, team)

            def ours_call(engine: enforcement.Engine = ours) -> None:
                engine.check(METADATA, model="gpt-4o", provider="openai")

            def ref_call() -> None:
                reference.check(METADATA, model="gpt-4o", provider="openai")

            results.append(
                compare(
                    f"allow, {count} rules",
                    ours_call,
                    ref_call,
                    rounds=3 if count >= 10000 else rounds,
                )
            )
            ours.close()

        team = "bench-block-1000"
        write_snapshot(cache_dir, team, {"rules": make_rules(1000, tripped=1000)})
        reference.use_team(team)
        ours = our_engine(cache_dir, team)

        def blocked(check: Callable[..., None]) -> Callable[[], None]:
            def call() -> None:
                try:
                    check(METADATA, model="model-5", provider="openai")
                except Exception:
                    pass

            return call

        results.append(
            compare(
                "block, 1000 rules all breached",
                blocked(ours.check),
                blocked(reference.check),
                rounds=rounds,
            )
        )
        ours.close()

        os.environ["REVENIUM_CIRCUIT_BREAKER_ENABLED"] = "false"
        disabled = enforcement.Engine(environ=os.environ)
        results.append(
            compare(
                "disabled (switch off)",
                lambda: disabled.check(METADATA, model="gpt-4o"),
                lambda: reference.check(METADATA, model="gpt-4o"),
                rounds=rounds,
            )
        )
        os.environ["REVENIUM_CIRCUIT_BREAKER_ENABLED"] = "true"
        reference.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    results = run(args.quick)
    print_table(results)
    by_name = {r.name: r for r in results}
    flat = by_name["allow, 10000 rules"].ours_ns / by_name["allow, 0 rules"].ours_ns
    print(f"\nours, 10,000 rules vs 0 rules: {flat:.2f}x (target <= 1.5x)")
    disabled_ref = by_name["disabled (switch off)"].reference_ns or 0.0
    print(
        f"ours at 10,000 rules vs the reference disabled: "
        f"{by_name['allow, 10000 rules'].ours_ns / disabled_ref:.2f}x (target <= 1.0x)"
    )


if __name__ == "__main__":
    main()
