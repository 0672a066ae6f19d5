"""Per-call metadata: the reference SDK's ``usage_metadata=``, relayed to the funnel.

A public method (``chat.completions.create``) accepts ``usage_metadata=``
while the check runs lower down, in the SDK's funnel that every request
passes. The value rides a context variable down to the funnel hook, for the
duration of the call and of any deferred sender it returns (a stream
manager's ``__enter__``, a lazy stream's iteration, through a
:class:`_Carrier`). Nothing is stored past the call.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Awaitable, Mapping
from typing import Any, Callable, Optional, TypeVar

import wrapt

from .._metadata import _scope, current_metadata
from ._reentry import inside_checked

__all__ = [
    "carry",
    "merged_metadata",
    "pop_usage_metadata",
    "relay_metadata",
    "relayed_metadata",
    "relaying",
]

_T = TypeVar("_T")

_relayed: contextvars.ContextVar[Optional[Mapping[str, Any]]] = contextvars.ContextVar(
    "enforcement_call_metadata", default=None
)


def pop_usage_metadata(kwargs: dict[str, Any]) -> Optional[Mapping[str, Any]]:
    """Remove the reference SDK's ``usage_metadata=`` keyword before the SDK sees it."""
    value = kwargs.pop("usage_metadata", None)
    return value if isinstance(value, Mapping) else None


def relayed_metadata() -> Optional[Mapping[str, Any]]:
    """The ``usage_metadata=`` a public method above this funnel was given, if any."""
    return _relayed.get()


def merged_metadata(call: Optional[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The metadata a call is checked with: the scope's, the relayed and the call's own."""
    relayed = _relayed.get()
    if relayed is not None:
        call = {**relayed, **call} if call else relayed
    if call is None:
        return _scope.get()  # the common case: no per-call metadata, no merge
    return current_metadata(call)


class _Carrier(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """What a public method returned, carrying its call's context into the work it defers.

    A stream manager sends its request on ``__enter__``, a lazy stream on its
    first ``next``: each runs here with the call's relayed metadata (and, for
    a call checked up front, the guard), then the context is put back, so
    nothing leaks into the caller's code between iterations.
    """

    def __init__(self, wrapped: Any, metadata: Optional[Mapping[str, Any]], guard: bool) -> None:
        super().__init__(wrapped)
        self._self_metadata = metadata
        self._self_guard = guard

    def _self_run(self, call: Callable[[], _T]) -> _T:
        relayed = _relayed.set(self._self_metadata)
        guarded = inside_checked.set(True) if self._self_guard else None
        try:
            return call()
        finally:
            if guarded is not None:
                inside_checked.reset(guarded)
            _relayed.reset(relayed)

    async def _self_arun(self, call: Callable[[], Awaitable[_T]]) -> _T:
        relayed = _relayed.set(self._self_metadata)
        guarded = inside_checked.set(True) if self._self_guard else None
        try:
            return await call()
        finally:
            if guarded is not None:
                inside_checked.reset(guarded)
            _relayed.reset(relayed)

    def __enter__(self) -> Any:
        entered = self._self_run(self.__wrapped__.__enter__)
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, *exc_info: Any) -> Any:
        return self.__wrapped__.__exit__(*exc_info)

    async def __aenter__(self) -> Any:
        entered = await self._self_arun(self.__wrapped__.__aenter__)
        return self if entered is self.__wrapped__ else entered

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self.__wrapped__.__aexit__(*exc_info)

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self._self_run(self.__wrapped__.__next__)

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        return await self._self_arun(self.__wrapped__.__anext__)


def _defers(result: Any) -> bool:
    """Whether a returned object sends its request later (when entered or iterated)."""
    kind = type(result)
    return any(hasattr(kind, name) for name in ("__enter__", "__aenter__", "__next__", "__anext__"))


def carry(result: _T, metadata: Optional[Mapping[str, Any]] = None, *, guarded: bool = False) -> _T:
    """``result``, carrying this call's metadata (and guard) into the requests it sends later.

    ``guarded`` says the call was checked up front, so the requests it sends
    later pass the funnel's hook unchecked.
    """
    if (metadata is None and not guarded) or not _defers(result):
        return result
    return _Carrier(result, metadata, guarded)  # type: ignore[return-value]


def relay_metadata(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The wrapper that hands a public method's ``usage_metadata=`` to the funnel below."""
    metadata = pop_usage_metadata(kwargs)
    if metadata is None:
        return wrapped(*args, **kwargs)
    token = _relayed.set(metadata)
    try:
        result = wrapped(*args, **kwargs)
    finally:
        _relayed.reset(token)
    if inspect.isawaitable(result):
        return _arelayed(result, metadata)
    return carry(result, metadata)


def relaying(original: Callable[..., Any]) -> Callable[..., Any]:
    """A plain function ``original``'s stand-in that accepts ``usage_metadata=``.

    Why not a wrapt layer: a public method runs on every request, and with no
    ``usage_metadata=`` (the common case) it has nothing to do but pass the
    call on. A plain function, bound by Python's own descriptor, does that for
    a fraction of a ``FunctionWrapper``'s cost; with the keyword it relays it
    as :func:`relay_metadata` does. ``functools.wraps`` keeps the name,
    signature and ``__wrapped__``; a coroutine function stays one.
    """
    if inspect.iscoroutinefunction(original):
        return functools.wraps(original)(_arelaying(original))

    def relayed(*args: Any, **kwargs: Any) -> Any:
        if "usage_metadata" not in kwargs:
            return original(*args, **kwargs)
        return relay_metadata(original, None, args, kwargs)

    return functools.wraps(original)(relayed)


def _arelaying(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """:func:`relaying` for a coroutine function: the metadata relayed while it is awaited."""

    async def relayed(*args: Any, **kwargs: Any) -> Any:
        metadata = pop_usage_metadata(kwargs) if "usage_metadata" in kwargs else None
        if metadata is None:
            return await original(*args, **kwargs)
        return await _arelayed(original(*args, **kwargs), metadata)

    return relayed


async def _arelayed(awaitable: Awaitable[Any], metadata: Mapping[str, Any]) -> Any:
    """An async method's coroutine, awaited with its metadata relayed."""
    token = _relayed.set(metadata)
    try:
        result = await awaitable
    finally:
        _relayed.reset(token)
    return carry(result, metadata)
