"""Unit test of enforcement._pace: a nap once a thread ran HOLD of CPU time, else nothing."""

from __future__ import annotations

import os
import sys
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


def test_sharing_lowers_the_switch_interval_and_puts_it_back() -> None:
    before = sys.getswitchinterval()
    with _pace.sharing():
        assert sys.getswitchinterval() == _pace.SHARED_SWITCH_INTERVAL
        with _pace.sharing():  # nested (a decode inside a take-in): still lowered
            assert sys.getswitchinterval() == _pace.SHARED_SWITCH_INTERVAL
        assert sys.getswitchinterval() == _pace.SHARED_SWITCH_INTERVAL
    assert sys.getswitchinterval() == before


def test_sharing_keeps_an_interval_the_application_set_meanwhile() -> None:
    before = sys.getswitchinterval()
    try:
        with _pace.sharing():
            sys.setswitchinterval(0.002)
        assert sys.getswitchinterval() == 0.002
    finally:
        sys.setswitchinterval(before)


def test_sharing_from_two_threads_restores_once_both_left() -> None:
    before = sys.getswitchinterval()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with _pace.sharing():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(5)
    with _pace.sharing():
        pass
    assert sys.getswitchinterval() == _pace.SHARED_SWITCH_INTERVAL  # the other is still inside
    release.set()
    thread.join(5)
    assert sys.getswitchinterval() == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_sharing_gets_the_interval_back() -> None:
    before = sys.getswitchinterval()
    read, write = os.pipe()
    with _pace.sharing():
        pid = os.fork()
        if pid == 0:  # the child: report its interval and leave at once
            os.write(write, repr(sys.getswitchinterval()).encode())
            os._exit(0)
    os.waitpid(pid, 0)
    os.close(write)
    assert float(os.read(read, 64)) == before
    os.close(read)
