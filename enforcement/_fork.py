"""Fork safety: what a forked child renews before it checks its first call.

A child of ``os.fork`` (multiprocessing's ``fork`` start method, gunicorn's
``--preload``, Celery's prefork pool) inherits the parent's memory but only
the thread that forked. A lock another thread held at that moment stays held
for ever in the child, and the poller thread an engine counts on is not
there. So each engine registers here, and one process-wide handler calls
every live one's ``_after_fork_in_child()`` in the child, before the child
runs any code of its own. The engine then makes its locks anew, forgets the
parent's poller thread and HTTP connections, and marks its cache for a
refresh, so the child's next check starts the child's own poller.

The handler is installed with :func:`os.register_at_fork` once, when this
module is imported, never once per engine: ``register_at_fork`` cannot
unregister, so a handler per engine would pile up for the life of the
process. Engines are held weakly, so registering never keeps one alive.

The hot path pays nothing for this: there is no pid comparison per call
(``os.getpid()`` is a system call on current glibc), only the handler
writing the state that the check reads anyway.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Callable, Protocol

__all__ = ["renew_after_fork", "renew_module_state_after_fork"]

logger = logging.getLogger("enforcement")


class Renewable(Protocol):
    def _after_fork_in_child(self) -> None: ...


_renewable: weakref.WeakSet[Renewable] = weakref.WeakSet()


def renew_after_fork(holder: Renewable) -> None:
    """Call ``holder._after_fork_in_child()`` in every child forked while it lives."""
    _renewable.add(holder)


def renew_module_state_after_fork(renew: Callable[[], None]) -> None:
    """Call ``renew()`` in every forked child: for module-level locks, registered at import."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=renew)


def _renew_all() -> None:
    for holder in list(_renewable):
        try:
            holder._after_fork_in_child()
        except Exception:  # one broken holder must not leave the others' locks held
            logger.debug("Renewing %r after a fork failed", holder, exc_info=True)


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_renew_all)
