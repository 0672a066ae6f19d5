"""The hook kit: what every provider hook shares.

A hook wraps one SDK method (ideally the SDK's funnel, the one method every
request passes through) so that the check runs before the request is built
and sent. A provider module declares, and this module does:

- :meth:`Instrumentor.hook` builds a method's wrapper (sync or async, as the
  method is) from a small ``describe(instance, args, kwargs)`` function that
  says what the call is: a :class:`Call` (provider label and model) when it
  costs money, None when it is free.
- :meth:`Instrumentor.relay` wraps a public method only to accept the
  reference SDK's ``usage_metadata=`` keyword; the value rides a context
  variable down to the funnel hook below, for the duration of the call and of
  any deferred sender it returns (a stream manager's ``__enter__``, a lazy
  stream's iteration). Nothing is stored past the call.
- :meth:`Instrumentor.wrap` keeps the patch bookkeeping, so ``uninstrument()``
  restores every original by identity, and records a funnel that is missing.
- :class:`HookStatus` says, per provider, what ``instrument()`` did.

One user call is checked once: a call that goes through several hooked
layers (LiteLLM's Router, then ``litellm.acompletion``, then the openai SDK)
is checked by the outermost, and the inner layers see the guard and pass
straight through. The guard is a context variable, so it follows threads'
and tasks' own contexts and never leaks between concurrent calls. It is
scoped (set and reset around the call) except for a :class:`Hold`, the guard
of a call whose request leaves after the callback that checked it has
returned (LangChain's): it stays set until released, from any context.

After the check, the post-call path: :meth:`Engine.begin` returns a
:class:`Spend` when the engine holds money for the call, and the hook settles
it exactly once from what the call returned, as the hook's :class:`Meter`
reads it (see ``_streams``): a whole response at once, a stream when it ends,
``None`` when the SDK raised. When ``begin`` returns None nothing is read and
nothing is wrapped. Only the hook that began a call settles it; the inner
layers pass through, as they do for the check.

The walk from a hook to the matcher: wrapper -> :func:`checked` ->
:func:`hooked_engine` ``.begin(metadata, model=, provider=, estimate=)``.
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import inspect
import logging
import re
import sys
import threading
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, Callable, NamedTuple, Optional, TypeVar, Union

import wrapt

from .._default import _default
from .._engine import Engine
from .._fork import renew_after_fork
from .._metadata import _scope, current_metadata
from .._usage import Estimate, Spend
from ._streams import Meter, settle, settle_from

__all__ = [
    "CHECKED_ELSEWHERE",
    "Call",
    "Hold",
    "HookStatus",
    "Instrumentor",
    "Meter",
    "achecked",
    "already_checked",
    "aunchecked",
    "aunder",
    "carry",
    "checked",
    "held_guard",
    "hold_guard",
    "hooked_engine",
    "pop_usage_metadata",
    "read_call",
    "relayed_metadata",
    "set_hooked_engine",
    "unchecked",
]

logger = logging.getLogger("enforcement.hooks")

_T = TypeVar("_T")
Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

# True (or an active Hold) inside a checked call: the hooks below pass it through.
_inside: contextvars.ContextVar[Union[bool, Hold]] = contextvars.ContextVar(
    "enforcement_inside", default=False
)
_relayed: contextvars.ContextVar[Optional[Mapping[str, Any]]] = contextvars.ContextVar(
    "enforcement_call_metadata", default=None
)


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


# -- per-call metadata -------------------------------------------------------------


def pop_usage_metadata(kwargs: dict[str, Any]) -> Optional[Mapping[str, Any]]:
    """Remove the reference SDK's ``usage_metadata=`` keyword before the SDK sees it."""
    value = kwargs.pop("usage_metadata", None)
    return value if isinstance(value, Mapping) else None


def relayed_metadata() -> Optional[Mapping[str, Any]]:
    """The ``usage_metadata=`` a public method above this funnel was given, if any."""
    return _relayed.get()


