"""The request-funnel hook shared by the SDKs Stainless generates (openai, anthropic).

Both SDKs send every request through ``SyncAPIClient.request`` /
``AsyncAPIClient.request(cast_to, options, ...)``, where ``options`` carries
the method, path and JSON body. One hook there sees every costly call,
including the ones a stream manager sends later, on ``__enter__``; the
provider module only says which requests cost money and for which models.

The public methods are wrapped only to accept the reference SDK's
``usage_metadata=`` keyword. Its value cannot ride in the request itself, so
it waits in a small bounded store and a private header carries its key down
to the funnel, which removes the header before the SDK builds the request.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import threading
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Callable, Optional

import cachetools

from ._base import Instrumentor, achecked, checked, pop_usage_metadata

__all__ = ["PublicMethods", "StainlessInstrumentor"]

#: (module, classes, methods): public methods that accept ``usage_metadata=``.
PublicMethods = tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]

_HEADER = "x-enforcement-call-metadata"


class _Pending:
    """Call metadata waiting for its request, keyed by the token in the private header.

    Bounded and expiring: a stream manager that is never entered leaves its
    entry behind, and that must not grow without limit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: cachetools.TTLCache[str, Mapping[str, Any]] = cachetools.TTLCache(
            maxsize=4096, ttl=3600
        )
        self._counter = itertools.count(1)

    def put(self, metadata: Mapping[str, Any]) -> str:
        token = str(next(self._counter))
        with self._lock:
            self._entries[token] = metadata
        return token

    def take(self, token: str) -> Optional[Mapping[str, Any]]:
        with self._lock:
            return self._entries.pop(token, None)


_pending = _Pending()


def _accept_usage_metadata(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Strip ``usage_metadata=`` and send it down to the funnel in the private header."""
    metadata = pop_usage_metadata(kwargs)
    if metadata is not None:
        headers = kwargs.get("extra_headers")
        merged = dict(headers) if isinstance(headers, Mapping) else {}
        merged[_HEADER] = _pending.put(metadata)
        kwargs["extra_headers"] = merged
    return wrapped(*args, **kwargs)


def _take_metadata(options: Any) -> tuple[Any, Optional[Mapping[str, Any]]]:
    """The options without our private header, and the metadata it pointed to."""
    headers = getattr(options, "headers", None)
    if not isinstance(headers, Mapping) or _HEADER not in headers:
        return options, None
    token = headers[_HEADER]
    cleaned = copy.copy(options)
    cleaned.headers = {k: v for k, v in headers.items() if k != _HEADER}
    return cleaned, _pending.take(token) if isinstance(token, str) else None


def _options_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[1] if len(args) > 1 else kwargs.get("options")


def _with_options(
    args: tuple[Any, ...], kwargs: dict[str, Any], options: Any
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if len(args) > 1:
        return (args[0], options, *args[2:]), kwargs
    if "options" in kwargs:
        return args, {**kwargs, "options": options}
    return args, kwargs


def _nothing() -> None:
    return None


async def _anothing() -> None:
    return None


class StainlessInstrumentor(Instrumentor):
    """Hooks a Stainless SDK's request funnel; subclasses say what a request costs.

    A request judged costly is checked once per model it runs (a batch may
    name several), so a rule on any of them stops the whole request.
    """

    #: the SDK's public methods that accept ``usage_metadata=``.
    public_methods: PublicMethods = ()

    def judge(self, client: Any, options: Any) -> Optional[tuple[str, Sequence[Optional[str]]]]:
        """The provider label and the models of a costly request; None when it is free.

        Must not raise: it reads a request the SDK is about to send.
        """
        raise NotImplementedError

    def patch(self, module: ModuleType) -> None:
        base = importlib.import_module(f"{self.module}._base_client")
        judge = self.judge

        def request(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            options, metadata = _take_metadata(_options_of(args, kwargs))
            args, kwargs = _with_options(args, kwargs, options)
            judged = judge(instance, options)
            if judged is None:
                return wrapped(*args, **kwargs)
            provider, models = judged
            for model in models[:-1]:
                checked(provider, model, metadata, _nothing)
            return checked(provider, models[-1], metadata, lambda: wrapped(*args, **kwargs))

        async def arequest(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            options, metadata = _take_metadata(_options_of(args, kwargs))
            args, kwargs = _with_options(args, kwargs, options)
            judged = judge(instance, options)
            if judged is None:
                return await wrapped(*args, **kwargs)
            provider, models = judged
            for model in models[:-1]:
                await achecked(provider, model, metadata, _anothing)
            return await achecked(provider, models[-1], metadata, lambda: wrapped(*args, **kwargs))

        self.wrap(base.SyncAPIClient, "request", request)
        self.wrap(base.AsyncAPIClient, "request", arequest)
        self._wrap_public_methods()

    def _wrap_public_methods(self) -> None:
        for module_name, classes, methods in self.public_methods:
            try:
                resource = importlib.import_module(module_name)
            except ImportError:
                continue
            for class_name in classes:
                owner = getattr(resource, class_name, None)
                for method in methods:
                    if owner is not None and method in owner.__dict__:
                        self.wrap(owner, method, _accept_usage_metadata)
