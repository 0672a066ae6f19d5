"""Listeners off the caller's thread: a bounded queue and one daemon worker.

A listener writes a file, increments a metric, sends a span: work that may
be slow, may block on a full disk, may raise. None of that is the caller's
business, whose call was judged in a microsecond and must return (or raise
:class:`BudgetExceededError`) at once. So :meth:`Dispatcher.submit` only puts
the decision on a queue, and one worker thread hands it to every listener.

The queue is bounded: a listener slower than the rate of decisions makes the
queue drop the newest decisions, counted in ``dropped``, rather than grow
without limit. A listener that raises is logged at debug and counted in
``failed``; the next listener still runs.

The worker starts on the first submit that has a listener to call, so a
process without listeners never gets a thread. After ``os.fork`` a child gets
a fresh queue, fresh locks and no worker (the parent's thread is not there);
its first submit starts its own.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import NamedTuple, Optional, Union

from ._events import Decision, Listener
from ._fork import renew_after_fork

__all__ = ["DispatchStats", "Dispatcher"]

logger = logging.getLogger("enforcement")

DEFAULT_CAPACITY = 10_000


class DispatchStats(NamedTuple):
    """What a dispatcher did since it was built (or since the fork that made this process)."""

    queued: int
    delivered: int
    dropped: int
    failed: int


class _Marker:
    """Put on the queue behind the decisions it waits for: a flush, or a worker's stop.

    A stop names the worker it stops, so a stale one (two closes racing) never
    stops the worker started after it.
    """

    __slots__ = ("done", "stop")

    def __init__(self, *, stop: Optional[threading.Thread] = None) -> None:
        self.done = threading.Event()
        self.stop = stop


_Item = Union[Decision, _Marker]


class Dispatcher:
    """Delivers decisions to listeners on a worker thread, never on the caller's.

    >>> seen = []
    >>> dispatcher = Dispatcher()
    >>> dispatcher.add(seen.append)
    >>> dispatcher.submit(Decision("block", 7, "daily cap", 512.4, 500.0, "Request blocked"))
    >>> dispatcher.flush(timeout=5.0)
    True
    >>> [decision.rule_id for decision in seen]
    [7]
    >>> dispatcher.close()
    True
    """

    def __init__(self, *, capacity: int = DEFAULT_CAPACITY, name: str = "enforcement-listeners"):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity!r}")
        self._capacity = capacity
        self._name = name
        # A tuple, replaced whole on add and remove: the worker and submit read
        # it without a lock, and an empty tuple is the one test submit makes.
        self.listeners: tuple[Listener, ...] = ()
        self._fresh_state()
        renew_after_fork(self)

    def _fresh_state(self) -> None:
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._worker: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._dropped = 0
        self._delivered = 0
        self._failed = 0

    # -- listeners -------------------------------------------------------------

    def add(self, listener: Listener) -> None:
        """Call ``listener(decision)`` on the worker thread for every decision submitted."""
        with self._lock:
            self.listeners = (*self.listeners, listener)

    def remove(self, listener: Listener) -> None:
        """Stop calling ``listener``; raises :class:`ValueError` when it was never added."""
        with self._lock:
            listeners = list(self.listeners)
            listeners.remove(listener)
            self.listeners = tuple(listeners)

    # -- the caller's side -----------------------------------------------------

    def submit(self, decision: Decision) -> None:
        """Queue ``decision`` for the listeners; never blocks, never raises."""
        if not self.listeners:
            return
        pending = self._queue
        if pending.qsize() >= self._capacity:
            self._count_drop()
            return
        pending.put(decision)
        if self._worker is None:
            self._start_worker()

    def _count_drop(self) -> None:
        # Under the lock: drops come in bursts from many threads at once, and
        # an unlocked += would lose some of them. Only an overflowing queue pays.
        with self._lock:
            self._dropped += 1

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is not None:
                return
            worker = threading.Thread(
                target=self._run, args=(self._queue,), name=self._name, daemon=True
            )
            worker.start()
            self._worker = worker

    # -- the worker's side -----------------------------------------------------

    def _run(self, pending: queue.SimpleQueue[_Item]) -> None:
        while True:
            item = pending.get()
            if type(item) is Decision:
                self._deliver(item)
                continue
            assert isinstance(item, _Marker)
            if item.stop is threading.current_thread():
                self._forget_worker()
                item.done.set()
                return
            item.done.set()

    def _forget_worker(self) -> None:
        """Let the next submit start a worker: decisions queued behind the stop wait for it."""
        with self._lock:
            if self._worker is threading.current_thread():
                self._worker = None

    def _deliver(self, decision: Decision) -> None:
        for listener in self.listeners:
            try:
                listener(decision)
            except Exception:
                self._failed += 1  # only this thread writes it
                logger.debug("Enforcement listener %r failed", listener, exc_info=True)
        self._delivered += 1

    # -- control ---------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every decision submitted so far was delivered; ``False`` on timeout."""
        if self._worker is None:
            if not (self.listeners and self._queue.qsize()):
                return True
            self._start_worker()  # decisions left behind a close
        marker = _Marker()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: Optional[float] = 5.0) -> bool:
        """Deliver what is queued, then stop the worker; ``False`` if it did not stop in time.

        Not final: a later submit with listeners starts a new worker, as a
        later check restarts a stopped poller.
        """
        worker = self._worker
        if worker is None:
            return True
        self._queue.put(_Marker(stop=worker))
        worker.join(timeout)
        return not worker.is_alive()

    def stats(self) -> DispatchStats:
        """Counts since this dispatcher was built, or since the fork that made this process."""
        return DispatchStats(
            queued=self._queue.qsize(),
            delivered=self._delivered,
            dropped=self._dropped,
            failed=self._failed,
        )

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def failed(self) -> int:
        return self._failed

    def _after_fork_in_child(self) -> None:
        """The parent's queued decisions are the parent's to deliver; the child starts empty."""
        self._fresh_state()

    def __repr__(self) -> str:
        state = "running" if self._worker is not None else "idle"
        return f"<Dispatcher {state} listeners={len(self.listeners)} {self.stats()}>"
