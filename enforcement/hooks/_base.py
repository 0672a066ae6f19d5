"""The hook kit's call path: from a hooked method to the engine's check.

A hook wraps one SDK method (ideally the SDK's funnel, the one method every
request passes through) so that the check runs before the request is built
and sent. A provider module says what a call is with a small
``describe(instance, args, kwargs)`` function: a :class:`Call` (provider
label and model) when it costs money, None when it is free; :func:`guard`
builds the method's wrapper from it (sync or async, as the method is), and
``Instrumentor.hook`` (in ``_instrumentor``) installs it.

The walk from a hook's entry to the matcher:

    wrapper (:func:`guard`) -> :func:`checked` / :func:`achecked`
    -> :func:`hooked_engine` ``.begin(metadata, model=, provider=, estimate=)``
    -> ``Engine.check`` -> ``RuleSet.evaluate``

(the wrapper runs the same steps without the closures, since it runs on
every request). One user call is checked once, by the outermost hook; the
layers below see the re-entrancy guard (``_reentry``) and pass straight
through. A ``leaf`` funnel, with nothing hooked below it, skips setting the
guard for a call the engine holds nothing for. The call's
metadata is the scope's merged with the ``usage_metadata=`` a public method
above was given (``_relay``).

After the check, the post-call path: :meth:`Engine.begin` returns a
:class:`Spend` when the engine holds money for the call, and the hook settles
it exactly once from what the call returned, as the hook's :class:`Meter`
reads it (see ``_streams``): a whole response at once, a stream when it ends,
``None`` when the SDK raised. When ``begin`` returns None nothing is read and
nothing is wrapped. Only the hook that began a call settles it; the inner
layers pass through, as they do for the check.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from functools import partial
from typing import Any, Callable, NamedTuple, Optional, TypeVar

from .._default import _default
from .._engine import Engine
from .._metadata import _scope
from .._usage import Estimate, Spend
from ._reentry import aunchecked, inside_checked, unchecked
from ._relay import _relayed, carry, merged_metadata, pop_usage_metadata
from ._streams import Meter, settle, settle_from

__all__ = [
    "CHECKED_ELSEWHERE",
    "Call",
    "Describe",
    "Wrapper",
    "achecked",
    "checked",
    "guard",
    "hooked_engine",
    "read_call",
    "set_hooked_engine",
]

logger = logging.getLogger("enforcement.hooks")

_T = TypeVar("_T")
_NO_KWARGS: dict[str, Any] = {}  # a call's keywords when it has none; never written to
Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


# -- which engine hooks ask -------------------------------------------------------


class _HookedEngine:
    """The engine ``instrument(engine=...)`` named; None means the default engine."""

    engine: Optional[Engine] = None


_hooked = _HookedEngine()


def hooked_engine() -> Engine:
    """The engine every hook asks: the one ``instrument(engine=...)`` named, else the default."""
    return _hooked.engine or _default.get()


def set_hooked_engine(engine: Optional[Engine]) -> None:
    """Point every hook at ``engine`` (None: back to the default engine)."""
    _hooked.engine = engine


# -- the check ----------------------------------------------------------------------


def checked(
    provider: Optional[str],
    model: Any,
    call_metadata: Optional[Mapping[str, Any]],
    call: Callable[[], _T],
    meter: Optional[Meter] = None,
    request: tuple[Any, tuple[Any, ...], dict[str, Any]] = (None, (), {}),
) -> _T:
    """Run ``call`` once the check passes; inner hooks skip their own check.

    When the engine holds money for the call, ``meter`` reads its estimate
    from ``request`` (``instance, args, kwargs``) and its usage from the result.
    """
    if inside_checked.get():
        return call()
    estimate = None if meter is None else partial(meter.estimate, *request)
    spend = _begin(provider, model, call_metadata, estimate)
    return _run(spend, meter, estimate, call, (), _NO_KWARGS)


def _begin(
    provider: Optional[str],
    model: Any,
    call_metadata: Optional[Mapping[str, Any]],
    estimate: Optional[Callable[[], Estimate]],
) -> Optional[Spend]:
    """The hooked engine's ``begin`` for a call: raises when a tripped rule covers it."""
    return (_hooked.engine or _default.get()).begin(
        merged_metadata(call_metadata),
        model=model if type(model) is str else _model(model),
        provider=provider,
        estimate=estimate,
    )


