"""fal.ai's client (``fal-client``, imported as ``fal_client``): the check before an app runs.

Every fal call that runs an application names it first: ``run``,
``submit``, ``subscribe``, ``stream``, ``realtime`` and ``ws_connect`` of
``SyncClient`` and ``AsyncClient`` take the application id as their first
argument. The check sits on those methods (and on the module functions,
``fal_client.run``, ``fal_client.subscribe_async``..., which are methods of
default clients bound when ``fal_client`` is imported, so wrapping the class
alone would miss them):

- ``run`` and ``submit`` are checked when called (or awaited);
- ``subscribe`` is checked once, when called: the ``submit`` it makes passes
  unchecked, also when ``client_timeout`` moves it to fal's worker thread,
  where the caller's context is not visible. The subscribe hands fal a
  private copy of ``arguments`` and marks it, and a ``submit`` of a marked
  copy is the subscribe's own;
- ``stream``, ``realtime`` and ``ws_connect`` return a generator or a context
  manager that sends nothing until it is iterated or entered; they are checked
  when called, so a refused stream raises before it exists.

Below those, the SDK sends through a few private functions: run and submit
through ``_maybe_retry_request`` / ``_async_maybe_retry_request`` (since
0.7; older releases send from the methods themselves), streams through
``connect_sse`` / ``aconnect_sse``, realtime through ``_connect_sync_ws`` /
``_connect_async_ws``. They are hooked too, as a net for a module function
bound by ``from fal_client import run`` before ``instrument()``: a call the
methods above checked passes there unchecked; one that bypassed them is
checked there, its application read from the URL (which also carries any
``path=`` given, so such a call's model may be longer than the reference's).
Status polls, results, cancellation, uploads and realtime tokens are free.

The provider is ``fal_ai``, as the reference labels it. The model is the
application id in the reference's LiteLLM spelling, ``fal_ai/<endpoint id>``
(see :func:`model_name`): ``"fal-ai/flux/dev"`` is checked as
``"fal_ai/fal-ai/flux/dev"``, and a rule on either spelling covers it.

The public methods accept the reference's ``usage_metadata=`` keyword, and
so do ``result`` / ``result_async`` and the request handles' ``get``, where
the reference reads it as tags for the job's record; there it is removed and
the free call goes on.

fal prices a request per call (per image, per second of video), not per
token, so what a call costs is counted as one request: :class:`FalMeter`
estimates no tokens and reports ``Usage(0, 0)`` for a call that completed,
and a request-count rule accrues it. A stream is one request too, counted
when it is asked for (where it is checked). A realtime connection sends many,
unknown when it opens, so it is not metered yet: its hold is released when
the call returns.
"""

from __future__ import annotations

import copy
import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Callable, Optional

from .._fork import renew_after_fork
from .._providers import FAL
from .._usage import Estimate, Usage
from ._base import Call, Wrapper, achecked, checked, guard, read_call
from ._instrumentor import Instrumentor
from ._reentry import aunchecked, unchecked
from ._relay import carry, pop_usage_metadata
from ._streams import Meter

__all__ = [
    "INSTRUMENTOR",
    "FalInstrumentor",
    "FalMeter",
    "describe",
    "describe_request",
    "estimate",
    "model_name",
    "usage_of",
]

_LITELLM_PREFIX = "fal_ai/"
_ENDPOINT_PREFIX = "fal-ai/"

# Default-client module functions: name -> the client method it is bound to.
_MODULE_FUNCTIONS = {
    "run": "run",
    "submit": "submit",
    "subscribe": "subscribe",
    "stream": "stream",
    "realtime": "realtime",
    "ws_connect": "ws_connect",
    "run_async": "run",
    "submit_async": "submit",
    "subscribe_async": "subscribe",
    "stream_async": "stream",
    "realtime_async": "realtime",
    "ws_connect_async": "ws_connect",
}
_DEFERRED = frozenset({"stream", "realtime", "ws_connect"})
_FREE_WITH_TAGS = ("result", "result_async")


def model_name(application: Any) -> Optional[str]:
    """The model a call to ``application`` is checked under: ``fal_ai/fal-ai/<app>``.

    The reference's spelling, LiteLLM's name for a fal endpoint: the
    ``fal_ai/`` prefix is added, and ``fal-ai/`` too when the id lacks it
    (``"flux/dev"`` and ``"fal_ai/flux/dev"`` both become
    ``"fal_ai/fal-ai/flux/dev"``). An empty id stays empty, as there; an id
    that is not a string is no model.
    """
    if not isinstance(application, str):
        return None
    if not application or application.startswith(_LITELLM_PREFIX + _ENDPOINT_PREFIX):
        return application
    if application.startswith(_LITELLM_PREFIX):
        return _LITELLM_PREFIX + _ENDPOINT_PREFIX + application[len(_LITELLM_PREFIX) :]
    if application.startswith(_ENDPOINT_PREFIX):
        return _LITELLM_PREFIX + application
    return _LITELLM_PREFIX + _ENDPOINT_PREFIX + application


