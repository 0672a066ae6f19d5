"""Taking in a rule set, concurrency, and memory: ours and the reference side by side.

    python benchmarks/bench_load.py [--quick] [--only take-in,swapping,rss]

* take-in: a new team's 10,000 rules served by a local rules server, timed
  from the first call until the last (breached) rule is enforced: fetch,
  decode, install and the disk snapshot, through each library's own poller;
  then our stages alone, with the peak memory of each;
* 64 threads checking at once: total checks per second;
* one caller thread's gaps while a poller-like thread swaps in a freshly
  decoded and compiled 10,000-rule set every 100 ms, against a calm arm in
  the same run, with and without ``REVENIUM_CB_GC_FREEZE``: the part of
  each gap the swapping thread spent running (its CPU clock) is the stall
  it caused; and the swapper's longest GIL hold, seen by a probe thread at
  a 0.1 ms switch interval;
* resident memory over 1,000,000 of our checks (and 100,000 of the reference's);
* resident memory added by 10,000 rules, each side in a fresh process.
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_check import CALLER, Sides, rule, write_snapshot

import enforcement
from enforcement import Engine
from enforcement import _json as json_pieces
from enforcement._mirror import Mirror
from enforcement._ruleset import RuleSet
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

    ours_times: list[float] = []
    reference_times: list[float] = []
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
    return float(statistics.median(parts)) * 1e3


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
    """Caller stalls while rule sets are swapped, and the longest GIL hold of the swapper."""
    seconds = 1.0 if quick else 3.0
    for freeze in (False, True):
        _swapping(seconds, 2 if quick else 4, freeze)
    _longest_hold(seconds)


def _swapping_engine(freeze: bool) -> tuple[Engine, list[bytes]]:
    environ = {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}
    if freeze:
        environ["REVENIUM_CB_GC_FREEZE"] = "on"
    engine = Engine(environ=environ)
    bodies = [
        json.dumps({"rules": ten_thousand(breached_last=False)}).encode(),
        json.dumps({"rules": [*ten_thousand(breached_last=False), rule(10_001)]}).encode(),
    ]
    engine.load_payload(json.loads(bodies[0]))
    return engine, bodies


class _Swapper:
    """A poller-like thread: decode a 10,000-rule body and install it every 100 ms."""

    def __init__(self, engine: Engine, bodies: list[bytes]) -> None:
        self.engine, self.bodies = engine, bodies
        self.swaps = 0
        self.busy: list[float] = []  # wall seconds per swap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="swapper")

    def __enter__(self) -> _Swapper:
        self._thread.start()
        assert self._thread.ident is not None
        self.cpu_clock = time.pthread_getcpuclockid(self._thread.ident)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            started = time.perf_counter()
            self.engine.load_payload(self.bodies[self.swaps % 2])  # taken in as a fetched body
            self.busy.append(time.perf_counter() - started)
            self.swaps += 1


def _swapping(seconds: float, rounds: int, freeze: bool) -> None:
    how = "with REVENIUM_CB_GC_FREEZE=on" if freeze else "default settings"
    print(
        "caller gaps (time between two checks' ends, one caller thread) while a 10,000-rule set "
        f"is swapped in every 100 ms, {how}; {rounds} interleaved rounds of {seconds:.0f} s"
    )
    engine, bodies = _swapping_engine(freeze)
    calm: list[float] = []
    busy: list[float] = []
    ours: list[float] = []
    collections = _FullCollections()
    swapped, swap_times = 0, []
    for _ in range(rounds):
        calm.extend(_gaps(engine, seconds)[0])
        gc.callbacks.append(collections)
        with _Swapper(engine, bodies) as swapper:
            gaps, swapper_ran = _gaps(engine, seconds, swapper.cpu_clock)
        gc.callbacks.remove(collections)
        busy.extend(gaps)
        ours.extend(swapper_ran)
        swapped += swapper.swaps
        swap_times.extend(swapper.busy)
    engine.close()
    gc.unfreeze()
    for label, samples in (
        ("no swaps", calm),
        (f"{swapped} swaps", busy),
        ("ours", ours),
    ):
        samples.sort()
        print(
            f"  {label:>10}: median {samples[len(samples) // 2]:.0f} ns, p99.9 "
            f"{samples[int(len(samples) * 0.999)] / 1e3:.0f} us, p99.99 "
            f"{samples[int(len(samples) * 0.9999)] / 1e3:.0f} us, max {samples[-1] / 1e6:.1f} ms"
        )
    print(
        "  ('ours': the part of each gap the swapping thread spent running, by its CPU clock: "
        "the stall it caused, without the OS's)"
    )
    print(
        f"  a swap took {statistics.median(swap_times) * 1e3:.0f} ms of wall time (median) "
        f"while the caller ran; {len(collections.pauses)} full collections ran during swaps, "
        f"the longest {max(collections.pauses, default=0.0):.1f} ms"
    )
    stall, everything = ours[-1] / 1e6, busy[-1] / 1e6
    print(
        f"  target: no caller stall over 5 ms while swapping: {stall:.1f} ms caused by the "
        f"swapping thread (worst gap {everything:.1f} ms, calm arm {calm[-1] / 1e6:.1f} ms), "
        f"{'yes' if stall <= 5 else 'no'}"
    )


def _gaps(
    engine: Engine, seconds: float, other: Optional[int] = None
) -> tuple[list[float], list[float]]:
    """Nanoseconds between the ends of consecutive checks: a stall anywhere in the loop shows.

    With ``other`` (a thread's CPU clock), also how much of each gap that
    thread spent running: the GIL it held while this one waited. The arrays
    are filled in before the clock starts: growing one in the loop copies and
    page-faults megabytes, a stall of our own making.
    """
    room = int(seconds * 4_000_000)
    gaps, ran = array.array("q", bytes(8 * room)), array.array("q", bytes(8 * room))
    clock, check, cpu = time.perf_counter_ns, engine.check, time.clock_gettime_ns
    count, last = 0, clock()
    deadline = last + int(seconds * 1e9)
    if other is None:
        while last < deadline and count < room:
            check(CALLER, model="gpt-4o", provider="openai")
            now = clock()
            gaps[count] = now - last
            count, last = count + 1, now
        return list(gaps[:count]), []
    used = cpu(other)
    while last < deadline and count < room:
        check(CALLER, model="gpt-4o", provider="openai")
        now, using = clock(), cpu(other)
        gaps[count] = now - last
        ran[count] = min(now - last, using - used)
        count, last, used = count + 1, now, using
    return list(gaps[:count]), list(ran[:count])


def _longest_hold(seconds: float) -> None:
    """The swapper's longest stretch without a switch point, seen by a sleeping probe thread.

    With a 0.1 ms switch interval the probe gets the GIL back within 0.1 ms
    of asking, unless the swapper is inside one C call (a decode batch, a
    decref cascade, a collection): the probe's lateness is that call, when
    the swapper's CPU clock shows it ran all along (else the OS was late).
    """
    for freeze in (False, True):
        engine, bodies = _swapping_engine(freeze)
        collections = _FullCollections()
        interval = sys.getswitchinterval()
        with _Swapper(engine, bodies) as swapper:
            sys.setswitchinterval(1e-4)
            gc.callbacks.append(collections)
            holds = _probe(swapper.cpu_clock, seconds)
            gc.callbacks.remove(collections)
            sys.setswitchinterval(interval)
        engine.close()
        gc.unfreeze()
        print(
            f"longest GIL hold of the swapping thread ({swapper.swaps} swaps, "
            f"{'REVENIUM_CB_GC_FREEZE=on' if freeze else 'default settings'}): "
            f"{holds[-1] / 1e6:.1f} ms, p99.9 {holds[int(len(holds) * 0.999)] / 1e6:.2f} ms; "
            f"full collections {len(collections.pauses)}, the longest "
            f"{max(collections.pauses, default=0.0):.1f} ms"
        )


def _probe(cpu_clock: int, seconds: float) -> list[float]:
    """Sorted nanoseconds the swapper ran while a probe thread that asked for the GIL waited."""
    holds: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            started, used = time.perf_counter_ns(), time.clock_gettime_ns(cpu_clock)
            time.sleep(0.0002)
            late = time.perf_counter_ns() - started - 200_000
            holds.append(min(late, time.clock_gettime_ns(cpu_clock) - used))

    prober = threading.Thread(target=probe)
    prober.start()
    time.sleep(seconds)
    stop.set()
    prober.join()
    return sorted(holds)


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
    """Memory each side adds to hold 10,000 rules, each side in a fresh process of its own.

    In one process the second side would reuse pages the first freed, and
    both would reuse what earlier benchmarks left, so each side is measured
    in a child that imported both libraries and loads the same snapshot.
    """
    print("memory added by 10,000 rules held (snapshot loaded, checked once), fresh process each")
    with tempfile.TemporaryDirectory() as cache:
        write_snapshot(cache, "rss-empty", {"rules": []})
        write_snapshot(cache, "rss-10k", {"rules": ten_thousand(breached_last=False)})
        added: dict[str, tuple[float, float]] = {}
        for side in ("ours", "reference"):
            rss, traced = (_in_child(side, cache, how) for how in ("rss", "traced"))
            added[side] = rss, traced
    for side, (rss, traced) in added.items():
        print(f"  {side}: RSS +{rss:.1f} MiB, Python allocations held +{traced:.1f} MiB")
    ours, ref = added["ours"][0], added["reference"][0]
    ratio = f"{ref / ours:.1f}x" if ours > 0.05 else "-"
    print(f"  RSS per 10,000 rules: ours {ours:.1f} MiB, reference {ref:.1f} MiB, ref/ours {ratio}")


def _in_child(side: str, cache: str, how: str) -> float:
    command = [sys.executable, os.path.abspath(__file__), "--rss-child", side, cache, how]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def _rss_child(side: str, cache: str, how: str) -> None:
    """One side loads the empty team, then the 10,000-rule one; prints the MiB added.

    ``how`` is ``rss`` (resident memory) or ``traced`` (Python allocations
    still held, by tracemalloc: its own tables would swell the RSS).
    """
    sides = Sides(cache)
    check = sides.ours if side == "ours" else sides.reference
    before = 0.0
    for team in ("rss-empty", "rss-10k"):
        os.environ["REVENIUM_TEAM_ID"] = team
        gc.collect()
        if team == "rss-10k":
            before = _rss_kib() / 1024
            if how == "traced":
                tracemalloc.start()
        try:
            check(CALLER, model="gpt-4o", provider="openai")
        except Exception:
            pass
    if side == "ours":  # what the poller builds after each take-in: local spend's index
        from enforcement._default import default_engine

        default_engine()._refresher.settle()
    gc.collect()
    if how == "traced":
        print(tracemalloc.get_traced_memory()[0] / 2**20)
    else:
        print(_rss_kib() / 1024 - before)
    sys.stdout.flush()
    os._exit(0)  # no poller shutdown, no atexit: only the figure goes out


def _rss_kib() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024
    except OSError:
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="comma-separated sections: take-in,restart,...,rss")
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        _rss_child(*args.rss_child)
    sections: dict[str, Callable[[], None]] = {
        "take-in": take_in,
        "restart": restart_take_in,
        "threads": lambda: threads(args.quick),
        "swapping": lambda: swapping(args.quick),
        "memory": lambda: memory(args.quick),
        "rss": rss_per_rules,
    }
    for name in args.only.split(",") if args.only else sections:
        sections[name]()


if __name__ == "__main__":
    main()
