"""Many callers at once: whole rule sets only, nothing raised but a refusal, nothing stuck.

Every generation of rules the swapper installs is built so that a check
which saw parts of two generations would give a verdict no single
generation gives. Threads are joined with deadlines, so a deadlock fails the
test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pytest
from _support import FAST, FUTURE

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.testing import Fault, RulesServer, make_filter, make_rule

GENERATIONS = 300
THREADS = 64
LOOPS = 8
TASKS_PER_LOOP = 4
JOIN_SECONDS = 60.0
# Between two checks a caller waits, as a real one does its work: 72 threads
# spinning on the GIL would starve the swapper for seconds per turn.
PAUSE_SECONDS = 0.0005

# Each caller's model, and what a whole generation g says about it.
BOTH = "gpt-4o"  # covered by A and by B, through different filters; exactly one is breached
OTHER = "claude-3-haiku"  # covered by C alone, always breached
NOBODY = "mistral-large"  # covered by nothing
MODELS = (BOTH, OTHER, NOBODY)


def generation(g: int) -> dict[str, Any]:
    """Rule set ``g``: A breached when ``g`` is even, B when it is odd; C always."""
    return {
        "rules": [
            make_rule(
                1,
                f"A{g}",
                breached=g % 2 == 0,
                window_end=FUTURE,
                filters=[make_filter("MODEL", "IS", BOTH)],
            ),
            make_rule(
                2,
                f"B{g}",
                breached=g % 2 == 1,
                window_end=FUTURE,
                filters=[make_filter("MODEL", "IN", [BOTH, "gpt-4o-mini"])],
            ),
            make_rule(
                3,
                f"C{g}",
                breached=True,
                window_end=FUTURE,
                filters=[make_filter("MODEL", "STARTS_WITH", "claude-3")],
            ),
        ]
    }


def torn(model: str, error: Optional[BudgetExceededError]) -> Optional[str]:
    """Why this verdict comes from no single generation; ``None`` when one gives it."""
    name = error.rule_name if error is not None else None
    if model == NOBODY:
        return None if name is None else f"{model} refused by {name}"
    if name is None:
        return f"{model} let through"
    letter, number = name[0], int(name[1:])
    if model == OTHER:
        return None if letter == "C" else f"{model} refused by {name}"
    if (letter, number % 2) not in (("A", 0), ("B", 1)):
        return f"{model} refused by {name}, not breached in generation {number}"
    return None


@dataclass
class Tally:
    """What one caller saw."""

    checks: int = 0
    refusals: int = 0
    torn: list[str] = field(default_factory=list)
    unexpected: list[BaseException] = field(default_factory=list)
    went_back: list[str] = field(default_factory=list)
    _latest: int = -1

    def record(self, model: str, error: Optional[BudgetExceededError]) -> None:
        self.checks += 1
        problem = torn(model, error)
        if problem is not None:
            self.torn.append(problem)
        if error is not None:
            self.refusals += 1
            assert error.rule_name is not None
            seen = int(error.rule_name[1:])
            if seen < self._latest:  # an older rule set after a newer one
                self.went_back.append(f"{seen} after {self._latest}")
            self._latest = max(self._latest, seen)


def check_once(engine: Engine, model: str) -> Optional[BudgetExceededError]:
    try:
        engine.check({"organizationName": "acme"}, model=model, provider="openai")
    except BudgetExceededError as error:
        return error
    return None


async def acheck_once(engine: Engine, model: str) -> Optional[BudgetExceededError]:
    try:
        await engine.acheck({"organizationName": "acme"}, model=model, provider="openai")
    except BudgetExceededError as error:
        return error
    return None


def run_callers(
    engine: Engine, swap: Callable[[int], None], generations: int = GENERATIONS
) -> list[Tally]:
    """64 threads and 8 event loops check while ``swap(g)`` installs generations 1, 2, ..."""
    done = threading.Event()
    tallies: list[Tally] = []

    def thread_caller(index: int) -> None:
        tally = Tally()
        tallies.append(tally)
        model = MODELS[index % len(MODELS)]
        while not done.is_set():
            try:
                tally.record(model, check_once(engine, model))
            except BaseException as problem:
                tally.unexpected.append(problem)
                return
            time.sleep(PAUSE_SECONDS)

    async def task(tally: Tally, model: str) -> None:
        while not done.is_set():
            try:
                tally.record(model, await acheck_once(engine, model))
            except BaseException as problem:
                tally.unexpected.append(problem)
                return
            await asyncio.sleep(PAUSE_SECONDS)

    async def loop_main(index: int) -> None:
        loop_tallies = [Tally() for _ in range(TASKS_PER_LOOP)]
        tallies.extend(loop_tallies)
        await asyncio.gather(
            *(
                task(tally, MODELS[(index + n) % len(MODELS)])
                for n, tally in enumerate(loop_tallies)
            )
        )

    def loop_caller(index: int) -> None:
        asyncio.run(loop_main(index))

    def swapper() -> None:
        try:
            for g in range(1, generations):
                swap(g)
                time.sleep(0.002)
        finally:
            done.set()

    callers = [threading.Thread(target=thread_caller, args=(i,)) for i in range(THREADS)]
    callers += [threading.Thread(target=loop_caller, args=(i,)) for i in range(LOOPS)]
    swapping = threading.Thread(target=swapper)
    for thread in [*callers, swapping]:
        thread.daemon = True
        thread.start()
    deadline = time.monotonic() + JOIN_SECONDS
    for thread in [swapping, *callers]:
        thread.join(max(0.0, deadline - time.monotonic()))
    done.set()
    stuck = [thread.name for thread in [swapping, *callers] if thread.is_alive()]
    assert not stuck, f"deadlocked: {stuck}"
    assert len(tallies) == THREADS + LOOPS * TASKS_PER_LOOP
    return tallies


def assert_whole_rule_sets(tallies: list[Tally]) -> None:
    unexpected = [problem for tally in tallies for problem in tally.unexpected]
    assert not unexpected, unexpected[:5]
    torn_reads = [problem for tally in tallies for problem in tally.torn]
    assert not torn_reads, (len(torn_reads), torn_reads[:5])
    went_back = [problem for tally in tallies for problem in tally.went_back]
    assert not went_back, went_back[:5]
    assert all(tally.checks > 0 for tally in tallies)
    assert sum(tally.refusals for tally in tallies) > 0


def test_callers_see_whole_rule_sets_while_payloads_are_swapped_in(
    make_engine: Callable[..., Engine], env: dict[str, str]
) -> None:
    engine = make_engine(environ=env)
    engine.load_payload(generation(0))
    tallies = run_callers(engine, lambda g: engine.load_payload(generation(g)))
    assert_whole_rule_sets(tallies)
    assert engine.status().generation == GENERATIONS


def test_callers_see_whole_rule_sets_while_refreshes_swap_them_in(
    make_engine: Callable[..., Engine], server: RulesServer
) -> None:
    """The fetch path: each refresh reads the feed, compiles and installs a new rule set."""
    engine = make_engine(environ=server.env(REVENIUM_CACHE_DIR="off"), retry_policy=FAST)
    server.set_payload(generation(0))
    assert engine.refresh()

    def swap(g: int) -> None:
        server.set_payload(generation(g))
        assert engine.refresh()

    assert_whole_rule_sets(run_callers(engine, swap, generations=100))
    assert engine.status().generation == 100


def test_stop_polling_during_a_fetch_returns_within_five_seconds(
    make_engine: Callable[..., Engine], server: RulesServer
) -> None:
    server.set_rules([make_rule(1, "cap", breached=True, window_end=FUTURE)])
    # Each read may take 8 s, longer than stop_polling waits for the thread.
    engine = make_engine(
        environ=server.env(REVENIUM_CACHE_DIR="off"), retry_policy=FAST, timeout=8.0
    )
    server.add_fault(Fault.hang(30))
    assert check_once(engine, BOTH) is None  # nothing loaded yet; the poller starts
    assert server.wait_for_requests(1)  # its fetch is in flight, unanswered
    stopping = threading.Thread(target=engine.stop_polling, daemon=True)
    stopping.start()
    stopping.join(5.0 + 1.0)  # the contract's 5 s, and a second for a busy machine
    assert not stopping.is_alive()
    # The next enabled call starts the poller again, once the stuck read gives up.
    deadline = time.monotonic() + 30.0
    while check_once(engine, BOTH) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert check_once(engine, BOTH) is not None
    assert engine.status().poller_alive


def test_instrumenting_while_calls_are_in_flight_raises_only_refusals(
    make_engine: Callable[..., Engine],
) -> None:
    ollama = pytest.importorskip("ollama")
    from hooks.fake_ollama import FakeOllama

    engine = make_engine(
        environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}
    )
    capped = "llama3.2"
    engine.load_payload(
        {
            "rules": [
                make_rule(
                    1,
                    "llama-cap",
                    breached=True,
                    window_end=FUTURE,
                    filters=[make_filter("MODEL", "IS", capped)],
                )
            ]
        }
    )
    messages = [{"role": "user", "content": "hello"}]
    done = threading.Event()
    outcomes: list[str] = []
    unexpected: list[BaseException] = []

    def caller(api_url: str, model: str) -> None:
        with ollama.Client(host=api_url) as client:
            while not done.is_set():
                try:
                    client.chat(model=model, messages=messages)
                    outcomes.append(f"{model} sent")
                except BudgetExceededError:
                    outcomes.append(f"{model} refused")
                except BaseException as problem:
                    unexpected.append(problem)
                    return

    with FakeOllama() as api:
        callers = [
            threading.Thread(target=caller, args=(api.base_url, model), daemon=True)
            for model in [capped, "qwen2.5"] * 4
        ]
        try:
            for thread in callers:
                thread.start()
            for _ in range(40):
                enforcement.instrument("ollama", engine=engine)
                time.sleep(0.005)
                enforcement.uninstrument("ollama")
                time.sleep(0.005)
            enforcement.instrument("ollama", engine=engine)
            time.sleep(0.05)
        finally:
            done.set()
            for thread in callers:
                thread.join(JOIN_SECONDS / 4)
            enforcement.uninstrument()
        assert not [thread.name for thread in callers if thread.is_alive()]
        assert not unexpected, unexpected[:5]
        assert f"{capped} refused" in outcomes  # the hook was in place at times
        assert f"{capped} sent" in outcomes  # and out of it at others
        assert "qwen2.5 refused" not in outcomes
        with ollama.Client(host=api.base_url) as client:
            client.chat(model=capped, messages=messages)  # restored: sent, not refused
