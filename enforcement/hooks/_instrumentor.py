"""The instrumentor: one provider SDK's patches, its supported versions, its status.

A provider module subclasses :class:`Instrumentor` and declares the module it
patches and the versions it supports; its :meth:`~Instrumentor.patch` builds
the wrappers with :meth:`~Instrumentor.hook` (a checked funnel, see
``_base.guard``) and :meth:`~Instrumentor.relay` (a public method that
accepts ``usage_metadata=``, see ``_relay``). :meth:`~Instrumentor.wrap`
keeps the patch bookkeeping, so ``uninstrument()`` restores every original
by identity, and records a funnel that is missing; :class:`HookStatus` says,
per provider, what ``instrument()`` did.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import re
import sys
import threading
from dataclasses import dataclass
from types import FunctionType, ModuleType
from typing import Any, Callable, Optional

import wrapt

from .._fork import renew_after_fork
from ._base import Describe, Wrapper, guard
from ._relay import relay_metadata, relaying
from ._streams import Meter

__all__ = ["HookStatus", "Instrumentor", "release"]

logger = logging.getLogger("enforcement.hooks")

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
        return self._replace(
            owner, attribute, lambda original: wrapt.FunctionWrapper(original, wrapper), required
        )

    def _replace(
        self, owner: Any, attribute: str, make: Callable[[Any], Any], required: bool = False
    ) -> bool:
        """Set ``owner.attribute`` to ``make(original)``; :meth:`uninstrument` puts it back."""
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
        setattr(owner, attribute, make(original))
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
        leaf: bool = False,
    ) -> bool:
        """Check ``owner.attribute``'s costly calls, as ``describe`` tells them, before they run.

        ``deferred``: the method returns a lazy stream (see :func:`guard`).
        ``meter``: how the call's estimate and usage are read (see :class:`Meter`).
        ``leaf``: no hooked method runs below this one (see :func:`guard`).
        """
        original = getattr(owner, attribute, None)
        asynchronous = inspect.iscoroutinefunction(original)
        wrapper = guard(
            describe,
            self.provider,
            asynchronous=asynchronous,
            deferred=deferred,
            meter=meter,
            leaf=leaf,
        )
        return self.wrap(owner, attribute, wrapper, required=required)

    def relay(self, owner: Any, attribute: str) -> bool:
        """Let a public method accept ``usage_metadata=`` and hand it to the funnel below.

        A plain function (a method as its class defines it, a module's function)
        gets a plain function in its place (:func:`relaying`), which costs next
        to nothing when no ``usage_metadata=`` is given; anything else (a bound
        method, a static method) a wrapt layer, which binds as the original did.
        """
        return self._replace(owner, attribute, _relayer)


def _relayer(original: Any) -> Any:
    """What :meth:`Instrumentor.relay` installs (``type``: a wrapt proxy passes isinstance)."""
    if type(original) is FunctionType:
        return relaying(original)
    return wrapt.FunctionWrapper(original, relay_metadata)


#: saved in place of an original that the owner inherited rather than defined.
_INHERITED = object()


def _name_of(owner: Any) -> str:
    if isinstance(owner, ModuleType):
        return owner.__name__
    module = getattr(owner, "__module__", "")
    return f"{module}.{getattr(owner, '__qualname__', type(owner).__name__)}".lstrip(".")
