"""The refresh schedule as a value: every delay computed, none waited for.

The schedule's clock, sleep and random are injected, so these tests run in
milliseconds; the feed is a real server on 127.0.0.1 answering with faults.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from enforcement import BudgetExceededError, Engine, RetryPolicy
from enforcement.testing import RulesServer, make_rule


class FakeTime:
    """A monotonic clock that only moves when the schedule sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def server() -> Iterator[RulesServer]:
    with RulesServer() as running:
        running.set_rules([make_rule(1, breached=True)])
        yield running


def policy(
    fake: FakeTime, *, retry_after_budget: float = 60.0, deadline: float = 120.0
) -> RetryPolicy:
    return RetryPolicy(
        retry_after_budget=retry_after_budget,
        deadline=deadline,
        sleep=fake.sleep,
        clock=fake.clock,
        random=lambda: 0.5,
    )


def engine_for(server: RulesServer, schedule: RetryPolicy) -> Engine:
    env = {**server.env(), "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}
    return Engine(environ=env, retry_policy=schedule)


def test_the_printed_schedule_names_every_part() -> None:
    text = str(RetryPolicy())
    for part in (
        "the poll interval, jittered 10%",
        "after a failure, one attempt per refresh",
        "while no rules were ever loaded, retry after 1, 2, 4",
        "holds the host's fetch lock, retry after 1 s",
        "inspection reads: Retry-After honoured up to 20 s; 30 s in all",
        "5 attempts; backoff 0.5, 1, 2, 4 s, jittered 10%",
        "up to 300 s",
    ):
        assert part in text
    assert text.endswith("Retry-After honoured up to 60 s; 120 s in all")
    assert "between refreshes: the poll interval, jittered 0%" in str(RetryPolicy(poll_jitter=0))


def test_backoff_doubles_and_jitters_within_its_band() -> None:
    assert [RetryPolicy(random=lambda: 0.5).backoff(n) for n in range(4)] == [0.5, 1, 2, 4]
    assert RetryPolicy(random=lambda: 0.0).backoff(0) == pytest.approx(0.45)
    assert RetryPolicy(random=lambda: 1.0).backoff(1) == pytest.approx(1.1)


def test_between_refreshes() -> None:
    schedule = RetryPolicy(random=lambda: 1.0)
    assert schedule.next_poll(60) == pytest.approx(66)
    assert RetryPolicy(random=lambda: 0.0).next_poll(60) == pytest.approx(54)
    assert schedule.attempts_for(0) == 5
    assert schedule.attempts_for(3) == 1
    assert schedule.lock_busy(60) == 1.0
    assert schedule.lock_busy(0.25) == 0.25


def test_after_a_failure_a_cooldown_wins_and_no_rules_means_a_quick_retry() -> None:
    schedule = RetryPolicy()
    never_loaded = [schedule.after_failure(n, 60, loaded=False) for n in range(1, 9)]
    assert never_loaded == [1, 2, 4, 8, 16, 32, 60, 60]
    assert schedule.after_failure(1, 5, loaded=False) == 1
    assert schedule.after_failure(4, 5, loaded=False) == 5
    assert schedule.after_failure(1, 60, loaded=True) == 60
    assert schedule.after_failure(1, 60, loaded=True, cooldown=90) == 90
    assert schedule.after_failure(10_000, 60, loaded=False) == 60  # no overflow


def test_inspection_reads_have_the_smaller_budget() -> None:
    inspection = RetryPolicy().for_inspection()
    assert (inspection.retry_after_budget, inspection.deadline) == (20, 30)
    tight = RetryPolicy(retry_after_budget=5, deadline=10).for_inspection()
    assert (tight.retry_after_budget, tight.deadline) == (5, 10)


def test_a_refresh_retries_on_the_schedule_without_waiting(
    server: RulesServer, fake: FakeTime
) -> None:
    server.fail_next(3, status=503)
    with engine_for(server, policy(fake)) as engine:
        assert engine.refresh()
    assert fake.slept == [0.5, 1.0, 2.0]
    assert len(server.requests) == 4


def test_retry_after_replaces_the_backoff_and_spends_the_budget(
    server: RulesServer, fake: FakeTime
) -> None:
    server.fail_next(2, status=429, headers={"Retry-After": "7"})
    with engine_for(server, policy(fake, retry_after_budget=10)) as engine:
        assert not engine.refresh()  # the second 7 s is past the 3 s left
        assert "Retry-After 7 s is past the 3 s left" in (engine.status().last_error or "")
    assert fake.slept == [7.0]


def test_the_deadline_ends_a_refresh_whose_next_wait_does_not_fit(
    server: RulesServer, fake: FakeTime
) -> None:
    server.fail_next(5, status=503)
    with engine_for(server, policy(fake, deadline=2.0)) as engine:
        assert not engine.refresh()
        assert "no retry fits the 2 s deadline" in (engine.status().last_error or "")
    assert fake.slept == [0.5, 1.0]


def test_after_a_failure_the_next_refresh_makes_one_attempt(
    server: RulesServer, fake: FakeTime
) -> None:
    server.fail_next(6, status=503)
    with engine_for(server, policy(fake)) as engine:
        assert not engine.refresh()
        assert len(server.requests) == 5
        assert not engine.refresh()
        assert len(server.requests) == 6
        assert engine.refresh()
        assert engine.status().consecutive_failures == 0


def test_a_closed_engine_stays_closed(server: RulesServer, fake: FakeTime) -> None:
    engine = engine_for(server, policy(fake))
    assert engine.refresh()
    engine.close()
    assert not engine.refresh()
    requests = len(server.requests)
    with pytest.raises(BudgetExceededError):  # the last known verdict stands
        engine.check(model="gpt-4o")
    status = engine.status()
    assert status.closed and not status.poller_alive
    assert len(server.requests) == requests
