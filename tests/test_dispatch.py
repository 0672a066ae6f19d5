"""The dispatcher: listeners on a real worker thread, never on the caller's; caller digests.

Nothing here asserts a duration. "A slow listener does not delay a call" is
shown by counting how many submits completed while the listener was still
busy; overflow by holding the listener on an event while the queue fills.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from enforcement._dispatch import Dispatcher
from enforcement._events import DIGEST_HEX_CHARS, Decision, caller_digests

WAIT = 30.0  # generous: only ever reached when something is broken


def decision(rule_id: int = 1, kind: str = "block") -> Decision:
    return Decision(kind, rule_id, f"cap-{rule_id}", 2.0, 1.0, "Request blocked")


class Gate:
    """A listener that holds the worker until released, and says when it got there."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[Decision] = []

    def __call__(self, item: Decision) -> None:
        self.entered.set()
        assert self.release.wait(WAIT)
        self.seen.append(item)


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    built = Dispatcher()
    yield built
    assert built.close(WAIT)


def test_no_listeners_no_thread(dispatcher: Dispatcher) -> None:
    before = threading.active_count()
    for rule_id in range(100):
        dispatcher.submit(decision(rule_id))
    assert threading.active_count() == before
    assert dispatcher.stats().queued == 0
    assert dispatcher.flush(WAIT)


def test_listener_runs_off_the_callers_thread_in_order(dispatcher: Dispatcher) -> None:
    threads: set[str] = set()
    seen: list[int] = []

    def listener(item: Decision) -> None:
        threads.add(threading.current_thread().name)
        seen.append(item.rule_id)

    dispatcher.add(listener)
    for rule_id in range(50):
        dispatcher.submit(decision(rule_id))
    assert dispatcher.flush(WAIT)
    assert seen == list(range(50))
    assert threads == {"enforcement-listeners"}
    assert dispatcher.stats().delivered == 50
    assert dispatcher.close(WAIT)


def test_a_slow_listener_does_not_delay_submit(dispatcher: Dispatcher) -> None:
    submitted = 0
    when_listener_returned: list[int] = []

    def slow(item: Decision) -> None:
        if not when_listener_returned:
            time.sleep(1.0)
            when_listener_returned.append(submitted)

    dispatcher.add(slow)
    for rule_id in range(200):
        dispatcher.submit(decision(rule_id))
        submitted += 1
    assert dispatcher.flush(WAIT)
    assert when_listener_returned == [200]
    assert dispatcher.stats().delivered == 200


def test_overflow_drops_and_counts() -> None:
    dispatcher = Dispatcher(capacity=10)
    gate = Gate()
    dispatcher.add(gate)
    dispatcher.submit(decision(0))
    assert gate.entered.wait(WAIT)  # the worker holds decision 0; the queue is empty
    for rule_id in range(1, 16):
        dispatcher.submit(decision(rule_id))
    assert dispatcher.dropped == 5
    gate.release.set()
    assert dispatcher.flush(WAIT)
    assert [item.rule_id for item in gate.seen] == list(range(11))
    assert dispatcher.stats().dropped == 5
    assert dispatcher.close(WAIT)


def test_a_failing_listener_is_counted_and_logged_and_the_next_one_runs(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Decision] = []

    def broken(item: Decision) -> None:
        raise RuntimeError("listener bug")

    dispatcher.add(broken)
    dispatcher.add(seen.append)
    with caplog.at_level(logging.DEBUG, logger="enforcement"):
        dispatcher.submit(decision(1))
        dispatcher.submit(decision(2))
        assert dispatcher.flush(WAIT)
    assert [item.rule_id for item in seen] == [1, 2]
    assert dispatcher.failed == 2
    failures = [record for record in caplog.records if "listener" in record.getMessage()]
    assert failures
    assert {record.levelno for record in failures} == {logging.DEBUG}


