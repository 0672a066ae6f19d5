"""The spend ledger's cost per call: a reserve and its commit, at each scope.

    python benchmarks/bench_ledger.py [--quick]

"in-process" is the path a call takes while its allowance covers it (every
call but those near a cap); "sync" forces the path that takes the file lock
or a Redis round trip on the caller's thread, by giving every call a newer
payload (``since``), which is what a naive shared ledger would pay per call.
Redis rows need ``redis-server`` on PATH; one is started on a free port.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import Result, compare, print_table

from enforcement._ledger import Bucket, Hold, HostLedger, Ledger, ProcessLedger, bucket_key

ROOMY = 1e15  # never near the cap: measures the common path
REDIS_ARGS = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def buckets(count: int) -> list[Bucket]:
    now = time.time()
    return [
        Bucket(bucket_key("bench", i, now + 86_400), ROOMY, True, now - 60, now + 86_400)
        for i in range(count)
    ]


def pair(ledger: Ledger, count: int, newer_payload_each_call: bool = False) -> Callable[[], None]:
    """One reserve and its commit on ``count`` buckets."""
    chosen = buckets(count)
    amounts = [0.01] * count
    sinces = itertools.count(chosen[0].since, 1e-3)

    def call() -> None:
        targets = chosen
        if newer_payload_each_call:
            since = next(sinces)
            targets = [b._replace(since=since) for b in chosen]
        hold = ledger.reserve(targets, amounts, time.time())
        assert isinstance(hold, Hold)
        ledger.commit(hold, amounts, time.time())

    return call


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


def run(quick: bool) -> list[Result]:
    rounds = 5 if quick else 15
    process = ProcessLedger()
    results = [
        compare("process, 1 bucket", pair(process, 1), None, rounds),
        compare("process, 4 buckets", pair(process, 4), None, rounds),
    ]
    with tempfile.TemporaryDirectory() as directory:
        host = HostLedger(directory, "bench")
        results += [
            compare("host, in-process path, 1 bucket", pair(host, 1), None, rounds),
            compare("host, in-process path, 4 buckets", pair(host, 4), None, rounds),
            compare("host, sync path (file lock), 1 bucket", pair(host, 1, True), None, 5),
        ]
        host.close()
    return results + run_redis(rounds)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args(argv)
    print_table(run(args.quick))


if __name__ == "__main__":
    main()
