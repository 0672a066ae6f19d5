"""A tiny side-by-side harness: interleaved rounds, medians, ratios.

Both sides run in the same process on the same payloads. Each round times a
batch of calls per side (``time.perf_counter_ns``), alternating sides so that
a noisy neighbour slows both alike; the reported figure is the median of the
per-call means over the rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass
class Result:
    name: str
    ours_ns: float
    ours_p99_ns: float
    reference_ns: Optional[float]
    reference_p99_ns: Optional[float]

    @property
    def ratio(self) -> Optional[float]:
        if self.reference_ns is None:
            return None
        return self.reference_ns / self.ours_ns


def per_call_ns(fn: Callable[[], object], batch: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(batch):
        fn()
    return (time.perf_counter_ns() - start) / batch


def calibrate(fn: Callable[[], object], target_ns: float = 20e6) -> int:
    """A batch size that takes about ``target_ns`` (after a warm-up call)."""
    fn()
    batch = 1
    while True:
        elapsed = per_call_ns(fn, batch) * batch
        if elapsed >= target_ns / 4 or batch >= 1 << 20:
            return max(1, int(batch * target_ns / max(elapsed, 1.0)))
        batch *= 4


def compare(
    name: str,
    ours: Callable[[], object],
    reference: Optional[Callable[[], object]],
    rounds: int = 15,
) -> Result:
    """Median per-call time of each side over interleaved rounds."""
    ours_batch = calibrate(ours)
    ref_batch = calibrate(reference) if reference is not None else 0
    ours_times: list[float] = []
    ref_times: list[float] = []
    for _ in range(rounds):
        ours_times.append(per_call_ns(ours, ours_batch))
        if reference is not None:
            ref_times.append(per_call_ns(reference, ref_batch))
    return Result(
        name,
        statistics.median(ours_times),
        _p99(ours_times),
        statistics.median(ref_times) if ref_times else None,
        _p99(ref_times) if ref_times else None,
    )


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def fmt_ns(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    if value >= 1e3:
        return f"{value / 1e3:.2f} us"
    return f"{value:.0f} ns"


def print_table(results: Sequence[Result]) -> None:
    header = (
        f"{'scenario':<46} {'ours':>10} {'ours p99':>10} {'reference':>11} "
        f"{'ref p99':>10} {'ref/ours':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = f"{r.ratio:.1f}x" if r.ratio is not None else "-"
        print(
            f"{r.name:<46} {fmt_ns(r.ours_ns):>10} {fmt_ns(r.ours_p99_ns):>10} "
            f"{fmt_ns(r.reference_ns):>11} {fmt_ns(r.reference_p99_ns):>10} {ratio:>9}"
        )