def test_remove_stops_delivery(dispatcher: Dispatcher) -> None:
    seen: list[Decision] = []
    dispatcher.add(seen.append)
    dispatcher.submit(decision(1))
    assert dispatcher.flush(WAIT)
    dispatcher.remove(seen.append)
    dispatcher.submit(decision(2))
    assert dispatcher.flush(WAIT)
    assert [item.rule_id for item in seen] == [1]
    with pytest.raises(ValueError):
        dispatcher.remove(seen.append)


def test_close_delivers_what_is_queued_and_a_later_submit_restarts() -> None:
    dispatcher = Dispatcher(name="test-close-worker")
    seen: list[Decision] = []
    dispatcher.add(seen.append)
    for rule_id in range(20):
        dispatcher.submit(decision(rule_id))
    assert dispatcher.close(WAIT)
    assert len(seen) == 20
    assert not any(thread.name == "test-close-worker" for thread in threading.enumerate())
    dispatcher.submit(decision(20))
    assert dispatcher.flush(WAIT)
    assert seen[-1].rule_id == 20
    assert dispatcher.close(WAIT)


def test_many_threads_submitting_lose_nothing_below_capacity(dispatcher: Dispatcher) -> None:
    seen: list[Decision] = []
    dispatcher.add(seen.append)

    def submit_many(base: int) -> None:
        for offset in range(500):
            dispatcher.submit(decision(base + offset))

    threads = [threading.Thread(target=submit_many, args=(base * 1000,)) for base in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert dispatcher.flush(WAIT)
    assert sorted(item.rule_id for item in seen) == sorted(
        base * 1000 + i for base in range(4) for i in range(500)
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_fresh_queue_and_its_own_worker() -> None:
    dispatcher = Dispatcher()
    gate = Gate()
    dispatcher.add(gate)
    dispatcher.submit(decision(0))
    assert gate.entered.wait(WAIT)  # the parent's worker is busy mid-listener at the fork
    dispatcher.submit(decision(1))  # queued in the parent
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns on forking a threaded process: our subject
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's atexit
        status = 1
        try:
            fresh = dispatcher.stats() == (0, 0, 0, 0) and dispatcher._worker is None
            seen: list[Decision] = []
            dispatcher.remove(gate)
            dispatcher.add(seen.append)
            dispatcher.submit(decision(2))
            flushed = dispatcher.flush(WAIT)
            report = f"{fresh} {flushed} {[item.rule_id for item in seen]}"
            os.write(write_end, report.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], WAIT)
        report = os.read(read_end, 1000).decode() if ready else "no answer"
    finally:
        os.close(read_end)
        gate.release.set()
        _, status = os.waitpid(pid, 0)
    assert report == "True True [2]"
    assert status == 0
    assert dispatcher.flush(WAIT)
    assert [item.rule_id for item in gate.seen] == [0, 1]
    assert dispatcher.close(WAIT)


# -- caller digests --------------------------------------------------------------


def test_caller_digests_are_short_stable_and_salted() -> None:
    keys = [("subscriber_email", "dev@acme.com"), ("organization", "acme")]
    digests = caller_digests(keys, salt="team-1")
    assert [kind for kind, _ in digests] == ["subscriber_email", "organization"]
    for _, digest in digests:
        assert len(digest) == DIGEST_HEX_CHARS
        int(digest, 16)
    assert caller_digests(keys, salt="team-1") == digests
    assert caller_digests(keys, salt="team-2") != digests
    assert "acme" not in repr(digests)


def test_caller_digests_hash_the_kind_and_take_long_salts() -> None:
    same_value = caller_digests([("subscriber_id", "x"), ("organization", "x")], salt="t")
    assert same_value[0][1] != same_value[1][1]
    long_salt = "t" * 500
    assert caller_digests([("a", "b")], long_salt) == caller_digests([("a", "b")], long_salt)
    assert caller_digests([("a", "b")], long_salt) != caller_digests([("a", "b")], "t" * 499)
