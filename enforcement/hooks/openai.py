"""OpenAI (and Azure OpenAI) hooks: the check in the SDK's request funnel.

Every request of the ``openai`` SDK passes through ``SyncAPIClient.request``
/ ``AsyncAPIClient.request`` with its path and body, so one hook there covers
chat completions (create, parse, stream), completions, embeddings, the
Responses API, images, audio, batches, fine-tuning and videos, through the
raw-response, streaming-response and beta variants alike, and keeps covering
methods a new SDK release adds. Only requests that cost money are checked: a
POST to one of the paths in :data:`COSTLY_PATHS` (moderations, files, model
listings and every GET are free).

The public methods are wrapped only to accept the reference SDK's
``usage_metadata=`` keyword. The metadata travels to the funnel in a private
header that the funnel removes before the SDK builds the request, so it also
reaches requests a stream manager sends later, on ``__enter__``.
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Callable, Optional

import cachetools

from ._base import Instrumentor, achecked, checked, pop_usage_metadata

__all__ = ["COSTLY_PATHS", "INSTRUMENTOR", "OpenAIInstrumentor"]

#: POST paths that spend money; the Azure client's ``/deployments/<name>``
#: prefix is added after the hook runs.
COSTLY_PATHS = re.compile(
    r"/(?:chat/completions|completions|embeddings|responses|responses/compact"
    r"|images/(?:generations|edits|variations)|audio/(?:speech|transcriptions|translations)"
    r"|batches|fine_tuning/jobs|videos|threads(?:/[^/]+)?/runs)"
)
_HEADER = "x-enforcement-call-metadata"

# Public methods that accept ``usage_metadata=``: (module, classes, methods).
_PUBLIC_METHODS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "openai.resources.chat.completions.completions",
        ("Completions", "AsyncCompletions"),
        ("create", "parse", "stream"),
    ),
    (
        "openai.resources.beta.chat.completions",
        ("Completions", "AsyncCompletions"),
        ("parse", "stream"),
    ),
    ("openai.resources.completions", ("Completions", "AsyncCompletions"), ("create",)),
    ("openai.resources.embeddings", ("Embeddings", "AsyncEmbeddings"), ("create",)),
    (
        "openai.resources.responses.responses",
        ("Responses", "AsyncResponses"),
        ("create", "parse", "stream"),
    ),
    (
        "openai.resources.images",
        ("Images", "AsyncImages"),
        ("generate", "edit", "create_variation"),
    ),
    ("openai.resources.audio.speech", ("Speech", "AsyncSpeech"), ("create",)),
    (
        "openai.resources.audio.transcriptions",
        ("Transcriptions", "AsyncTranscriptions"),
        ("create",),
    ),
    ("openai.resources.audio.translations", ("Translations", "AsyncTranslations"), ("create",)),
    ("openai.resources.batches", ("Batches", "AsyncBatches"), ("create",)),
    ("openai.resources.videos", ("Videos", "AsyncVideos"), ("create",)),
    ("openai.resources.fine_tuning.jobs.jobs", ("Jobs", "AsyncJobs"), ("create",)),
)


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


def _costly(options: Any) -> bool:
    method = getattr(options, "method", "")
    url = getattr(options, "url", "")
    return (
        isinstance(method, str)
        and method.lower() == "post"
        and isinstance(url, str)
        and COSTLY_PATHS.fullmatch(url) is not None
    )


def _take_metadata(options: Any) -> tuple[Any, Optional[Mapping[str, Any]]]:
    """The options without our private header, and the metadata it pointed to."""
    headers = getattr(options, "headers", None)
    if not isinstance(headers, Mapping) or _HEADER not in headers:
        return options, None
    token = headers[_HEADER]
    cleaned = copy.copy(options)
    cleaned.headers = {k: v for k, v in headers.items() if k != _HEADER}
    return cleaned, _pending.take(token) if isinstance(token, str) else None


class OpenAIInstrumentor(Instrumentor):
    """Checks the ``openai`` SDK's costly requests in its request funnel."""

    name = "openai"
    module = "openai"
    distribution = "openai"
    supported = ">=1.0,<4"

    def patch(self, module: ModuleType) -> None:
        import importlib

        base = importlib.import_module("openai._base_client")
        azure = importlib.import_module("openai.lib.azure")
        azure_client = azure.BaseAzureClient

        def call_of(instance: Any, options: Any) -> tuple[str, Optional[str]]:
            body = getattr(options, "json_data", None)
            model = body.get("model") if isinstance(body, Mapping) else None
            if isinstance(instance, azure_client):
                deployment = getattr(instance, "_azure_deployment", None)
                return "azure", deployment if isinstance(deployment, str) else model
            return "openai", model if isinstance(model, str) else None

        def split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return args[1] if len(args) > 1 else kwargs.get("options")

        def rebuilt(
            args: tuple[Any, ...], kwargs: dict[str, Any], options: Any
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            if len(args) > 1:
                return (args[0], options, *args[2:]), kwargs
            return args, {**kwargs, "options": options}

        def request(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            options = split(args, kwargs)
            options, metadata = _take_metadata(options)
            args, kwargs = rebuilt(args, kwargs, options)
            if not _costly(options):
                return wrapped(*args, **kwargs)
            provider, model = call_of(instance, options)
            return checked(provider, model, metadata, lambda: wrapped(*args, **kwargs))

        async def arequest(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            options = split(args, kwargs)
            options, metadata = _take_metadata(options)
            args, kwargs = rebuilt(args, kwargs, options)
            if not _costly(options):
                return await wrapped(*args, **kwargs)
            provider, model = call_of(instance, options)
            return await achecked(provider, model, metadata, lambda: wrapped(*args, **kwargs))

        self.wrap(base.SyncAPIClient, "request", request)
        self.wrap(base.AsyncAPIClient, "request", arequest)
        for module_name, classes, methods in _PUBLIC_METHODS:
            try:
                resource = importlib.import_module(module_name)
            except ImportError:
                continue
            for class_name in classes:
                owner = getattr(resource, class_name, None)
                if owner is None:
                    continue
                for method in methods:
                    if method in owner.__dict__:
                        self.wrap(owner, method, _accept_usage_metadata)


INSTRUMENTOR = OpenAIInstrumentor()
