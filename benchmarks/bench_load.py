"""Taking in a rule set, concurrency, and memory: ours and the reference side by side.

    python benchmarks/bench_load.py [--quick]

* take-in: a new team's 10,000 rules served by a local rules server, timed
  from the first call until the last (breached) rule is enforced: fetch,
  decode, install and the disk snapshot, through each library's own poller;
  then our stages alone, with the peak memory of each;
* 64 threads checking at once: total checks per second;
* our allow-path latency while a poller-like thread swaps in a freshly
  decoded and compiled 10,000-rule set every 100 ms;
* resident memory over 1,000,000 of our checks (and 100,000 of the reference's).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_check import CALLER, Sides, rule

import enforcement
from enforcement import Engine
from enforcement import _json as json_pieces
from enforcement._mirror import Mirror
from enforcement._ruleset import RuleSet, keep_out_of_collections
from enforcement._wire import parse_payload
from enforcement.testing import RulesServer


def ten_thousand(breached_last: bool = True) -> list[dict[str, Any]]:
    rules = [rule(i, filtered=i % 2 == 0) for i in range(1, 10_000)]
    rules.append(rule(10_000, breached=breached_last))
    return rules


def until_blocked(check: Callable[..., None], timeout: float = 60.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            check({}, model="gpt-4o", provider="openai")
        except Exception:
            return time.perf_counter() - started
        time.sleep(0.001)
    return float("nan")


def take_in() -> None:
    print("take-in of 10,000 rules (first call -> last rule enforced), medians of 3")
    warnings.simplefilter("ignore")
    from revenium_middleware._core import enforcement as reference

    ours_times, reference_times = [], []
    with RulesServer(team_id="take-in") as server, tempfile.TemporaryDirectory() as cache:
        server.set_rules(ten_thousand())
        for round_ in range(3):
            for side, times in (("ours", ours_times), ("reference", reference_times)):
                team = f"take-in-{side}-{round_}"
                server.team_id = team
                os.environ.update(server.env(REVENIUM_CACHE_DIR=cache))
                os.environ["REVENIUM_TEAM_ID"] = team
                check = (
                    enforcement.check_enforcement if side == "ours" else reference.check_enforcement
                )
                times.append(until_blocked(check))
        reference.stop_polling()
        enforcement.stop_polling()
    ours, ref = statistics.median(ours_times), statistics.median(reference_times)
    print(
        f"  ours {ours * 1e3:.1f} ms, reference {ref * 1e3:.1f} ms, reference/ours "
        f"{ref / ours:.1f}x"
    )
    stages()


def stages() -> None:
    """The same 10,000-rule body taken in by both, stage by stage, without the network.

    The reference decodes with ``json.loads`` and keeps the rules as they
    are (it walks them on every call instead); ours decodes one rule at a
    time (a poll never holds the GIL for the whole body) and compiles. Both
    swap the rules in before writing the snapshot.
    """
    from revenium_middleware._core import enforcement as reference

    body = json.dumps({"rules": ten_thousand()}).encode()
    stages = ("decode", "compile", "snapshot")
    ours: dict[str, list[float]] = {stage: [] for stage in stages}
    theirs: dict[str, list[float]] = {stage: [] for stage in stages}
    with tempfile.TemporaryDirectory() as cache:
        os.environ.update(REVENIUM_CACHE_DIR=cache, REVENIUM_TEAM_ID="stages")
        for _ in range(5):
            _timed(
                ours,
                json_pieces.decode_keeping_rules,
                lambda d: RuleSet(parse_payload(*d), 1),
                lambda r: Mirror(cache, "http://x", "t").save(r.payload, etag=None, fetched_at=0.0),
                body,
            )
            _timed(
                theirs,
                json.loads,
                reference._fetched_from_payload,
                lambda f: reference._persist_cache_to_disk(
                    f.rules,
                    f.org_unit_blocks,
                    f.org_unit_block_balances,
                    f.org_unit_warnings,
                    org_unit_candidates=f.org_unit_candidates,
                ),
                body,
            )
    decoded = json.loads(body)
    tracemalloc.start()
    RuleSet(parse_payload(decoded), 1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"take-in stages, same {len(body) / 2**20:.1f} MiB body, no network, medians of 5")
    for stage in (*stages, "total", "until enforced"):
        mine, ref = _stage(ours, stage), _stage(theirs, stage)
        ratio = f"{ref / mine:.2f}x" if ref >= 0.1 else "- (nothing to compile)"
        print(
            f"  {stage:>15}: ours {mine:6.1f} ms, reference {ref:6.1f} ms, reference/ours {ratio}"
        )
    total = _stage(ours, "total")
    print(
        f"  target: take-in of 10,000 rules (decode + compile + snapshot) at most 120 ms: "
        f"{total:.1f} ms, {'yes' if total <= 120 else 'no'}; until enforced "
        f"{_stage(ours, 'until enforced'):.1f} ms"
    )
    print(
        f"  peak memory of our compile {peak / 2**20:.2f} MiB "
        "(the reference's compile is the split of the body: it walks every rule on every call)"
    )


def _timed(
    into: dict[str, list[float]],
    decode: Callable[[bytes], Any],
    compile_: Callable[[Any], Any],
    snapshot: Callable[[Any], Any],
    body: bytes,
) -> None:
    gc.collect()
    started = time.perf_counter()
    decoded = decode(body)
    decoded_at = time.perf_counter()
    compiled = compile_(decoded)
    compiled_at = time.perf_counter()
    snapshot(compiled)
    into["decode"].append(decoded_at - started)
    into["compile"].append(compiled_at - decoded_at)
    into["snapshot"].append(time.perf_counter() - compiled_at)


def _stage(times: dict[str, list[float]], stage: str) -> float:
    if stage == "total":
        parts = [sum(run) for run in zip(*times.values())]
    elif stage == "until enforced":
        parts = [a + b for a, b in zip(times["decode"], times["compile"])]
    else:
        parts = times[stage]
    return statistics.median(parts) * 1e3


def restart_take_in() -> None:
    """The first call after a restart: both read the snapshot on the caller's thread."""
    print("restart: first call with a 10,000-rule snapshot on disk (load + first verdict)")
    with tempfile.TemporaryDirectory() as cache:
        sides = Sides(cache)
        times: dict[str, list[float]] = {"ours": [], "reference": []}
        for _ in range(3):
            for name, check in (("ours", sides.ours), ("reference", sides.reference)):
                sides.load({"rules": ten_thousand()}, warm=False)
                started = time.perf_counter()
                try:
                    check({}, model="gpt-4o", provider="openai")
                except Exception:
                    pass
                times[name].append(time.perf_counter() - started)
        sides.close()
    ours, ref = statistics.median(times["ours"]), statistics.median(times["reference"])
    print(
        f"  ours {ours * 1e3:.1f} ms, reference {ref * 1e3:.1f} ms "
        f"(the reference's first verdict also walks all 10,000 rules), "
        f"reference/ours {ref / ours:.1f}x"
    )


