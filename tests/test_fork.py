"""Forked children: each polls for itself, and none deadlocks, whatever the parent was doing.

Real forks (``os.fork``, multiprocessing's ``fork`` context) against a real
rules server in the parent. A child reports over a pipe, and the parent
reads with a deadline and kills a child that does not answer, so a deadlock
fails the test instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import multiprocessing
import os
import select
import signal
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

import pytest
from _support import FAST, FUTURE, blocks, breached, wait_until

import enforcement
import enforcement._default
from enforcement import Engine
from enforcement._mirror import Mirror
from enforcement._wire import parse_payload
from enforcement.testing import RulesServer, make_rule

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

# Generous: a child on a busy machine still answers in well under a second.
ANSWER_SECONDS = 20.0


def lifted(rule_id: int = 1) -> dict[str, Any]:
    return make_rule(rule_id, f"cap-{rule_id}", breached=False, window_end=FUTURE)


@contextlib.contextmanager
def fork_allowed() -> Iterator[None]:
    """Python 3.12+ warns that forking a threaded process may deadlock: that is the point here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


class Child:
    """An ``os.fork`` child running ``body(say)``; ``say(text)`` sends the parent a line."""

    def __init__(self, body: Callable[[Callable[[str], None]], None]) -> None:
        read, write = os.pipe()
        with fork_allowed():
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(read)

                def say(text: str) -> None:
                    os.write(write, text.encode() + b"\n")

                try:
                    body(say)
                    code = 0
                except BaseException:
                    say("error " + traceback.format_exc().replace("\n", " | "))
            finally:
                os._exit(code)
        os.close(write)
        self.pid = pid
        self._read = read
        self._buffer = b""

    def line(self, timeout: float = ANSWER_SECONDS) -> str:
        """The child's next line; ``"timeout"`` when it sent none in time (stuck)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._read], [], [], remaining)[0]:
                return "timeout"
            chunk = os.read(self._read, 4096)
            if not chunk:
                return "eof"
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def finish(self, timeout: float = 10.0) -> int:
        """The child's exit code, once it exits; killed past ``timeout`` (negative: killed)."""
        os.close(self._read)
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            time.sleep(0.01)


def polling_every_second(server: RulesServer, cache: str) -> dict[str, str]:
    return server.env(REVENIUM_CACHE_DIR=cache, REVENIUM_CB_POLL_INTERVAL_SECONDS="1")


def watch_for_the_lift(engine: Engine, say: Callable[[str], None]) -> None:
    """Child side: enforce the inherited breach, then wait for the lift to arrive by polling."""
    say(f"ready {blocks(engine)}")
    lifted_seen = wait_until(lambda: not blocks(engine), 15.0)
    say(f"lifted {lifted_seen} poller_alive {engine.status().poller_alive}")


# -- defect 1: a child polls for itself, however fresh its inherited cache -----------


def test_an_os_fork_child_polls_for_itself_while_the_inherited_cache_is_fresh(
    server: RulesServer, make_engine: Callable[..., Engine]
) -> None:
    # No disk snapshot, so nothing but this child's own poller can bring the lift.
    env = polling_every_second(server, "off")
    engine = make_engine(environ=env, retry_policy=FAST, timeout=2.0)
    server.set_rules([breached()])
    assert engine.refresh() and blocks(engine)
    assert not engine.status().stale  # fresh for two minutes: nothing makes the parent poll
    assert not engine.status().poller_alive
    child = Child(lambda say: watch_for_the_lift(engine, say))
    try:
        assert child.line() == "ready True"
        before = server.request_count
        server.set_rules([lifted()])
        assert child.line() == "lifted True poller_alive True"
        assert server.request_count > before  # the child's own requests
    finally:
        assert child.finish() == 0


def _multiprocessing_worker(engine: Engine, conn: Connection) -> None:  # pragma: no cover
    watch_for_the_lift(engine, conn.send)


def test_a_multiprocessing_fork_child_polls_for_itself(
    server: RulesServer, make_engine: Callable[..., Engine]
) -> None:
    env = polling_every_second(server, "off")
    engine = make_engine(environ=env, retry_policy=FAST, timeout=2.0)
    server.set_rules([breached()])
    assert engine.refresh() and blocks(engine)
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    with fork_allowed():
        process = context.Process(target=_multiprocessing_worker, args=(engine, child_end))
        process.start()
    try:
        assert parent_end.poll(ANSWER_SECONDS)
        assert parent_end.recv() == "ready True"
        server.set_rules([lifted()])
        assert parent_end.poll(ANSWER_SECONDS)
        assert parent_end.recv() == "lifted True poller_alive True"
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
    assert process.exitcode == 0


def test_preloaded_workers_each_keep_their_rules_fresh(
    server: RulesServer, make_engine: Callable[..., Engine], tmp_path: Path
) -> None:
    """gunicorn ``--preload``: the parent's first call loads the rules and starts its
    poller, then it forks workers that serve calls.

    All three processes share a cache directory, so the host may send one
    request per interval between them (a process adopts a fetch another made
    within the interval). Asserted is what a worker owes its callers: its own
    poller runs, and a lift served after the fork reaches it by polling.
    """
    env = polling_every_second(server, str(tmp_path / "cache"))
    parent = make_engine(environ=env, retry_policy=FAST, timeout=2.0)
    server.set_rules([breached()])
    blocks(parent)  # the first call: starts the parent's poller
    assert wait_until(lambda: blocks(parent), 10.0)
    assert parent.status().poller_alive
    workers = [Child(lambda say: watch_for_the_lift(parent, say)) for _ in range(2)]
    try:
        assert [worker.line() for worker in workers] == ["ready True"] * 2
        server.set_rules([lifted()])
        assert [worker.line() for worker in workers] == ["lifted True poller_alive True"] * 2
    finally:
        assert [worker.finish() for worker in workers] == [0, 0]


