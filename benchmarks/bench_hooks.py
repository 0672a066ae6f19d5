"""What a hook adds to a real SDK call against a local fake provider.

    python benchmarks/bench_hooks.py [--quick]

The same openai client call, against the same local fake OpenAI server, with
our hooks on (a rule set loaded, no rule covering the call) and off,
interleaved. Prints both medians and their ratio; the target is within 1%.
The difference of medians on a noisy machine is mostly noise; the second
table isolates what the hook itself costs per call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "hooks"))

from _harness import Result, fmt_ns, print_table
from fake_openai import FakeOpenAI

import enforcement
from enforcement import Engine

MESSAGES = [{"role": "user", "content": "hello"}]


def rules() -> list[dict[str, object]]:
    """100 rules, 10 of them breached for other models: none covers the benchmarked call."""
    out: list[dict[str, object]] = []
    for i in range(1, 101):
        out.append(
            {
                "ruleId": i,
                "name": f"r{i}",
                "breached": i <= 10,
                "action": "BLOCK",
                "windowEnd": "2099-01-01T00:00:00Z",
                "filters": [{"dimension": "MODEL", "operator": "IS", "value": f"other-model-{i}"}],
            }
        )
    return out


def run(quick: bool) -> list[Result]:
    import openai

    rounds = 5 if quick else 15
    engine = Engine(
        environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}
    )
    engine.load_payload(rules())
    with (
        FakeOpenAI() as api,
        openai.OpenAI(base_url=api.base_url, api_key="sk", max_retries=0) as client,
    ):

        def call() -> None:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

        results = [_on_off("openai chat.completions.create", engine, call, rounds)]
    results.append(_on_off_anthropic(engine, rounds))
    engine.close()
    return results


def _on_off(name: str, engine: Engine, call: object, rounds: int) -> Result:

    from _harness import _per_call_ns, calibrate

    assert callable(call)
    batch = max(20, calibrate(call, target_ns=100e6))
    on_times, off_times = [], []
    for _ in range(rounds):
        enforcement.instrument("openai", "anthropic", engine=engine)
        on_times.append(_per_call_ns(call, batch))
        enforcement.uninstrument()
        off_times.append(_per_call_ns(call, batch))
    return Result(
        name + " (hooks on vs off)",
        statistics.median(on_times),
        max(on_times),
        statistics.median(off_times),
        max(off_times),
    )


def _on_off_anthropic(engine: Engine, rounds: int) -> Result:
    try:
        import anthropic
        from fake_anthropic import FakeAnthropic  # type: ignore[import-not-found]
    except ImportError:
        return Result(
            "anthropic messages.create (not installed)", float("nan"), float("nan"), None, None
        )
    with (
        FakeAnthropic() as api,
        anthropic.Anthropic(base_url=api.base_url, api_key="k", max_retries=0) as client,
    ):

        def call() -> None:
            client.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=16,
                messages=[{"role": "user", "content": "hi"}],
            )

        return _on_off("anthropic messages.create", engine, call, rounds)


def hook_cost(engine: Engine) -> float:
    """Nanoseconds the hook's own work takes: the guarded check with no rule covering."""
    from enforcement.hooks._base import checked

    def guarded() -> None:
        checked("openai", "gpt-4o", None, _noop)

    number = 200_000
    return min(timeit.repeat(guarded, number=number, repeat=5)) / number * 1e9


def _noop() -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = run(args.quick)
    print_table(results)
    for r in results:
        if r.reference_ns:
            print(f"{r.name}: on/off = {r.ours_ns / r.reference_ns:.4f} (target <= 1.01)")
    engine = Engine(
        environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}
    )
    engine.load_payload(rules())
    enforcement.instrument("openai", engine=engine)
    print(f"the hook's own work per call (guard + check, 100 rules): {fmt_ns(hook_cost(engine))}")
    enforcement.uninstrument()
    engine.close()


if __name__ == "__main__":
    main()