def _metadata(call: Optional[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
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
        guarded = _inside.set(True) if self._self_guard else None
        try:
            return call()
        finally:
            if guarded is not None:
                _inside.reset(guarded)
            _relayed.reset(relayed)

    async def _self_arun(self, call: Callable[[], Awaitable[_T]]) -> _T:
        relayed = _relayed.set(self._self_metadata)
        guarded = _inside.set(True) if self._self_guard else None
        try:
            return await call()
        finally:
            if guarded is not None:
                _inside.reset(guarded)
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


def _relay(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
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


async def _arelayed(awaitable: Awaitable[Any], metadata: Mapping[str, Any]) -> Any:
    """An async method's coroutine, awaited with its metadata relayed."""
    token = _relayed.set(metadata)
    try:
        result = await awaitable
    finally:
        _relayed.reset(token)
    return carry(result, metadata)


# -- the check ----------------------------------------------------------------------


def already_checked() -> bool:
    """True inside a call an outer hook has checked."""
    return bool(_inside.get())


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
    current = _inside.get()
    return current if isinstance(current, Hold) and current.active else None


def hold_guard() -> Hold:
    """The :class:`Hold` of this context, set (never reset) when none is active.

    Calls checked one after another in one context before any is sent (a
    batch's prompts) share it.
    """
    hold = held_guard()
    if hold is None:
        hold = Hold()
        _inside.set(hold)
    return hold


async def aunder(hold: Hold, call: Callable[[], Awaitable[_T]]) -> _T:
    """Await ``call()`` inside ``hold``, which another task set and may release."""
    token = _inside.set(hold)
    try:
        return await call()
    finally:
        _inside.reset(token)


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
    if _inside.get():
        return call()
    estimate = None if meter is None else partial(meter.estimate, *request)
    spend = hooked_engine().begin(
        _metadata(call_metadata),
        model=model if type(model) is str else _model(model),
        provider=provider,
        estimate=estimate,
    )
    if spend is None:
        return unchecked(call)
    token = _inside.set(True)
    try:
        result = call()
    except BaseException:
        settle(spend, None)
        raise
    finally:
        _inside.reset(token)
    return settle_from(result, spend, meter, estimate or _no_estimate)  # type: ignore[no-any-return]


def unchecked(call: Callable[[], _T]) -> _T:
    """Run a call that is checked already (or by another layer); inner hooks pass through."""
    token = _inside.set(True)
    try:
        return call()
    finally:
        _inside.reset(token)


async def achecked(
    provider: Optional[str],
    model: Any,
    call_metadata: Optional[Mapping[str, Any]],
    call: Callable[[], Awaitable[_T]],
    meter: Optional[Meter] = None,
    request: tuple[Any, tuple[Any, ...], dict[str, Any]] = (None, (), {}),
) -> _T:
    """:func:`checked` for coroutines: the check never blocks the event loop."""
    if _inside.get():
        return await call()
    estimate = None if meter is None else partial(meter.estimate, *request)
    spend = await _abegin(_metadata(call_metadata), _model(model), provider, estimate)
    if spend is None:
        return await aunchecked(call)
    token = _inside.set(True)
    try:
        result = await call()
    except BaseException:
        settle(spend, None)
        raise
    finally:
        _inside.reset(token)
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


async def aunchecked(call: Callable[[], Awaitable[_T]]) -> _T:
    """:func:`unchecked` for coroutines."""
    token = _inside.set(True)
    try:
        return await call()
    finally:
        _inside.reset(token)


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
        logger.debug("Could not read a hooked call; checking it with no model", exc_info=True)
        return Call(fallback_provider)


def guard(
    describe: Describe,
    fallback_provider: str,
    *,
    asynchronous: bool,
    deferred: bool = False,
    meter: Optional[Meter] = None,
) -> Wrapper:
    """The wrapper that checks a method's costly calls before the original runs.

    It removes ``usage_metadata=``, asks ``describe`` what the call is, and
    calls the original unchecked when it is free. ``asynchronous`` picks a
    coroutine wrapper that awaits the check without blocking the event loop.
    ``deferred`` is for a method that returns a lazy stream, whose requests
    are sent only when it is iterated: the call is checked when it is made,
    where the caller expects the refusal, and the stream carries the guard so
    the funnel below does not check its requests again. ``meter`` reads the
    call's estimate and usage when the engine holds money for it.
    """

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        metadata = pop_usage_metadata(kwargs)
        call = read_call(describe, fallback_provider, instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        if call is CHECKED_ELSEWHERE:
            return unchecked(lambda: wrapped(*args, **kwargs))
        for model in call.others:
            checked(call.provider, model, metadata, _nothing)
        result = checked(
            call.provider,
            call.model,
            metadata,
            lambda: wrapped(*args, **kwargs),
            meter,
            (instance, args, kwargs),
        )
        return carry(result, guarded=True) if deferred else result

    async def awrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        metadata = pop_usage_metadata(kwargs)
        call = read_call(describe, fallback_provider, instance, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        if call is CHECKED_ELSEWHERE:
            return await aunchecked(lambda: wrapped(*args, **kwargs))
        for model in call.others:
            await achecked(call.provider, model, metadata, _anothing)
        result = await achecked(
            call.provider,
            call.model,
            metadata,
            lambda: wrapped(*args, **kwargs),
            meter,
            (instance, args, kwargs),
        )
        return carry(result, guarded=True) if deferred else result

    return awrapper if asynchronous else wrapper


# -- versions and status ----------------------------------------------------------

_RELEASE = re.compile(r"\d+(?:\.\d+)*")


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``"1.110.2rc1"`` -> ``(1, 110, 2)``."""
    match = _RELEASE.match(version.strip().lstrip("vV"))
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


@dataclass(frozen=True)
class HookStatus:
    """What ``instrument()`` did for one provider SDK, as data.

    ``state`` is one of:

    - ``"patched"``: its funnels are wrapped and its calls are checked;
    - ``"waiting"``: instrumented, the SDK not imported yet (patched on import);
    - ``"skipped"``: not patched, because the SDK is not installed or its
      version is older than the hooks support (``reason`` says which);
    - ``"failed"``: a funnel the hooks rely on is missing (``missing`` names
      it) or patching raised; calls through what is missing are not checked;
    - ``"off"``: not instrumented.

    A version newer than the tested range is patched when every funnel is
    found (``reason`` says it is untested): a new SDK release must not
    silently switch cost control off.
    """

    provider: str
    state: str
    distribution: str
    version: Optional[str]
    supported: str
    reason: Optional[str] = None
    missing: tuple[str, ...] = ()


class Instrumentor:
    """One provider SDK's hooks: patched when the SDK is imported, restored on uninstrument.

    A subclass names the module it patches and the versions it supports, and
    implements :meth:`patch` with :meth:`hook`, :meth:`relay` and :meth:`wrap`.
    """

    #: the provider's name for ``instrument("openai")``.
    name: str = ""
    #: the import name of the SDK module whose import triggers patching.
    module: str = ""
    #: the distribution whose version is checked.
    distribution: str = ""
    #: the supported releases: oldest (inclusive) and the first unsupported one.
    minimum: tuple[int, ...] = ()
    below: tuple[int, ...] = ()
    #: the label a call is checked under when its describer cannot read it.
    provider: str = ""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []
        self._missing: list[str] = []
        self._failure: Optional[str] = None
        self._wanted = False
        self._hook_registered = False
        self._lock = threading.RLock()
        renew_after_fork(self)

    def _after_fork_in_child(self) -> None:
        # A child forked while another thread patched: the SDK's own import may need it.
        self._lock = threading.RLock()

    # -- what it supports

    @property
    def supported(self) -> str:
        """The supported range, as a requirement reads: ``">=1.0,<4"``."""
        parts = []
        if self.minimum:
            parts.append(">=" + ".".join(map(str, self.minimum)))
        if self.below:
            parts.append("<" + ".".join(map(str, self.below)))
        return ",".join(parts)

    def instrumentation_dependencies(self) -> tuple[str, ...]:
        """The requirement this instrumentor supports, as OpenTelemetry's instrumentors say it."""
        return (f"{self.distribution or self.module} {self.supported}".strip(),)

    def version(self) -> Optional[str]:
        try:
            return importlib.metadata.version(self.distribution or self.module)
        except importlib.metadata.PackageNotFoundError:
            return None

    # -- what it did

    @property
    def patched(self) -> bool:
        return bool(self._saved)

    def status(self) -> HookStatus:
        """What this instrumentor did, as data (see :class:`HookStatus`)."""
        version = self.version()

        def state(name: str, reason: Optional[str] = None) -> HookStatus:
            return HookStatus(
                provider=self.name,
                state=name,
                distribution=self.distribution or self.module,
                version=version,
                supported=self.supported,
                reason=reason,
                missing=tuple(self._missing),
            )

        if version is None:
            return state("skipped", "not installed")
        too_old = self._too_old(version)
        if too_old is not None:
            return state("skipped", too_old)
        if self._failure is not None or self._missing:
            return state("failed", self._failure or "missing " + ", ".join(self._missing))
        if self.patched:
            return state("patched", self._untested(version))
        if self._wanted:
            return state("waiting", f"patched when {self.module} is imported")
        return state("off")

    def _too_old(self, version: str) -> Optional[str]:
        if self.minimum and release(version) < self.minimum:
            return f"version {version} is older than the supported {self.supported}"
        return None

    def _untested(self, version: str) -> Optional[str]:
        if self.below and release(version) >= self.below:
            return f"version {version} is newer than the tested {self.supported}"
        return None

    # -- patching

    def instrument(self) -> None:
        """Patch now if the SDK is imported, else as soon as it is."""
        with self._lock:
            self._wanted = True
            if self.patched:
                return
            module = sys.modules.get(self.module)
            if module is not None:
                self._apply(module)
            elif not self._hook_registered:
                self._hook_registered = True
                wrapt.register_post_import_hook(self._on_import, self.module)

    def uninstrument(self) -> None:
        """Put back every original attribute, exactly as it was."""
        with self._lock:
            self._wanted = False
            self._restore()

    def _restore(self) -> None:
        for owner, attribute, original in reversed(self._saved):
            if original is _INHERITED:
                delattr(owner, attribute)  # it was its base's: inherited again, as before
            else:
                setattr(owner, attribute, original)
        self._saved.clear()

    def _on_import(self, module: ModuleType) -> None:
        with self._lock:
            if self._wanted and not self.patched:
                self._apply(module)

    def _apply(self, module: ModuleType) -> None:
        version = self.version() or "unknown"
        self._missing.clear()
        self._failure = None
        too_old = self._too_old(version) if version != "unknown" else None
        if too_old is not None:
            logger.warning("Not hooking %s: %s; its calls are not checked", self.name, too_old)
            return
        try:
            self.patch(module)
        except Exception as error:
            self._restore()
            self._failure = f"patching raised {type(error).__name__}: {error}"
            logger.warning(
                "Could not hook %s %s; its calls are not checked",
                self.name,
                version,
                exc_info=True,
            )
            return
        if self._missing:
            logger.warning(
                "%s %s has no %s; calls through it are not checked",
                self.distribution or self.name,
                version,
                ", ".join(self._missing),
            )
        untested = self._untested(version)
        if untested is not None and not self._missing:
            logger.warning("Hooked %s, but %s", self.name, untested)

    def patch(self, module: ModuleType) -> None:
        raise NotImplementedError

    def wrap(self, owner: Any, attribute: str, wrapper: Wrapper, *, required: bool = False) -> bool:
        """Wrap ``owner.attribute`` (a class or module member); False when it is absent.

        A ``required`` attribute is a funnel the hooks rely on: its absence is
        reported in :meth:`status` and warned about once.
        """
        own = getattr(owner, "__dict__", {})
        original = own.get(attribute)
        if original is None:
            original = getattr(owner, attribute, None)
        if original is None:
            if required:
                self._missing.append(f"{_name_of(owner)}.{attribute}")
            else:
                logger.debug("%s has no %s to hook", owner, attribute)
            return False
        if any(
            saved_owner is owner and saved_attribute == attribute
            for saved_owner, saved_attribute, _ in self._saved
        ):
            return True
        saved = original if attribute in own else _INHERITED  # before setattr changes ``own``
        setattr(owner, attribute, wrapt.FunctionWrapper(original, wrapper))
        self._saved.append((owner, attribute, saved))
        return True

    def hook(
        self,
        owner: Any,
        attribute: str,
        describe: Describe,
        *,
        required: bool = False,
        deferred: bool = False,
        meter: Optional[Meter] = None,
    ) -> bool:
        """Check ``owner.attribute``'s costly calls, as ``describe`` tells them, before they run.

        ``deferred``: the method returns a lazy stream (see :func:`guard`).
        ``meter``: how the call's estimate and usage are read (see :class:`Meter`).
        """
        original = getattr(owner, attribute, None)
        asynchronous = inspect.iscoroutinefunction(original)
        wrapper = guard(
            describe, self.provider, asynchronous=asynchronous, deferred=deferred, meter=meter
        )
        return self.wrap(owner, attribute, wrapper, required=required)

    def relay(self, owner: Any, attribute: str) -> bool:
        """Let a public method accept ``usage_metadata=`` and hand it to the funnel below."""
        return self.wrap(owner, attribute, _relay)


#: saved in place of an original that the owner inherited rather than defined.
_INHERITED = object()


def _name_of(owner: Any) -> str:
    if isinstance(owner, ModuleType):
        return owner.__name__
    module = getattr(owner, "__module__", "")
    return f"{module}.{getattr(owner, '__qualname__', type(owner).__name__)}".lstrip(".")
