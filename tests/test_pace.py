"""Unit test of enforcement._pace: a nap once a thread ran HOLD of CPU time, else nothing."""

from __future__ import annotations

import threading
import time

import pytest

from enforcement import _pace


def busy(cpu_seconds: float) -> None:
    until = time.thread_time() + cpu_seconds
    while time.thread_time() < until:
        pass


def test_naps_once_per_hold_of_cpu_time(monkeypatch: pytest.MonkeyPatch) -> None:
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    _pace.pace()  # starts this thread's count (or naps for the time run before)
    naps.clear()
    for _ in range(4):
        busy(_pace.HOLD / 4)
        _pace.pace()
    assert len(naps) == 1 and naps[0] > 0  # a real sleep: 0 may hand the GIL to nobody
    _pace.pace()
    assert len(naps) == 1  # the count starts again after a nap


def test_each_thread_counts_its_own_time(monkeypatch: pytest.MonkeyPatch) -> None:
    naps: list[str] = []
    monkeypatch.setattr(time, "sleep", lambda _: naps.append("nap"))
    _pace.pace()
    naps.clear()
    busy(2 * _pace.HOLD)
    other = threading.Thread(target=_pace.pace)  # new thread: its first call only starts
    other.start()
    other.join()
    assert naps == []
    _pace.pace()
    assert naps == ["nap"]
