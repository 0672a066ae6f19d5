"""Freeing a replaced rule set a slice at a time, off the callers' path.

Dropping the last reference to a 10,000-rule payload frees every rule in
one C-level cascade of decrefs that holds the GIL for 10 to 16 ms: every
checking thread stalls for as long. Worse, the thread that pays is the one
that happened to hold the last reference, which may be a caller's thread
that was mid-check when the rules were swapped.

So a replaced rule set is handed to a :class:`Retirer` instead of being
dropped. Holding it, the retirer is never the one that lets a caller pay;
on the installing thread or the poller's (:meth:`Retirer.collect`), once
nothing else holds the rule set, its payload or their big containers, it
empties those containers a slice at a time (:data:`SLICE` entries, well
under a millisecond each) with :func:`._pace.pace` in between, and only
then lets go of what is left.

"Nothing else holds" is read from reference counts, which CPython keeps
exactly while the GIL is held: an object only the retirer can reach cannot
be reached by anyone while it is taken apart, so emptying it changes no
answer anybody can see. Where counts are not that (another interpreter, a
free-threaded build), rule sets are simply dropped, as before.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import Any, Callable, Optional

from ._pace import pace

__all__ = ["SLICE", "Retirer"]

SLICE = 256  # entries freed per C call: a 10,000-rule payload in about 40 slices
MAX_HELD = 8  # rule sets still in use are kept at most this many installs
# The containers worth emptying in slices, by owner type's name: the rest are small.
_RULESET_PARTS = ("_by_id", "_by_email", "_compiled", "_routes")
_PAYLOAD_PARTS = ("rules", "blocks", "balances", "warnings", "candidates")
_getrefcount: Callable[[Any], int] = getattr(sys, "getrefcount", lambda _: -1)


def _refs(box: list[Any]) -> int:
    """References to ``box[0]``, counted the same way for every object (see :data:`_ALONE`)."""
    return _getrefcount(box[0])


def _counts_are_exact() -> bool:
    gil = getattr(sys, "_is_gil_enabled", None)
    return hasattr(sys, "getrefcount") and (gil is None or bool(gil()))


# What _refs reads for an object that only the box holds.
_ALONE = _refs([object()])
_EXACT = _counts_are_exact()


class Retirer:
    """Holds replaced rule sets until they can be taken apart without a long GIL hold."""

    def __init__(self) -> None:
        self._held: deque[list[Any]] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._held)

    def retire(self, ruleset: Any) -> None:
        """Take over a replaced rule set (``None`` is ignored); freed by :meth:`collect`."""
        if ruleset is not None and _EXACT:
            self._held.append([ruleset])
        try:
            while len(self._held) > MAX_HELD:  # held elsewhere for long: theirs to free
                self._held.popleft()
        except IndexError:  # a collect on another thread emptied it meanwhile
            pass

    def collect(self) -> int:
        """Take apart every held rule set nobody else holds now; returns how many.

        One thread at a time; a thread that finds another one at it returns
        at once (what it leaves is taken next time). Never raises.
        """
        if not self._lock.acquire(blocking=False):
            return 0
        freed = 0
        try:
            for _ in range(len(self._held)):
                try:
                    box = self._held.popleft()
                except IndexError:  # retire() dropped the oldest meanwhile
                    break
                if _refs(box) > _ALONE:
                    self._held.append(box)  # a check still holds it: next time
                    continue
                try:
                    left = _take_apart(box)
                except Exception:  # never a reason for a refresh or an install to fail
                    continue  # dropped: freed like any rule set
                if left is not None:
                    self._held.append(left)  # its payload, still held elsewhere: next time
                    continue
                freed += 1
        finally:
            self._lock.release()
        return freed

    def clear(self) -> None:
        """Let go of everything held (closing): freed wherever the last reference goes."""
        self._held.clear()

    def after_fork_in_child(self) -> None:
        """A fresh lock: the parent's may have been held by its poller at the fork."""
        self._lock = threading.Lock()


def _take_apart(box: list[Any]) -> Optional[list[Any]]:
    """Empty the rule set in ``box`` (held by the box alone), then its payload; drop them.

    The rule set goes first, and with it what only it held (its accrual
    index refers to the payload too). A payload someone else still holds (a
    caller of the install) is returned in a box of its own, to be taken
    apart next time; a box holding a payload alone is that payload's turn.
    """
    if not hasattr(box[0], "generation"):  # a payload left over from an earlier turn
        return _take_apart_payload(box)
    payload_box = [getattr(box[0], "payload", None)]
    _empty_parts(box, _RULESET_PARTS)
    box.clear()
    return _take_apart_payload(payload_box)


def _take_apart_payload(box: list[Any]) -> Optional[list[Any]]:
    if box[0] is None:
        return None
    if _refs(box) > _ALONE:
        return box
    _empty_parts(box, _PAYLOAD_PARTS)
    box.clear()
    return None


def _empty_parts(owner_box: list[Any], names: tuple[str, ...]) -> None:
    """Empty, in slices, each named container the boxed owner alone holds."""
    owner = owner_box[0]
    if owner is None:
        return
    for name in names:
        part = [getattr(owner, name, None)]
        if _refs(part) <= _ALONE + 1:  # the owner's attribute and this box
            _empty(part[0])
        del part[:]


def _empty(container: Any) -> None:
    if type(container) is list:
        while container:
            del container[-SLICE:]
            pace()
    elif type(container) is dict:
        pop = container.popitem
        while container:
            for _ in range(min(SLICE, len(container))):
                pop()
            pace()
