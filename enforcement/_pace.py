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

import threading
import time

__all__ = ["HOLD", "pace"]

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