# -- defect 2: no lock of the parent's is held in the child ---------------------------


@contextlib.contextmanager
def held_by_another_thread(lock: Any) -> Iterator[None]:
    """``lock`` held by a thread of this process for the duration of the block."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(5)
    try:
        yield
    finally:
        release.set()
        holder.join(5)


def write_snapshot(cache: Path, server: RulesServer, rules: list[dict[str, Any]]) -> None:
    payload = parse_payload({"rules": rules})
    Mirror(str(cache), server.base_url, server.team_id).save(payload, etag=None, fetched_at=0.0)


def first_check_in_child(engine: Engine, say: Callable[[str], None]) -> None:
    say(f"blocked {blocks(engine)}")


def test_children_forked_while_a_thread_holds_the_start_lock_all_answer(
    server: RulesServer, make_engine: Callable[..., Engine], tmp_path: Path
) -> None:
    write_snapshot(tmp_path / "cache", server, [breached()])
    # No key: nothing is fetched, so the snapshot is all any process has.
    env = server.env(REVENIUM_CACHE_DIR=str(tmp_path / "cache"), REVENIUM_METERING_API_KEY=None)
    engine = make_engine(environ=env, retry_policy=FAST, timeout=2.0)
    answers = []
    # What a thread inside the first call does: hold the start lock while it reads the snapshot.
    with held_by_another_thread(engine._refresher.start_lock):
        for _ in range(5):
            child = Child(lambda say: first_check_in_child(engine, say))
            answers.append(child.line())
            child.finish()
    assert answers == ["blocked True"] * 5


def test_children_forked_during_a_slow_first_snapshot_load_all_answer(
    server: RulesServer, make_engine: Callable[..., Engine], tmp_path: Path
) -> None:
    # Big enough that reading and compiling it takes a good fraction of a second.
    rules = [make_rule(i, f"rule-{i}", window_end=FUTURE) for i in range(1, 20_000)]
    write_snapshot(tmp_path / "cache", server, [*rules, breached(20_000)])
    env = server.env(REVENIUM_CACHE_DIR=str(tmp_path / "cache"), REVENIUM_METERING_API_KEY=None)
    answers = []
    for _ in range(5):
        engine = make_engine(environ=env, retry_policy=FAST, timeout=2.0)
        first = threading.Thread(target=blocks, args=(engine,), daemon=True)
        first.start()
        assert wait_until(engine._refresher.start_lock.locked, 10.0)  # the first call is loading
        child = Child(functools.partial(first_check_in_child, engine))
        answers.append(child.line())
        child.finish()
        first.join(30)
    assert answers == ["blocked True"] * 5


def _refresh_and_check(engine: Engine, say: Callable[[str], None]) -> None:
    say(f"refreshed {engine.refresh()} blocked {blocks(engine)}")


def _rules_arrive(engine: Engine, say: Callable[[str], None]) -> None:
    blocks(engine)  # the first call starts this child's poller
    say(f"blocked {wait_until(lambda: blocks(engine), 10.0)}")


def _warn_only_check(engine: Engine, say: Callable[[str], None]) -> None:
    engine.load_payload({"rules": [breached(2, action="WARN_ONLY")]})
    say(f"blocked {blocks(engine)}")


def _default_engine_check(engine: Engine, say: Callable[[str], None]) -> None:
    os.environ["REVENIUM_TEAM_ID"] = "a-team-the-default-engine-has-not-seen"
    enforcement.check_enforcement({}, model="gpt-4o")  # builds a new default engine
    say("blocked False")


def _uninstrument(engine: Engine, say: Callable[[str], None]) -> None:
    enforcement.uninstrument("openai")
    say("blocked False")


def _openai_instrumentor_lock(engine: Engine) -> Any:
    from enforcement.hooks.openai import INSTRUMENTOR

    return INSTRUMENTOR._lock


@pytest.mark.parametrize(
    ("lock_of", "child_body", "answer"),
    [
        pytest.param(
            lambda engine: engine._refresher._feed_lock,
            _refresh_and_check,
            "refreshed True blocked True",
            id="feed",
        ),
        pytest.param(
            lambda engine: engine._refresher.poller._lock,
            _rules_arrive,
            "blocked True",
            id="poller",
        ),
        pytest.param(
            lambda engine: engine._reporter._lock, _warn_only_check, "blocked False", id="warned"
        ),
        pytest.param(
            lambda engine: enforcement._default._default.lock,
            _default_engine_check,
            "blocked False",
            id="default-engine",
        ),
        pytest.param(_openai_instrumentor_lock, _uninstrument, "blocked False", id="instrumentor"),
    ],
)
def test_a_child_forked_while_another_thread_holds_a_lock_never_waits_for_it(
    server: RulesServer,
    make_engine: Callable[..., Engine],
    tmp_path: Path,
    lock_of: Callable[[Engine], Any],
    child_body: Callable[[Engine, Callable[[str], None]], None],
    answer: str,
) -> None:
    server.set_rules([breached()])
    env = server.env(REVENIUM_CACHE_DIR=str(tmp_path / "cache"))
    engine = make_engine(environ=env, retry_policy=FAST, timeout=2.0)
    with held_by_another_thread(lock_of(engine)):
        child = Child(lambda say: child_body(engine, say))
        try:
            assert child.line() == answer
        finally:
            assert child.finish() == 0


def test_registering_for_forks_keeps_no_engine_alive() -> None:
    engine = Engine(environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true"})
    ref = weakref.ref(engine)
    engine.close()
    del engine
    gc.collect()
    assert ref() is None
