"""What a caller waits: the first call, and steady checks while the feed faults.

    python benchmarks/bench_first_call.py [--quick] [--rounds N] [--seconds S]
        [--rules N] [--only first-call|steady]

Ours and the reference SDK side by side, each measured in processes of its
own (a first call happens once per process, and the reference's state is
module-global), alternating sides round by round. The rules feed is a local
:class:`~enforcement.testing.RulesServer` running in this process, so its
handler threads never compete with the measured process for the GIL.

* first call: 64 threads released by one barrier make their first
  ``check_enforcement`` at once, with a 100-rule snapshot on disk and the
  feed live: the snapshot is not vouched for as fresh, so the poller starts
  and fetches meanwhile. Every thread's first call is a sample.
* steady: one thread checks (1 ms apart) for some seconds while the poller,
  polling every second, meets a healthy feed, a slow one (each answer 2 s
  late), a feed answering 429, and 429 with ``Retry-After: 1``. Every check
  is a sample.

Printed per scenario and side: median, p99, p99.9, max, and how many samples
took 10 ms or more.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_check import CALLER, rule, write_snapshot

from enforcement.testing import Fault, RulesServer

THREADS = 64
RULES = 100
SLOW_SECONDS = 2.0


def _side_check(side: str) -> tuple[Callable[..., None], Callable[[], None]]:
    """``(check_enforcement, stop_polling)`` of one side, imported in this process."""
    if side == "ours":
        import enforcement

        return enforcement.check_enforcement, enforcement.stop_polling
    warnings.simplefilter("ignore")
    from revenium_middleware._core import enforcement as reference

    return reference.check_enforcement, reference.stop_polling


def _timed_call(check: Callable[..., None]) -> int:
    started = time.perf_counter_ns()
    try:
        check(CALLER, model="gpt-4o", provider="openai")
    except Exception:
        pass
    return time.perf_counter_ns() - started


def child_first_call(side: str) -> list[int]:
    """In a fresh process: 64 threads' first calls, released at once (ns each)."""
    check, stop = _side_check(side)
    barrier = threading.Barrier(THREADS + 1)
    samples = [0] * THREADS

    def worker(index: int) -> None:
        barrier.wait()
        samples[index] = _timed_call(check)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in pool:
        thread.start()
    barrier.wait()
    for thread in pool:
        thread.join()
    stop()
    return samples


def child_steady(side: str, seconds: float) -> list[int]:
    """In a fresh process: one thread checking every millisecond for ``seconds`` (ns each)."""
    check, stop = _side_check(side)
    _timed_call(check)  # the first call: load and start the poller, not measured
    time.sleep(0.2)
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(_timed_call(check))
        time.sleep(0.001)
    stop()
    return samples


def _run_child(args: Sequence[str], env: dict[str, str], timeout: float) -> list[int]:
    completed = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    samples: list[int] = json.loads(completed.stdout.strip().splitlines()[-1])
    return samples


def _environment(server: RulesServer, cache: str, team: str, interval: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVENIUM_")}
    env.update(server.env(REVENIUM_CACHE_DIR=cache))
    env.update(
        REVENIUM_TEAM_ID=team,
        REVENIUM_CB_POLL_INTERVAL_SECONDS=str(interval),
        PYTHONWARNINGS="ignore",
    )
    return env


def _payload(count: int) -> dict[str, Any]:
    return {"rules": [rule(i, filtered=i % 2 == 0) for i in range(1, count + 1)]}


def first_call(server: RulesServer, rounds: int, rules: int) -> dict[str, list[int]]:
    samples: dict[str, list[int]] = {"ours": [], "reference": []}
    payload = _payload(rules)
    server.set_payload(payload)
    for round_ in range(rounds):
        for side in ("ours", "reference") if round_ % 2 == 0 else ("reference", "ours"):
            with tempfile.TemporaryDirectory() as cache:
                team = server.team_id
                write_snapshot(cache, team, payload)
                env = _environment(server, cache, team, 60)
                samples[side] += _run_child(["--child", "first-call", side], env, 120)
    return samples


STEADY_FAULTS: dict[str, Optional[Fault]] = {
    "healthy feed": None,
    f"slow feed ({SLOW_SECONDS:g} s per answer)": Fault.delay(SLOW_SECONDS),
    "feed answering 429": Fault.status(429),
    "feed answering 429, Retry-After 1": Fault.status(429, headers={"Retry-After": "1"}),
}


def steady(
    server: RulesServer, seconds: float, rounds: int, rules: int
) -> dict[str, dict[str, list[int]]]:
    results: dict[str, dict[str, list[int]]] = {}
    payload = _payload(rules)
    for name, fault in STEADY_FAULTS.items():
        samples: dict[str, list[int]] = {"ours": [], "reference": []}
        for round_ in range(rounds):
            for side in ("ours", "reference") if round_ % 2 == 0 else ("reference", "ours"):
                server.clear_faults()
                server.set_payload(payload)
                with tempfile.TemporaryDirectory() as cache:
                    write_snapshot(cache, server.team_id, payload)
                    env = _environment(server, cache, server.team_id, 1)
                    server.set_fault(fault)
                    samples[side] += _run_child(
                        ["--child", "steady", side, "--seconds", str(seconds)],
                        env,
                        seconds + 120,
                    )
        server.clear_faults()
        results[name] = samples
    return results


def _quantile(ordered: Sequence[int], q: float) -> int:
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.3f} ms" if ns < 1e7 else f"{ns / 1e6:.1f} ms"


def print_rows(title: str, samples: dict[str, list[int]]) -> None:
    print(title)
    header = (
        f"  {'side':<10} {'samples':>8} {'median':>11} {'p99':>11} {'p99.9':>11} "
        f"{'max':>11} {'>=10 ms':>8}"
    )
    print(header)
    medians = {}
    for side in ("ours", "reference"):
        ordered = sorted(samples[side])
        if not ordered:
            continue
        medians[side] = statistics.median(ordered)
        slow = sum(1 for s in ordered if s >= 10_000_000)
        print(
            f"  {side:<10} {len(ordered):>8} {_ms(medians[side]):>11} "
            f"{_ms(_quantile(ordered, 0.99)):>11} {_ms(_quantile(ordered, 0.999)):>11} "
            f"{_ms(ordered[-1]):>11} {slow:>8}"
        )
    if len(medians) == 2 and medians["ours"]:
        print(f"  median reference/ours {medians['reference'] / medians['ours']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--only", choices=("first-call", "steady"), default=None)
    parser.add_argument("--rules", type=int, default=RULES, help="rules served and on disk")
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        scenario, side = args.child
        if scenario == "first-call":
            result = child_first_call(side)
        else:
            result = child_steady(side, args.seconds or 10.0)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        os._exit(0)  # neither side's daemon poller may delay the exit
    rounds = args.rounds or (4 if args.quick else 10)
    seconds = args.seconds or (5.0 if args.quick else 15.0)
    with RulesServer(team_id="first-call") as server:
        if args.only in (None, "first-call"):
            print_rows(
                f"first call: {THREADS} threads at once, {args.rules}-rule snapshot, feed live, "
                f"{rounds} processes per side",
                first_call(server, rounds, args.rules),
            )
        if args.only in (None, "steady"):
            steady_rounds = max(1, rounds // 5)
            for name, samples in steady(server, seconds, steady_rounds, args.rules).items():
                print_rows(
                    f"steady checks 1 ms apart for {seconds:g} s x {steady_rounds}, "
                    f"{args.rules} rules, poll every 1 s, {name}",
                    samples,
                )


if __name__ == "__main__":
    main()