def threads(quick: bool) -> None:
    print("64 threads checking at once (100 rules, none covering), checks per second")
    with tempfile.TemporaryDirectory() as cache:
        sides = Sides(cache)
        sides.load({"rules": [rule(i) for i in range(1, 101)]})
        per_thread = 500 if quick else 2000
        rates: dict[str, list[float]] = {"ours": [], "reference": []}
        for _ in range(3):
            for name, check in (("ours", sides.ours), ("reference", sides.reference)):
                count = per_thread if name == "ours" else max(20, per_thread // 50)
                rates[name].append(_hammer(check, 64, count))
        sides.close()
    ours, ref = statistics.median(rates["ours"]), statistics.median(rates["reference"])
    print(f"  ours {ours:,.0f}/s, reference {ref:,.0f}/s, ours/reference {ours / ref:.0f}x")


def _hammer(check: Callable[..., None], threads: int, per_thread: int) -> float:
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(per_thread):
            check(CALLER, model="gpt-4o", provider="openai")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    return threads * per_thread / (time.perf_counter() - started)


def swapping(quick: bool) -> None:
    for freeze in (False, True):
        _swapping(quick, freeze)


def _swapping(quick: bool, freeze: bool) -> None:
    how = ", gc.freeze() after each install" if freeze else ""
    print(f"our allow-path latency while a new 10,000-rule set is swapped in every 100 ms{how}")
    engine = Engine(
        environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}
    )
    bodies = [
        json.dumps({"rules": ten_thousand(breached_last=False)}).encode(),
        json.dumps({"rules": [*ten_thousand(breached_last=False), rule(10_001)]}).encode(),
    ]
    engine.load_payload(json.loads(bodies[0]))
    stop = threading.Event()
    swaps = [0]

    def poller() -> None:
        while not stop.wait(0.1):
            engine.load_payload(json_pieces.decode(bodies[swaps[0] % 2]))
            if freeze:
                keep_out_of_collections()
            swaps[0] += 1

    calm = _latencies(engine, 20_000 if quick else 100_000)
    thread = threading.Thread(target=poller)
    collections = _FullCollections()
    gc.callbacks.append(collections)
    thread.start()
    busy = _latencies(engine, 20_000 if quick else 100_000)
    stop.set()
    thread.join()
    gc.callbacks.remove(collections)
    engine.close()
    gc.unfreeze()
    for label, samples in (("no swaps", calm), (f"{swaps[0]} swaps", busy)):
        samples.sort()
        print(
            f"  {label:>10}: median {samples[len(samples) // 2]:.0f} ns, p99 "
            f"{samples[int(len(samples) * 0.99)]:.0f} ns, p99.9 "
            f"{samples[int(len(samples) * 0.999)] / 1e3:.0f} us, max {samples[-1] / 1e3:.0f} us"
        )
    print(
        f"  the max is the interpreter's: {len(collections.pauses)} full garbage collections "
        f"ran meanwhile, the longest {max(collections.pauses, default=0.0):.0f} ms, and a "
        "thread that is decoding holds the GIL for up to the 5 ms switch interval"
    )
    worst = busy[-1] / 1e6
    print(f"  target: no caller stall over 5 ms: {worst:.1f} ms, {'yes' if worst <= 5 else 'no'}")