def _run(
    spend: Optional[Spend],
    meter: Optional[Meter],
    estimate: Optional[Callable[[], Estimate]],
    function: Callable[..., _T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> _T:
    """``function(*args, **kwargs)`` under the guard, and ``spend`` settled from what it returns.

    Takes the call's own arguments rather than a closure: the guard's wrapper
    runs it on every hooked request.
    """
    token = inside_checked.set(True)
    try:
        result = function(*args, **kwargs)
    except BaseException:
        if spend is not None:
            settle(spend, None)
        raise
    finally:
        inside_checked.reset(token)
    if spend is None:
        return result
    return settle_from(result, spend, meter, estimate or _no_estimate)  # type: ignore[no-any-return]


async def achecked(
    provider: Optional[str],
    model: Any,
    call_metadata: Optional[Mapping[str, Any]],
    call: Callable[[], Awaitable[_T]],
    meter: Optional[Meter] = None,
    request: tuple[Any, tuple[Any, ...], dict[str, Any]] = (None, (), {}),
) -> _T:
    """:func:`checked` for coroutines: the check never blocks the event loop."""
    if inside_checked.get():
        return await call()
    estimate = None if meter is None else partial(meter.estimate, *request)
    spend = await _abegin(merged_metadata(call_metadata), _model(model), provider, estimate)
    return await _arun(spend, meter, estimate, call, (), _NO_KWARGS)


async def _arun(
    spend: Optional[Spend],
    meter: Optional[Meter],
    estimate: Optional[Callable[[], Estimate]],
    function: Callable[..., Awaitable[_T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> _T:
    """:func:`_run` for coroutines."""
    token = inside_checked.set(True)
    try:
        result = await function(*args, **kwargs)
    except BaseException:
        if spend is not None:
            settle(spend, None)
        raise
    finally:
        inside_checked.reset(token)
    if spend is None:
        return result
    return settle_from(  # type: ignore[no-any-return]
        result, spend, meter, estimate or _no_estimate, asynchronous=True
    )


async def _abegin(
    metadata: Optional[Mapping[str, Any]],
    model: Optional[str],
    provider: Optional[str],
    estimate: Optional[Callable[[], Estimate]],
) -> Optional[Spend]:
    """``begin`` for coroutines, the first call's snapshot read off the event loop.

    By the engine's ``abegin``; an engine without one is asked ``acheck``, and
    holds nothing for coroutines.
    """
    engine = hooked_engine()
    abegin = getattr(engine, "abegin", None)
    if abegin is None:
        await engine.acheck(metadata, model=model, provider=provider)
        return None
    spend: Optional[Spend] = await abegin(
        metadata, model=model, provider=provider, estimate=estimate
    )
    return spend


def _no_estimate() -> Estimate:
    return Estimate(0)


def _model(model: Any) -> Optional[str]:
    return model if isinstance(model, str) else None


# -- the wrapper factory ----------------------------------------------------------


class Call(NamedTuple):
    """What a costly call is: the provider label it is checked under, and its model.

    ``others`` are further models the same request runs (a batch names one
    per item): each is checked too, so a rule on any of them stops it.
    """

    provider: str
    model: Optional[str] = None
    others: tuple[Optional[str], ...] = ()


#: ``describe``'s answer for a call another layer checks (a proxy's guardrail): it runs
#: under the guard, so the hooks below pass it through, and is not checked here.
CHECKED_ELSEWHERE = Call("")


#: ``describe(instance, args, kwargs)``: the :class:`Call`, or None when the call is free.
Describe = Callable[[Any, tuple[Any, ...], dict[str, Any]], Optional[Call]]


def _nothing() -> None:
    return None


async def _anothing() -> None:
    return None


def read_call(
    describe: Describe, fallback_provider: str, instance: Any, args: tuple[Any, ...], kwargs: Any
) -> Optional[Call]:
    """``describe``'s answer, never an exception: a call it cannot read is costly, model unknown.

    A rule filtered to a model then still covers it, so a describer's blind
    spot never lets a covered call through.
    """
    try:
        return describe(instance, args, kwargs)
    except Exception:
        return _unread(fallback_provider)


def _unread(fallback_provider: str) -> Call:
    """What :func:`read_call` answers for a call ``describe`` raised on (in an except block)."""
    logger.debug("Could not read a hooked call; checking it with no model", exc_info=True)
    return Call(fallback_provider)


def guard(
    describe: Describe,
    fallback_provider: str,
    *,
    asynchronous: bool,
    deferred: bool = False,
    meter: Optional[Meter] = None,
    leaf: bool = False,
) -> Wrapper:
    """The wrapper that checks a method's costly calls before the original runs.

    It removes ``usage_metadata=``, asks ``describe`` what the call is, and
    calls the original unchecked when it is free. ``asynchronous`` picks a
    coroutine wrapper that awaits the check without blocking the event loop.
    ``deferred`` is for a method that returns a lazy stream, whose requests
    are sent only when it is iterated: the call is checked when it is made,
    where the caller expects the refusal, and the stream carries the guard so
    the funnel below does not check its requests again. ``meter`` reads the
    call's estimate and usage when the engine holds money for it. ``leaf``
    says no hooked method runs below this one (a Stainless SDK's funnel hands
    the request to httpx): a call the engine holds nothing for then runs
    without the re-entrancy guard, which nothing below would read.
    """
    estimate_of = None if meter is None else meter.estimate

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        metadata = pop_usage_metadata(kwargs) if "usage_metadata" in kwargs else None
        try:
            call = describe(instance, args, kwargs)
        except Exception:
            call = _unread(fallback_provider)
        if call is None:
            return wrapped(*args, **kwargs)
        if call is CHECKED_ELSEWHERE:
            return unchecked(lambda: wrapped(*args, **kwargs))
        for model in call.others:
            checked(call.provider, model, metadata, _nothing)
        if inside_checked.get():
            result = wrapped(*args, **kwargs)
        else:
            estimate = None if estimate_of is None else partial(estimate_of, instance, args, kwargs)
            if metadata is None and _relayed.get() is None:  # _begin, inline: nothing to merge
                model = call.model
                spend = (_hooked.engine or _default.get()).begin(
                    _scope.get(),
                    model=model if type(model) is str else _model(model),
                    provider=call.provider,
                    estimate=estimate,
                )
            else:
                spend = _begin(call.provider, call.model, metadata, estimate)
            if spend is None and leaf:
                result = wrapped(*args, **kwargs)
            else:
                result = _run(spend, meter, estimate, wrapped, args, kwargs)
        return carry(result, guarded=True) if deferred else result

    async def awrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        metadata = pop_usage_metadata(kwargs) if "usage_metadata" in kwargs else None
        call = read_call(describe, fallback_provider, instance, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        if call is CHECKED_ELSEWHERE:
            return await aunchecked(lambda: wrapped(*args, **kwargs))
        for model in call.others:
            await achecked(call.provider, model, metadata, _anothing)
        if inside_checked.get():
            result = await wrapped(*args, **kwargs)
        else:
            estimate = None if estimate_of is None else partial(estimate_of, instance, args, kwargs)
            merged = merged_metadata(metadata)
            spend = await _abegin(merged, _model(call.model), call.provider, estimate)
            if spend is None and leaf:
                result = await wrapped(*args, **kwargs)
            else:
                result = await _arun(spend, meter, estimate, wrapped, args, kwargs)
        return carry(result, guarded=True) if deferred else result

    return awrapper if asynchronous else wrapper
