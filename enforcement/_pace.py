"""Giving the interpreter back during long work, so a caller never waits a whole switch.

CPython hands the GIL to a waiting thread only after the switch interval
(5 ms by default) and at the next bytecode boundary after it: while the
poller decodes, compares or frees a 10,000-rule payload, a checking thread
that wanted the GIL waits at least those 5 ms every time it is pushed off.
Long work here is done in slices of well under a millisecond each, and
:func:`pace` between slices sleeps for a moment (releasing the GIL) once
this thread has run for :data:`HOLD` of CPU time since it last did: a
waiting caller then takes the GIL at once, after at most :data:`HOLD`.

CPU time, not wall time: a thread that was pushed off meanwhile has not
been holding the GIL, so it does not owe the others another turn. With no
other thread waiting a nap costs about a tenth of a millisecond per
:data:`HOLD` of work, some 5 %; with a busy caller this thread gets the GIL
back only after the caller's switch interval, so long work takes two to
three times as long in wall time: the price of callers never waiting long.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["HOLD", "SHARED_SWITCH_INTERVAL", "pace", "sharing"]

HOLD = 0.002  # seconds of this thread's CPU time between two naps
# Long enough for a woken waiter to take the GIL: after a shorter one (a sleep of 0)
# this thread often takes it back first, and the waiter's 5 ms starts over.
_NAP = 5e-5
_since = threading.local()
_cpu = time.thread_time


def pace() -> None:
    """Nap (releasing the GIL) when this thread ran :data:`HOLD` since its last nap.

    Cheap enough to call between any two slices of work: one clock read
    when no nap is due.
    """
    now = _cpu()
    last: float = getattr(_since, "cpu", now)
    if now - last < HOLD:
        if last == now:
            _since.cpu = now
        return
    time.sleep(_NAP)
    _since.cpu = _cpu()


#: The switch interval while long work runs (:func:`sharing`), in seconds.
SHARED_SWITCH_INTERVAL = 0.001


class _Sharing:
    """How many threads are inside :func:`sharing`, and the interval to put back.

    Process state (the interpreter's switch interval is), so it lives here,
    once; a forked child starts with none of it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved = 0.0
        self.paused_collector = False

    def enter(self) -> None:
        with self.lock:
            if self.depth == 0:
                self.saved = sys.getswitchinterval()
                if self.saved > SHARED_SWITCH_INTERVAL:
                    sys.setswitchinterval(SHARED_SWITCH_INTERVAL)
                self.paused_collector = gc.isenabled()
                if self.paused_collector:
                    gc.disable()
            self.depth += 1

    def leave(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                self._put_back()

    def _put_back(self) -> None:
        if sys.getswitchinterval() == SHARED_SWITCH_INTERVAL:
            sys.setswitchinterval(self.saved)  # unless the application set its own meanwhile
        if self.paused_collector:
            self.paused_collector = False
            gc.enable()

    def after_fork_in_child(self) -> None:
        self.lock = threading.Lock()
        if self.depth:
            self.depth = 0
            self._put_back()


_sharing = _Sharing()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_sharing.after_fork_in_child)


@contextlib.contextmanager
def sharing() -> Iterator[None]:
    """Long work (a take-in, an install) with the switch interval at a millisecond.

    A nap (:func:`pace`) releases the GIL, but a caller the OS wakes late
    finds it taken again and waits a whole switch interval more (5 ms by
    default) for its turn. With the interval at
    :data:`SHARED_SWITCH_INTERVAL` the caller's request is granted within a
    millisecond of our work, and CPython hands the GIL over before this
    thread may take it back. Process-wide while any thread is inside; the
    application's own interval is put back after, unless it set another
    meanwhile.

    The cyclic garbage collector is paused meanwhile, too (when it was
    running). A take-in allocates some 20,000 containers that live until
    the rules are compiled and packed (:mod:`._packed`): collected as they
    are made, they would be promoted to the oldest generation, and their
    count alone then sets off full collections of the whole process, each
    one a pause of tens of milliseconds for every thread. Paused, they are
    freed by reference counting before any collection sees them. Nothing
    is lost: garbage made meanwhile is collected after, and a take-in lasts
    tens of milliseconds (the network is never waited on inside).
    """
    _sharing.enter()
    try:
        yield
    finally:
        _sharing.leave()
