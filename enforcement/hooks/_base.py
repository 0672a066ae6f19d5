"""What every provider hook shares: the check, the guard, the patch bookkeeping.

A hook wraps one SDK method (ideally the SDK's funnel, the one method every
request passes through) so that the check runs before the request is built
and sent. It passes the provider label and the request's model, and judges
the call on :func:`enforcement.usage_metadata` scopes plus the call's own
``usage_metadata=`` keyword, which the hook removes before the SDK sees it.

One user call is checked once: a call that goes through several hooked
layers (LiteLLM's Router, then ``litellm.acompletion``, then the openai SDK)
is checked by the outermost, and the inner layers see the guard and pass
straight through. The guard is a context variable, so it follows threads'
and tasks' own contexts and never leaks between concurrent calls.
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import logging
import sys
from collections.abc import Awaitable, Mapping
from types import ModuleType
from typing import Any, Callable, Optional, TypeVar

import wrapt

from .._default import _default
from .._engine import Engine
from .._metadata import _scope, current_metadata

__all__ = [
    "Instrumentor",
    "achecked",
    "aunchecked",
    "checked",
    "pop_usage_metadata",
    "stash_call_metadata",
    "unchecked",
]

logger = logging.getLogger("enforcement.hooks")

_T = TypeVar("_T")

_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("enforcement_inside", default=False)
_stashed: contextvars.ContextVar[Optional[Mapping[str, Any]]] = contextvars.ContextVar(
    "enforcement_call_metadata", default=None
)


class _Target:
    """Which engine the hooks ask: the default one unless ``instrument(engine=...)`` said."""

    engine: Optional[Engine] = None


target = _Target()


def _engine() -> Engine:
    """The engine hooks ask (for hooks that call it directly, not through ``checked``)."""
    return target.engine or _default.get()


def pop_usage_metadata(kwargs: dict[str, Any]) -> Optional[Mapping[str, Any]]:
    """Remove the reference SDK's ``usage_metadata=`` keyword before the SDK sees it."""
    value = kwargs.pop("usage_metadata", None)
    return value if isinstance(value, Mapping) else None


def stash_call_metadata(metadata: Optional[Mapping[str, Any]]) -> contextvars.Token[Any]:
    """Hand a public method's ``usage_metadata=`` to the funnel hook below it."""
    return _stashed.set(metadata)


def reset_call_metadata(token: contextvars.Token[Any]) -> None:
    _stashed.reset(token)


def _metadata(call: Optional[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    stashed = _stashed.get()
    if stashed is not None:
        call = {**stashed, **call} if call else stashed
    if call is None:
        return _scope.get()  # the common case: no per-call metadata, no merge
    return current_metadata(call)


def already_checked() -> bool:
    """True inside a call an outer hook has checked."""
    return _inside.get()


def checked(
    provider: Optional[str],
    model: Any,
    call_metadata: Optional[Mapping[str, Any]],
    call: Callable[[], _T],
) -> _T:
    """Run ``call`` once the check passes; inner hooks skip their own check."""
    if _inside.get():
        return call()
    engine = target.engine or _default.get()
    engine.check(
        _metadata(call_metadata),
        model=model if type(model) is str else _model(model),
        provider=provider,
    )
    return unchecked(call)


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
) -> _T:
    """:func:`checked` for coroutines: the check never blocks the event loop."""
    if _inside.get():
        return await call()
    engine = target.engine or _default.get()
    await engine.acheck(_metadata(call_metadata), model=_model(model), provider=provider)
    return await aunchecked(call)


async def aunchecked(call: Callable[[], Awaitable[_T]]) -> _T:
    """:func:`unchecked` for coroutines."""
    token = _inside.set(True)
    try:
        return await call()
    finally:
        _inside.reset(token)


def _model(model: Any) -> Optional[str]:
    return model if isinstance(model, str) else None


class Instrumentor:
    """One provider SDK's hooks: patched when the SDK is imported, restored on uninstrument.

    A subclass names the module it patches and the versions it supports, and
    implements :meth:`patch`, wrapping attributes with :meth:`wrap`.
    """

    #: the provider's name for ``instrument("openai")``.
    name: str = ""
    #: the import name of the SDK module whose import triggers patching.
    module: str = ""
    #: the distribution whose version is checked, and the supported range, for messages.
    distribution: str = ""
    supported: str = ""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []
        self._wanted = False
        self._hook_registered = False

    @property
    def patched(self) -> bool:
        return bool(self._saved)

    def instrument(self) -> None:
        """Patch now if the SDK is imported, else as soon as it is."""
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
        self._wanted = False
        for owner, attribute, original in reversed(self._saved):
            setattr(owner, attribute, original)
        self._saved.clear()

    def _on_import(self, module: ModuleType) -> None:
        if self._wanted and not self.patched:
            self._apply(module)

    def _apply(self, module: ModuleType) -> None:
        try:
            self.patch(module)
        except Exception:
            logger.warning(
                "Could not hook %s %s; its calls are not checked",
                self.name,
                self.version() or "",
                exc_info=True,
            )
            self.uninstrument()
            self._wanted = True

    def version(self) -> Optional[str]:
        try:
            return importlib.metadata.version(self.distribution or self.module)
        except importlib.metadata.PackageNotFoundError:
            return None

    def patch(self, module: ModuleType) -> None:
        raise NotImplementedError

    def wrap(
        self,
        owner: Any,
        attribute: str,
        wrapper: Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any],
    ) -> bool:
        """Wrap ``owner.attribute`` (a class or module member); False when it is absent."""
        original = owner.__dict__.get(attribute) if hasattr(owner, "__dict__") else None
        if original is None:
            original = getattr(owner, attribute, None)
        if original is None:
            logger.debug("%s has no %s to hook", owner, attribute)
            return False
        if any(
            saved_owner is owner and saved_attribute == attribute
            for saved_owner, saved_attribute, _ in self._saved
        ):
            return True
        setattr(owner, attribute, wrapt.FunctionWrapper(original, wrapper))
        self._saved.append((owner, attribute, original))
        return True
