"""What a hook adds to a real SDK call against a local fake provider.

    python benchmarks/bench_hooks.py [--quick]

The same openai (and anthropic) client call, against the same local fake
provider server, with our hooks on (a rule set loaded, no rule covering the
call) and off, interleaved in alternating order. The fake server runs in its
own process, as a real provider would, so it does not compete with the
client for the GIL. Prints both medians and their ratio; the target is within
1%. On a noisy machine the difference of medians is mostly noise; the last
line isolates what the hook itself costs per call.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import statistics
import subprocess
import sys
import timeit
from collections.abc import Iterator
from typing import Any, Callable

import wrapt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import calibrate, fmt_ns, per_call_ns

import enforcement
from enforcement import Engine

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
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


@contextlib.contextmanager
def served_elsewhere(fake: str) -> Iterator[str]:
    """One of the test suite's fake providers, in a child process; yields its base URL."""
    module = f"hooks.fake_{fake.lower().removeprefix('fake')}"
    code = (
        f"import sys; sys.path.insert(0, sys.argv[1]); from {module} import {fake}\n"
        f"with {fake}() as api:\n    print(api.base_url, flush=True)\n    sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, TESTS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        yield child.stdout.readline().strip()
    finally:
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()


def run(quick: bool) -> list[OnOff]:
    import openai

    rounds = 20 if quick else 100
    engine = Engine(
        environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}
    )
    engine.load_payload(rules())
    with (
        served_elsewhere("FakeOpenAI") as base_url,
        openai.OpenAI(base_url=base_url, api_key="sk", max_retries=0) as client,
    ):

        def call() -> None:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

        results = [_on_off("openai chat.completions.create", engine, call, rounds)]
    results.append(_on_off_anthropic(engine, rounds))
    engine.close()
    return results


@dataclasses.dataclass
class OnOff:
    """Median per-call times of one call with hooks on, off, and off again (the A/A control)."""

    name: str
    on_ns: float
    off_ns: float
    off_again_ns: float


def _on_off(name: str, engine: Engine, call: Callable[[], object], rounds: int) -> OnOff:
    """Hooks on, off and off again, in a shuffled order each round.

    Each arm starts with one untimed call, so that the first call after a
    patch or an unpatch (colder caches) falls on no arm. The second "off"
    arm measures nothing but noise: on/off is meaningful only next to it.
    """
    batch = max(10, calibrate(call, target_ns=20e6))
    times: dict[str, list[float]] = {"on": [], "off": [], "off again": []}
    shuffle = random.Random(7).shuffle

    def measure(arm: str) -> None:
        hooked = arm == "on"
        if hooked:
            enforcement.instrument("openai", "anthropic", engine=engine)
        call()
        times[arm].append(per_call_ns(call, batch))
        if hooked:
            enforcement.uninstrument()

    for _ in range(rounds):
        arms = list(times)
        shuffle(arms)
        for arm in arms:
            measure(arm)
    on, off, again = (statistics.median(times[arm]) for arm in times)
    return OnOff(name, on, off, again)


def _on_off_anthropic(engine: Engine, rounds: int) -> OnOff:
    try:
        import anthropic
    except ImportError:
        nan = float("nan")
        return OnOff("anthropic messages.create (not installed)", nan, nan, nan)
    with (
        served_elsewhere("FakeAnthropic") as base_url,
        anthropic.Anthropic(base_url=base_url, api_key="k", max_retries=0) as client,
    ):

        def call() -> None:
            client.messages.create(
                model="claude-bench",
                max_tokens=16,
                messages=[{"role": "user", "content": "hi"}],
            )

        return _on_off("anthropic messages.create", engine, call, rounds)


def hook_cost(engine: Engine) -> float:
    """Nanoseconds the hook's own work adds to an openai call, with no rule covering it.

    The guarded check, plus the two wrapt layers an openai call passes (the
    public method that accepts ``usage_metadata=``, and the request funnel),
    each measured as a wrapped method against the same method unwrapped.
    """
    from enforcement.hooks._base import checked

    def guarded() -> None:
        checked("openai", "gpt-4o", None, _noop)

    class Resource:
        def method(self, value: int = 0) -> int:
            return value

    def passing(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    plain = Resource()
    plain_call = _timed_ns(lambda: plain.method(value=1))
    Resource.method = wrapt.FunctionWrapper(Resource.__dict__["method"], passing)  # type: ignore[method-assign]
    layer = _timed_ns(lambda: plain.method(value=1)) - plain_call
    return _timed_ns(guarded) + 2 * layer


def _timed_ns(function: Callable[[], object]) -> float:
    number = 200_000
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e9


def _noop() -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = run(args.quick)
    title = "call against a local fake server"
    header = f"{title:<32} {'hooks on':>10} {'hooks off':>10} {'on/off':>8} {'off/off (noise)':>16}"
    print(header)
    print("-" * len(header))
    for r in results:
        on, off = fmt_ns(r.on_ns), fmt_ns(r.off_ns)
        noise = r.off_again_ns / r.off_ns
        print(f"{r.name:<32} {on:>10} {off:>10} {r.on_ns / r.off_ns:>8.4f} {noise:>16.4f}")
    print("target: on/off <= 1.01, medians; read it against the off/off control")
    engine = Engine(
        environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}
    )
    engine.load_payload(rules())
    enforcement.instrument("openai", engine=engine)
    own = hook_cost(engine)
    print(f"the hook's own work per call (guard, check, two wrapt layers): {fmt_ns(own)}")
    for r in results:
        print(f"  that is {own / r.off_ns:.3%} of {r.name} ({fmt_ns(r.off_ns)})")
    enforcement.uninstrument()
    engine.close()


if __name__ == "__main__":
    main()
