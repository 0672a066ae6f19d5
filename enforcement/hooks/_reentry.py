"""The re-entrancy guard: one user call is checked once, by the outermost hook.

A call that goes through several hooked layers (LiteLLM's Router, then
``litellm.acompletion``, then the openai SDK) is checked by the outermost,
and the inner layers see the guard and pass straight through. The guard is a
context variable, so it follows threads' and tasks' own contexts and never
leaks between concurrent calls. It is scoped (set and reset around the call)
except for a :class:`Hold`, the guard of a call whose request leaves after
the callback that checked it has returned (LangChain's): it stays set until
released, from any context.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable
from typing import Callable, Optional, TypeVar, Union

__all__ = [
    "Hold",
    "already_checked",
    "aunchecked",
    "aunder",
    "held_guard",
    "hold_guard",
    "inside_checked",
    "unchecked",
]

_T = TypeVar("_T")

#: True (or an active Hold) inside a checked call: the hooks below pass it through.
inside_checked: contextvars.ContextVar[Union[bool, Hold]] = contextvars.ContextVar(
    "enforcementinside_checked", default=False
)


def already_checked() -> bool:
    """True inside a call an outer hook has checked."""
    return bool(inside_checked.get())


class Hold:
    """The guard of a checked call that outlives the callback that checked it.

    A LangChain run is checked in ``on_chat_model_start`` and its request
    leaves later, from the model's own code; its end is reported from copies
    of the context (``asyncio.gather``, shielded tasks) where a context
    variable cannot be reset. So the guard's value is this object, truthy
    until :meth:`release` switches it off in place, wherever that runs.
    """

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = True

    def __bool__(self) -> bool:
        return self.active

    def release(self) -> None:
        """Let the hooks below check again: the held call's request is out."""
        self.active = False


def held_guard() -> Optional[Hold]:
    """The active :class:`Hold` this context is inside, if any."""
    current = inside_checked.get()
    return current if isinstance(current, Hold) and current.active else None


def hold_guard() -> Hold:
    """The :class:`Hold` of this context, set (never reset) when none is active.

    Calls checked one after another in one context before any is sent (a
    batch's prompts) share it.
    """
    hold = held_guard()
    if hold is None:
        hold = Hold()
        inside_checked.set(hold)
    return hold


async def aunder(hold: Hold, call: Callable[[], Awaitable[_T]]) -> _T:
    """Await ``call()`` inside ``hold``, which another task set and may release."""
    token = inside_checked.set(hold)
    try:
        return await call()
    finally:
        inside_checked.reset(token)


def unchecked(call: Callable[[], _T]) -> _T:
    """Run a call that is checked already (or by another layer); inner hooks pass through."""
    token = inside_checked.set(True)
    try:
        return call()
    finally:
        inside_checked.reset(token)


async def aunchecked(call: Callable[[], Awaitable[_T]]) -> _T:
    """:func:`unchecked` for coroutines."""
    token = inside_checked.set(True)
    try:
        return await call()
    finally:
        inside_checked.reset(token)
