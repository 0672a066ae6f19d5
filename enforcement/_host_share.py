"""Sharing one fetch among the processes of a host.

Processes that share the cache directory (gunicorn's workers, a Celery
pool) should send about one request per interval between them, not one
each. Before each refresh a process asks, under the host's fetch lock,
whether another process fetched within the interval (then it adopts those
rules from disk) or holds the lease to fetch now (then it reads the result
shortly); otherwise it takes the lease and fetches. Only this decision is
under the lock, never the network read.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Optional, Union

from ._mirror import Mirror
from ._schedule import RetryPolicy
from ._sidecar import SnapshotMeta

__all__ = ["CACHE_TTL", "SELF_FETCH_EVERY", "HostShare"]

logger = logging.getLogger("enforcement")

CACHE_TTL = 120.0
# Rules another process of the host fetched are adopted for at most this many
# poll intervals in a row; then this process asks the feed itself. It bounds
# how long a forged but well-sealed sidecar (its author holds the API key) can
# keep a process off the feed, and is large enough that a host of up to ten
# processes still sends about one request per interval between them.
SELF_FETCH_EVERY = 10


class HostShare:
    """One process's side of the host's fetch lease."""

    def __init__(
        self,
        mirror: Mirror,
        schedule: RetryPolicy,
        *,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.mirror = mirror
        self.schedule = schedule
        self._clock = clock
        self._wall_clock = wall_clock
        # When adopting other processes' fetches stops and this one fetches itself.
        self._self_fetch_due: Optional[float] = None
        # Since when the host lock could not be taken (its holder may be stopped).
        self._lock_missed_since: Optional[float] = None

    def fetching(self, interval: float) -> None:
        """This process is reading the feed itself: adoption may go on for a while again."""
        self._self_fetch_due = self._clock() + SELF_FETCH_EVERY * interval

    def after_fork_in_child(self) -> None:
        self._self_fetch_due = None
        self._lock_missed_since = None

    def decide(self, interval: float) -> Union[float, SnapshotMeta, None]:
        """Decide, under the host lock, whether this process fetches now.

        Returns the delay before the next refresh when it does not (another
        process holds the lease to fetch), the sidecar of another process's
        fetch within the interval to adopt, or ``None`` when this one should
        fetch: it then holds the lease. Only this
        decision is under the lock, never the network read, and a lease lasts
        one interval, so a holder that stops or dies delays the host by at
        most that. A lock that stays taken for a whole interval (its holder
        stopped inside this short section) is fetched around.
        """
        mirror = self.mirror
        now = self._clock()
        if self._self_fetch_due is None:
            self._self_fetch_due = now + SELF_FETCH_EVERY * interval
        meta: Optional[SnapshotMeta] = None
        with mirror.locked(timeout=0.5) as held:
            if held:
                self._lock_missed_since = None
                meta = mirror.load_meta()
                wall = self._wall_clock()
                if not self._recent_elsewhere(meta, interval, wall, now):
                    if meta is not None and meta.lease_holder_alive(wall, interval):
                        return self.schedule.lock_busy(interval)  # read the fetcher's result
                    mirror.claim(meta, now=wall)
                    return None
        if held is None:
            return None  # no lock can be had here (an unwritable directory): fetch alone
        if not held:
            if self._lock_missed_since is None:
                self._lock_missed_since = now
            if now - self._lock_missed_since < interval:
                return self.schedule.lock_busy(interval)
            logger.debug("The host's fetch lock has been held for an interval; fetching anyway")
            return None
        return meta

    def _recent_elsewhere(
        self, meta: Optional[SnapshotMeta], interval: float, wall: float, now: float
    ) -> bool:
        """Whether ``meta`` records another process's fetch within the interval, still on disk."""
        if meta is None or meta.pid == os.getpid():
            return False
        if self._self_fetch_due is not None and now >= self._self_fetch_due:
            return False  # adopted long enough: this process asks the feed itself
        age = meta.age(wall)
        if age is None or age >= min(interval, CACHE_TTL):
            return False
        return meta.rules_file is not None and meta.rules_file == self.mirror.rules_file()