class _FullCollections:
    """A gc callback that records how long each full (generation 2) collection took."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._started) * 1e3)


def _latencies(engine: Engine, count: int, seconds: float = 2.0) -> list[float]:
    samples = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    while clock() < deadline or len(samples) < count:
        started = clock()
        engine.check(CALLER, model="gpt-4o", provider="openai")
        samples.append(float(clock() - started))
    return samples


def memory(quick: bool) -> None:
    print("resident memory over many checks (1,000 rules, 5 breached, varied callers)")
    with tempfile.TemporaryDirectory() as cache:
        sides = Sides(cache)
        rules = [rule(i, filtered=True, breached=i <= 5) for i in range(1, 1001)]
        sides.load({"rules": rules})
        total = 200_000 if quick else 1_000_000
        for name, check, count in (
            ("ours", sides.ours, total),
            ("reference", sides.reference, total // 100),
        ):
            gc.collect()
            before = _rss_kib()
            for i in range(count):
                metadata = {
                    "subscriber": {"email": f"user-{i % 1000}@example.com"},
                    "organizationName": f"org-{i % 50}",
                }
                try:
                    check(metadata, model=f"model-{i % 97}", provider="openai")
                except Exception:
                    pass
            gc.collect()
            print(
                f"  {name}: {count:,} checks, RSS {before / 1024:.1f} -> "
                f"{_rss_kib() / 1024:.1f} MiB"
            )
        sides.close()


def rss_per_rules() -> None:
    """Resident memory each side adds to hold 10,000 rules (loaded from the same snapshot)."""
    print("resident memory added by 10,000 rules held (and checked once), each side")
    with tempfile.TemporaryDirectory() as cache:
        sides = Sides(cache)
        for name, check in (("ours", sides.ours), ("reference", sides.reference)):
            sides.load({"rules": []})
            gc.collect()
            before = _rss_kib()
            sides.load({"rules": ten_thousand(breached_last=False)}, warm=False)
            check(CALLER, model="gpt-4o", provider="openai")
            gc.collect()
            print(f"  {name}: +{(_rss_kib() - before) / 1024:.1f} MiB")
        sides.close()


def _rss_kib() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024
    except OSError:
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    take_in()
    restart_take_in()
    threads(args.quick)
    swapping(args.quick)
    memory(args.quick)
    rss_per_rules()


if __name__ == "__main__":
    main()
