"""The runaway loop, small: ours stops within the calls in flight, not a poll interval later.

A real run of ``benchmarks/bench_overshoot.py`` (its own worker process, the
real openai SDK, a local fake provider and rules feed): 4 threads against a
$0.20 pooled cap with $0.01 calls, the feed recompiling spend every 3 s and a
1 s poll. With local accrual the last admitted calls are the ones in flight
when the cap was reached, so at most 4 x $0.01 is spent past it, however
loaded the machine (only how soon the cap is reached depends on speed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# The worker calls the real openai SDK: in the whole suite, not in the core suite.
pytest.importorskip("openai")

BENCH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks", "bench_overshoot.py")
THREADS = 4
CALL_COST = 0.01
ROUNDING = 0.005


def _run_ours() -> dict[str, object]:
    command = [sys.executable, BENCH, "--impl", "ours", "--json", "--threads", str(THREADS)]
    command += ["--cap", "0.20", "--poll", "1", "--recompile", "3", "--duration", "8"]
    command += ["--latency", "0.02"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout + done.stderr[-3000:]
    outcome: dict[str, object] = json.loads(lines[-1])
    return outcome


def test_a_runaway_loop_stops_within_the_calls_in_flight() -> None:
    outcome = _run_ours()
    assert outcome["first_block"] is not None, outcome
    past = outcome["past_cap_total"]
    assert isinstance(past, float)
    assert past <= THREADS * CALL_COST + ROUNDING, outcome
