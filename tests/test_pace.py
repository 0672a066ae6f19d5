"""Unit test of enforcement._pace: a nap once a thread ran HOLD of CPU time, else nothing."""

from __future__ import annotations

import gc
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
    """The switch interval and the paused collector alike."""
    before = sys.getswitchinterval()
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with _pace.sharing():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(5)
    with _pace.sharing():
        assert not gc.isenabled()
    assert sys.getswitchinterval() == _pace.SHARED_SWITCH_INTERVAL  # the other is still inside
    assert not gc.isenabled()
    release.set()
    thread.join(5)
    assert sys.getswitchinterval() == before and gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_sharing_gets_the_interval_and_the_collector_back() -> None:
    before = sys.getswitchinterval()
    read, write = os.pipe()
    with _pace.sharing():
        pid = os.fork()
        if pid == 0:  # the child: report its interval and collector and leave at once
            os.write(write, f"{sys.getswitchinterval()!r} {gc.isenabled()}".encode())
            os._exit(0)
    os.waitpid(pid, 0)
    os.close(write)
    interval, collecting = os.read(read, 64).split()
    assert float(interval) == before and collecting == b"True"
    os.close(read)


def test_sharing_leaves_a_collector_the_application_stopped_stopped() -> None:
    gc.disable()
    try:
        with _pace.sharing():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_sharing_starts_the_collector_again_after_an_error() -> None:
    with pytest.raises(KeyError), _pace.sharing():
        raise KeyError("x")
    assert gc.isenabled() and sys.getswitchinterval() != _pace.SHARED_SWITCH_INTERVAL
