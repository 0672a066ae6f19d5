"""When the rules are read: the whole refresh schedule as one printable value.

Everything that decides *when* the control plane is asked lives here, so a
schedule is a unit test (inject ``sleep``, ``clock`` and ``random``) rather
than a wait, and ``print(RetryPolicy())`` tells an operator all of it:

- within one refresh: attempts, backoff and jitter, the ``Retry-After``
  budget, the cooldown a longer ``Retry-After`` starts, the read's deadline;
- the inspection reads (one rule, the roster): a smaller budget and deadline,
  because a person is waiting on them;
- between refreshes: the jittered poll interval, one attempt per refresh
  after a failure, the quick backoff while no rules were ever loaded (so
  fail-closed traffic resumes within seconds), the retry while another
  process of the host holds the fetch lock.

The poll interval itself is a setting (``REVENIUM_CB_POLL_INTERVAL_SECONDS``),
passed in: the schedule is the same for every team.

A new fault rule ("retry a 503 sooner", "back off longer after a 429") goes
here; what counts as a fault goes in ``_feed``.
"""

from __future__ import annotations

import random as _random
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """The refresh schedule. ``str(policy)`` prints all of it.

    >>> print(RetryPolicy())  # doctest: +NORMALIZE_WHITESPACE
    between refreshes: the poll interval, jittered 10%; after a failure, one attempt per
    refresh at the poll interval; while no rules were ever loaded, retry after 1, 2, 4 ...
    s, up to the poll interval; while another process holds the host's fetch lock,
    retry after 1 s
    inspection reads: Retry-After honoured up to 20 s; 30 s in all
    within a refresh: 5 attempts; backoff 0.5, 1, 2, 4 s, jittered 10%;
    a longer Retry-After pauses refreshes for it, up to 300 s;
    Retry-After honoured up to 60 s; 120 s in all

    ``sleep(seconds)`` replaces the wait between attempts (by default the
    poller's stop event, so that stopping interrupts it); ``clock`` is the
    monotonic clock deadlines are measured on; ``random`` draws the jitter.
    """

    attempts: int = 5
    first_backoff: float = 0.5
    jitter: float = 0.1
    retry_after_budget: float = 60.0
    cooldown_ceiling: float = 300.0
    deadline: float = 120.0  # seconds for the whole read, every attempt and wait included
    inspection_retry_after_budget: float = 20.0
    inspection_deadline: float = 30.0
    attempts_after_failure: int = 1
    never_loaded_first_retry: float = 1.0
    lock_busy_retry: float = 1.0
    poll_jitter: float = 0.1
    sleep: Optional[Callable[[float], object]] = field(default=None, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    random: Callable[[], float] = field(default=_random.random, compare=False, repr=False)

    # -- within one refresh ----------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based)."""
        base = self.first_backoff * float(2**attempt)
        return base * (1.0 + self.jitter * (2.0 * self.random() - 1.0))

    def attempts_for(self, consecutive_failures: int) -> int:
        """Attempts in this refresh: all of them while healthy, fewer once failing.

        A feed already failing is retried on the poll cadence instead of in a
        burst: a struggling origin hears one request per interval.
        """
        return self.attempts if consecutive_failures == 0 else self.attempts_after_failure

    def for_inspection(self) -> RetryPolicy:
        """The policy of the inspection reads: the same, with the smaller budget and deadline."""
        return replace(
            self,
            retry_after_budget=min(self.retry_after_budget, self.inspection_retry_after_budget),
            deadline=min(self.deadline, self.inspection_deadline),
        )

    # -- between refreshes -----------------------------------------------------

    def next_poll(self, interval: float) -> float:
        """The delay after a good refresh: the interval, jittered so a fleet spreads out."""
        return interval * (1.0 + self.poll_jitter * (2.0 * self.random() - 1.0))

    def after_failure(
        self, consecutive_failures: int, interval: float, *, loaded: bool, cooldown: float = 0.0
    ) -> float:
        """The delay after a failed refresh.

        A ``Retry-After`` cooldown wins; with no rules ever loaded the retry
        comes quickly (1, 2, 4 ... s) so fail-closed traffic resumes soon;
        otherwise the next poll is at the interval, the last verdict kept.
        """
        if cooldown:
            return cooldown
        if not loaded:
            doubling = float(2 ** min(max(consecutive_failures - 1, 0), 10))
            return min(interval, self.never_loaded_first_retry * doubling)
        return interval

    def lock_busy(self, interval: float) -> float:
        """The delay while another process of the host is fetching: read its result soon."""
        return min(self.lock_busy_retry, interval)

    def __str__(self) -> str:
        waits = ", ".join(f"{self.first_backoff * 2**i:g}" for i in range(self.attempts - 1))
        first = self.never_loaded_first_retry
        after = (
            "one attempt"
            if self.attempts_after_failure == 1
            else f"{self.attempts_after_failure} attempts"
        )
        return (
            f"between refreshes: the poll interval, jittered {self.poll_jitter:.0%}; "
            f"after a failure, {after} per refresh at the poll interval; "
            f"while no rules were ever loaded, retry after {first:g}, {2 * first:g}, "
            f"{4 * first:g} ... s, up to the poll interval; "
            f"while another process holds the host's fetch lock, "
            f"retry after {self.lock_busy_retry:g} s\n"
            f"inspection reads: Retry-After honoured up to "
            f"{min(self.retry_after_budget, self.inspection_retry_after_budget):g} s; "
            f"{min(self.deadline, self.inspection_deadline):g} s in all\n"
            f"within a refresh: {self.attempts} attempts; backoff {waits} s, "
            f"jittered {self.jitter:.0%}; "
            f"a longer Retry-After pauses refreshes for it, up to {self.cooldown_ceiling:g} s; "
            f"Retry-After honoured up to {self.retry_after_budget:g} s; "
            f"{self.deadline:g} s in all"
        )