def _application(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("application")


def describe(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Call]:
    """What a client method's ``(application, ...)`` runs: always costly."""
    return Call(FAL, model_name(_application(args, kwargs)))


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[1] if len(args) > 1 else kwargs.get("arguments")


class _Subscriptions:
    """The ``arguments`` copies a running subscribe handed to fal, by identity.

    A copy lives as long as its subscribe, so its id names nothing else
    meanwhile; a ``submit`` given a marked copy is that subscribe's own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marked: dict[int, int] = {}
        renew_after_fork(self)

    def _after_fork_in_child(self) -> None:
        # The parent's subscribes run on threads the child does not have.
        self._lock = threading.Lock()
        self._marked = {}

    @contextmanager
    def marking(self, arguments: Any) -> Iterator[None]:
        """Mark ``arguments`` for the block's duration (nothing to mark when None)."""
        if arguments is None:
            yield
            return
        key = id(arguments)
        with self._lock:
            self._marked[key] = self._marked.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._marked.pop(key) - 1
                if left:
                    self._marked[key] = left

    def holds(self, arguments: Any) -> bool:
        if arguments is None:
            return False
        with self._lock:
            return id(arguments) in self._marked


def _private_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    """The call with its ``arguments`` swapped for a shallow copy of its own (None if absent)."""
    arguments = _arguments(args, kwargs)
    if arguments is None:
        return args, kwargs, None
    try:
        private = copy.copy(arguments)
    except Exception:
        return args, kwargs, None
    if len(args) > 1:
        return (args[0], private, *args[2:]), kwargs, private
    return args, {**kwargs, "arguments": private}, private


def estimate(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Estimate:
    """A fal call's worst case in tokens: none, as fal prices the request, not tokens."""
    return Estimate(0, 0)


def usage_of(result: Any) -> Usage:
    """A completed fal call's usage: no tokens; the call itself is the one request counted."""
    return Usage(0, 0)


class FalMeter(Meter):
    """Reads a fal call for the post-call path: one request, no tokens."""

    def estimate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Estimate:
        return estimate(instance, args, kwargs)

    def usage(self, result: Any) -> Optional[Usage]:
        return usage_of(result)


_METER = FalMeter()
_checked_call = guard(describe, FAL, asynchronous=False, meter=_METER)
_achecked_call = guard(describe, FAL, asynchronous=True, meter=_METER)


def _deferred(meter: Optional[Meter]) -> Wrapper:
    """Check a stream or a connection when it is asked for; it sends when iterated or entered.

    ``meter`` reads what the call costs; None releases its hold when the call returns.
    """

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        metadata = pop_usage_metadata(kwargs)
        call = read_call(describe, FAL, instance, args, kwargs) or Call(FAL)
        send = lambda: wrapped(*args, **kwargs)  # noqa: E731
        result = checked(call.provider, call.model, metadata, send, meter, (instance, args, kwargs))
        return carry(result, guarded=True)

    return wrapper


_stream = _deferred(_METER)
_connection = _deferred(None)


def _subscription(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Call, tuple[Any, tuple[Any, ...], dict[str, Any]], Any]:
    """A subscribe's metadata, what it runs, the request, and its own ``arguments`` to mark."""
    metadata = pop_usage_metadata(kwargs)
    call = read_call(describe, FAL, instance, args, kwargs) or Call(FAL)
    args, kwargs, private = _private_arguments(args, kwargs)
    return metadata, call, (instance, args, kwargs), private


class _Queue:
    """The wrappers of ``subscribe`` and ``submit``, sharing one instrumentor's marks."""

    def __init__(self, subscriptions: _Subscriptions) -> None:
        self._subscriptions = subscriptions

    def subscribe(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        metadata, call, request, private = _subscription(instance, args, kwargs)
        with self._subscriptions.marking(private):
            send = lambda: wrapped(*request[1], **request[2])  # noqa: E731
            return checked(call.provider, call.model, metadata, send, _METER, request)

    async def asubscribe(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        metadata, call, request, private = _subscription(instance, args, kwargs)
        with self._subscriptions.marking(private):
            send = lambda: wrapped(*request[1], **request[2])  # noqa: E731
            return await achecked(call.provider, call.model, metadata, send, _METER, request)

    def submit(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if self._subscriptions.holds(_arguments(args, kwargs)):
            pop_usage_metadata(kwargs)
            return unchecked(lambda: wrapped(*args, **kwargs))
        return _checked_call(wrapped, instance, args, kwargs)

    async def asubmit(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if self._subscriptions.holds(_arguments(args, kwargs)):
            pop_usage_metadata(kwargs)
            return await aunchecked(lambda: wrapped(*args, **kwargs))
        return await _achecked_call(wrapped, instance, args, kwargs)

    def wrapper(self, method: str, asynchronous: bool) -> Wrapper:
        """The wrapper of a client method (or the module function bound to it)."""
        if method == "subscribe":
            return self.asubscribe if asynchronous else self.subscribe
        if method == "submit":
            return self.asubmit if asynchronous else self.submit
        if method == "stream":
            return _stream
        if method in _DEFERRED:
            return _connection
        return _achecked_call if asynchronous else _checked_call


# -- the net below: the private senders, read by URL --------------------------------


class _Senders:
    """Reads a URL the SDK is about to send to against the module's current URL bases."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def _base(self, name: str) -> str:
        value = getattr(self._module, name, None)
        return value if isinstance(value, str) else "\0"

    def http(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Call]:
        """``(client, method, url, ...)``: a run (any method) or a queue submission (POST)."""
        method = args[1] if len(args) > 1 else kwargs.get("method")
        url = args[2] if len(args) > 2 else kwargs.get("url")
        if not isinstance(url, str) or not isinstance(method, str):
            return None
        run = self._base("RUN_URL_FORMAT")
        if url.startswith(run):
            return _from_url(url[len(run) :], "/stream")
        queue = self._base("QUEUE_URL_FORMAT")
        if url.startswith(queue) and method.upper() == "POST":
            return _from_url(url[len(queue) :], "")
        return None

    def websocket(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Optional[Call]:
        """``(url, headers)``: a realtime connection to an app."""
        url = args[0] if args else kwargs.get("url")
        realtime = self._base("REALTIME_URL_FORMAT")
        if not isinstance(url, str) or not url.startswith(realtime):
            return None
        return _from_url(url[len(realtime) :], "/realtime")


def _from_url(rest: str, default_path: str) -> Call:
    application = rest.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if default_path and application.endswith(default_path):
        application = application[: -len(default_path)]
    return Call(FAL, model_name(application))


def describe_request(module: ModuleType) -> Callable[..., Optional[Call]]:
    """The describer of ``_maybe_retry_request(client, method, url, ...)`` for ``module``."""
    return _Senders(module).http


class FalInstrumentor(Instrumentor):
    """Checks ``fal_client``'s application runs before they are sent."""

    name = "fal"
    module = "fal_client"
    distribution = "fal-client"
    minimum = (0, 5)
    below = (2,)
    provider = FAL

    def __init__(self) -> None:
        super().__init__()
        # Bounded by the subscribes running at once: a mark lives as long as its subscribe.
        self._queue = _Queue(_Subscriptions())

    def patch(self, module: ModuleType) -> None:
        client = getattr(module, "client", None) or module
        wrapper = self._queue.wrapper
        for owner, asynchronous in ((module.SyncClient, False), (module.AsyncClient, True)):
            for method in ("run", "submit", "subscribe", "stream"):
                self.wrap(owner, method, wrapper(method, asynchronous), required=True)
            for method in ("realtime", "ws_connect"):
                self.wrap(owner, method, _connection)
            self.relay(owner, "result")
        for handle in ("SyncRequestHandle", "AsyncRequestHandle"):
            owner = getattr(module, handle, None)
            if owner is not None:
                self.relay(owner, "get")
        for name, method in _MODULE_FUNCTIONS.items():
            function = module.__dict__.get(name)
            if callable(function):
                asynchronous = inspect.iscoroutinefunction(function)
                self.wrap(module, name, wrapper(method, asynchronous))
        for name in _FREE_WITH_TAGS:
            if callable(module.__dict__.get(name)):
                self.relay(module, name)
        senders = _Senders(client)
        self.hook(client, "_maybe_retry_request", senders.http)
        self.hook(client, "_async_maybe_retry_request", senders.http)
        self.hook(client, "connect_sse", senders.http)
        self.hook(client, "aconnect_sse", senders.http)
        self.hook(client, "_connect_sync_ws", senders.websocket)
        self.hook(client, "_connect_async_ws", senders.websocket)


INSTRUMENTOR = FalInstrumentor()
