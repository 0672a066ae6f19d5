"""The spend ledger's cost per call: a reserve and its commit, at each scope.

    python benchmarks/bench_ledger.py [--quick] [--against OLD_LEDGER_PY]

``--against`` loads another version of ``enforcement/_ledger.py`` (say
``git show HEAD~1:enforcement/_ledger.py > /tmp/old_ledger.py``) and runs its
process and host ledgers interleaved with ours, in the "reference" column, so
that a before/after ratio comes from one run on one (noisy) machine.

"in-process" is the path a call takes while its allowance covers it (every
call but those near a cap); "sync" forces the path that takes the file lock
or a Redis round trip on the caller's thread, by giving every call a newer
payload (``since``), which is what a naive shared ledger would pay per call.
Redis rows need ``redis-server`` on PATH; one is started on a free port.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from types import ModuleType
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import Result, compare, print_table

from enforcement._host_ledger import HostLedger
from enforcement._ledger import Bucket, Ledger, ProcessLedger, bucket_key

ROOMY = 1e15  # never near the cap: measures the common path
REDIS_ARGS = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def buckets(count: int) -> list[Bucket]:
    now = time.time()
    return [
        Bucket(bucket_key("bench", i, now + 86_400), ROOMY, True, now - 60, now + 86_400)
        for i in range(count)
    ]


def pair(ledger: Any, count: int, newer_payload_each_call: bool = False) -> Callable[[], None]:
    """One reserve and its commit on ``count`` buckets, at one clock reading (as the engine)."""
    chosen = buckets(count)  # the same fields in every version, so --against takes them too
    amounts = [0.01] * count
    sinces = itertools.count(chosen[0].since, 1e-3)
    reserve, commit, clock = ledger.reserve, ledger.commit, time.time

    def call() -> None:
        targets = chosen
        if newer_payload_each_call:
            since = next(sinces)
            targets = [b._replace(since=since) for b in chosen]
        now = clock()
        hold = reserve(targets, amounts, now)
        assert not isinstance(hold, tuple), "refused"  # a refusal is a Bucket in every version
        commit(hold, amounts, now)

    return call


def load_against(path: str) -> ModuleType:
    """Another version of ``enforcement/_ledger.py``, importable beside ours."""
    name = "enforcement._ledger_against"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_redis(rounds: int) -> list[Result]:
    if shutil.which("redis-server") is None:
        print("redis-server not installed: no Redis rows", file=sys.stderr)
        return []
    from enforcement._redis_ledger import RedisLedger

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [*REDIS_ARGS, "--port", str(port), "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        try:
            ledger = _ready(RedisLedger, f"redis://127.0.0.1:{port}/0")
            results = [
                compare("redis, in-process path, 1 bucket", pair(ledger, 1), None, rounds),
                compare("redis, in-process path, 4 buckets", pair(ledger, 4), None, rounds),
                compare("redis, sync path (round trip), 1 bucket", pair(ledger, 1, True), None, 5),
            ]
            ledger.close()
            return results
        finally:
            server.kill()
            server.wait()


def _ready(make: Callable[[str], Ledger], url: str) -> Ledger:
    """A ledger once the server answers."""
    deadline = time.monotonic() + 30
    while True:
        ledger = make(url)
        try:
            pair(ledger, 1)()
            return ledger
        except Exception:
            ledger.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run(quick: bool, against: Optional[ModuleType] = None) -> list[Result]:
    rounds = 5 if quick else 15
    results = [
        compare(
            f"process, {count} bucket{'s' * (count > 1)}",
            pair(ProcessLedger(), count),
            pair(against.ProcessLedger(), count) if against else None,
            rounds,
        )
        for count in (1, 4)
    ]
    with tempfile.TemporaryDirectory() as directory:
        host = HostLedger(directory, "bench")
        other = against.HostLedger(directory, "bench-against") if against else None
        results += [
            compare(
                f"host, in-process path, {count} bucket{'s' * (count > 1)}",
                pair(host, count),
                pair(other, count) if other else None,
                rounds,
            )
            for count in (1, 4)
        ]
        results.append(
            compare("host, sync path (file lock), 1 bucket", pair(host, 1, True), None, 5)
        )
        host.close()
        if other:
            other.close()
    return results + run_redis(rounds)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--against", metavar="LEDGER_PY", help="another _ledger.py, side by side")
    args = parser.parse_args(argv)
    against = load_against(args.against) if args.against else None
    print_table(run(args.quick, against))


if __name__ == "__main__":
    main()
