"""One daemon thread that keeps a rule set fresh.

The thread only ever calls ``refresh()``, which returns how long to sleep
before the next one. Callers never wait on it: a stale cache ``wake()``s it
and carries on with the rules it has. ``stop()`` joins within its timeout and
a later ``ensure_running()`` starts a new thread, as does the first call in a
forked child (a child inherits no threads, only the parent's belief in one):
the engine that owns the poller calls :meth:`Poller.after_fork_in_child`
from its at-fork handler (see ``_fork``).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable, Optional

__all__ = ["Poller"]

logger = logging.getLogger("enforcement.poller")


class Poller:
    """Runs ``refresh`` on a daemon thread until stopped; ``refresh`` returns the next delay."""

    def __init__(self, refresh: Callable[[], float], name: str) -> None:
        self._refresh = refresh
        self._name = name
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()
        self.wake_event = threading.Event()
        self.stop_event = threading.Event()

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and self._pid == os.getpid()

    def ensure_running(self) -> None:
        if self.alive:
            return
        with self._lock:
            if self.alive:
                return
            if self._pid != os.getpid():  # forked without the at-fork handler running
                self.after_fork_in_child()
            self.stop_event.clear()
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread = thread
            thread.start()

    def wake(self) -> None:
        if not self.wake_event.is_set():
            self.wake_event.set()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.wake_event.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def after_fork_in_child(self) -> None:
        """Forget the parent's thread; fresh lock and events (another thread may have held them)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._thread = None
        self.wake_event = threading.Event()
        self.stop_event = threading.Event()

    def _run(self) -> None:
        stop, wake = self.stop_event, self.wake_event
        while not stop.is_set():
            try:
                delay = self._refresh()
            except Exception:  # a bug must not kill enforcement for the process
                logger.exception("Enforcement rules refresh failed unexpectedly")
                delay = 5.0
            wake.clear()
            if stop.is_set():
                break
            wake.wait(max(0.0, delay))
