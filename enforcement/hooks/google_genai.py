"""Google Gen AI SDK (``google-genai``) hooks: the Gemini Developer API and Vertex AI.

Every request of the SDK passes through one of four ``BaseApiClient`` methods,
``request``, ``request_streamed``, ``async_request`` and
``async_request_streamed``, with its HTTP method and a path such as
``models/gemini-2.5-flash:generateContent``. A hook there checks every POST to
a path in :data:`COSTLY_PATHS` (content generation, embeddings, images,
videos, batch and tuning jobs; ``countTokens``, files, caches and listings are
free), so chats, batches and methods a new SDK release adds are covered too.

The ``Models`` and ``AsyncModels`` methods that cost money are wrapped as
well, for two reasons. They accept the reference SDK's ``usage_metadata=``
keyword. And ``generate_content_stream`` (a generator, and in ``aio`` a
coroutine returning an async generator) sends its request only when the
caller first iterates, in whatever context the caller iterates in: checking at
the call raises where the caller expects it and judges the call on the
``usage_metadata`` scopes around the call. A public method checks the call once
and holds the guard, so the requests it sends (automatic function calling,
automatic continuation) are not checked again; a stream's requests, sent
later, carry a private header that tells the funnel the call was checked, and
the funnel removes it before the SDK builds the request.

The provider is ``Google`` for both backends, the Gemini Developer API and
Vertex AI mode (``vertexai=True``), as the reference labels them. A public
method is checked on its ``model`` argument as the caller spelled it
(``gemini-2.5-flash``, ``models/gemini-2.5-flash``...), as the reference
checks it. A request only the funnel sees (a batch, a tuning job, a method
this hook does not wrap) names its model in the SDK's resource form, so its
resource prefix is removed (``models/``, ``publishers/google/models/``...).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Callable, Optional

from .._providers import GOOGLE
from ._base import Instrumentor, achecked, checked, pop_usage_metadata

__all__ = ["COSTLY_PATHS", "INSTRUMENTOR", "GoogleGenAIInstrumentor"]

#: POST paths that spend money, as the SDK passes them to its funnel (no
#: version, no ``projects/<p>/locations/<l>/`` prefix unless the model has one).
COSTLY_PATHS = re.compile(
    r"(?P<resource>.+):(?:generateContent|streamGenerateContent|embedContent"
    r"|batchEmbedContents|asyncBatchEmbedContent|batchGenerateContent|predict"
    r"|predictLongRunning|generateImages|generateVideos)"
    r"|(?:projects/[^/]+/locations/[^/]+/)?(?:batchPredictionJobs|tuningJobs|tunedModels)"
)
_RESOURCE_PREFIX = re.compile(r"(?:projects/[^/]+/locations/[^/]+/)?(?:publishers/[^/]+/)?models/")
_HEADER = "x-enforcement-checked"

# Public methods that cost money; the streaming ones send their request when iterated.
_METHODS = (
    "generate_content",
    "embed_content",
    "generate_images",
    "edit_image",
    "upscale_image",
    "recontext_image",
    "segment_image",
    "generate_videos",
)
_STREAMING = ("generate_content_stream",)
_FUNNEL_ARGUMENTS = ("http_method", "path", "request_dict", "http_options")


def model_name(model: Any) -> Optional[str]:
    """A model in the SDK's resource form, bare: ``publishers/google/models/gemini-2.5-flash``
    -> ``gemini-2.5-flash``.

    Tuned models and endpoints keep their resource name.
    """
    if not isinstance(model, str) or not model:
        return None
    prefix = _RESOURCE_PREFIX.match(model)
    if prefix is not None:
        return model[prefix.end() :] or None
    return model


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int) -> Any:
    return args[index] if len(args) > index else kwargs.get(_FUNNEL_ARGUMENTS[index])


def _costly_model(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bool, Optional[str]]:
    """Whether the funnel's request costs money, and its model if the path or body names one."""
    method, path = _argument(args, kwargs, 0), _argument(args, kwargs, 1)
    if not isinstance(method, str) or method.lower() != "post" or not isinstance(path, str):
        return False, None
    match = COSTLY_PATHS.fullmatch(path.split("?", 1)[0].lstrip("/"))
    if match is None:
        return False, None
    if match.group("resource") is not None:
        return True, model_name(match.group("resource"))
    body = _argument(args, kwargs, 2)
    if isinstance(body, Mapping):
        for key in ("model", "baseModel", "base_model"):
            if isinstance(body.get(key), str):
                return True, model_name(body[key])
    return True, None


def _unmarked(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], bool]:
    """The funnel's arguments without our private header, and whether it was there."""
    options = _argument(args, kwargs, 3)
    if isinstance(options, Mapping):
        headers = options.get("headers")
    else:
        headers = getattr(options, "headers", None)
    if not isinstance(headers, Mapping) or _HEADER not in headers:
        return args, kwargs, False
    kept = {k: v for k, v in headers.items() if k != _HEADER}
    cleaned: Any
    try:
        if isinstance(options, Mapping):
            rest = {k: v for k, v in options.items() if k != "headers"}
            cleaned = {**rest, "headers": kept} if kept or rest else None
        else:
            fields = set(getattr(options, "model_fields_set", ()))
            only_ours = not kept and fields <= {"headers"}
            cleaned = None if only_ours else options.model_copy(update={"headers": kept})
    except Exception:  # not options we marked; send them as they are
        return args, kwargs, True
    if len(args) > 3:
        return (*args[:3], cleaned, *args[4:]), kwargs, True
    return args, {**kwargs, "http_options": cleaned}, True


def _marked_http_options(options: Any, types: Any) -> Any:
    if options is None:
        return types.HttpOptions(headers={_HEADER: "1"})
    if isinstance(options, types.HttpOptions):
        return options.model_copy(update={"headers": {**(options.headers or {}), _HEADER: "1"}})
    if isinstance(options, Mapping):
        return {**options, "headers": {**(options.get("headers") or {}), _HEADER: "1"}}
    raise TypeError(type(options).__name__)


def _marked(kwargs: dict[str, Any], types: Any) -> dict[str, Any]:
    """``kwargs`` with a copy of ``config`` whose requests tell the funnel they are checked.

    The caller's config is never changed. A config this cannot read is passed
    as it is; its requests are then checked again when they are sent.
    """
    config = kwargs.get("config")
    try:
        if config is None:
            marked: Any = {"http_options": _marked_http_options(None, types)}
        elif isinstance(config, Mapping):
            options = _marked_http_options(config.get("http_options"), types)
            marked = {**config, "http_options": options}
        elif isinstance(config, types.GenerateContentConfig):
            options = _marked_http_options(config.http_options, types)
            marked = config.model_copy(update={"http_options": options})
        else:
            return kwargs
    except Exception:
        return kwargs
    return {**kwargs, "config": marked}


def _call_of(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
    """The provider and model of a public ``Models`` call, the model as given; never raises."""
    return GOOGLE, args[0] if args else kwargs.get("model")


class GoogleGenAIInstrumentor(Instrumentor):
    """Checks the ``google-genai`` SDK's costly requests, in its funnel and its public methods."""

    name = "google-genai"
    module = "google.genai"
    distribution = "google-genai"
    minimum = (1, 0)
    below = (4,)

    def patch(self, module: ModuleType) -> None:
        api_client = importlib.import_module("google.genai._api_client")
        models = importlib.import_module("google.genai.models")
        types = importlib.import_module("google.genai.types")

        def request(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            args, kwargs, already = _unmarked(args, kwargs)
            costly, model = _costly_model(args, kwargs)
            if already or not costly:
                return wrapped(*args, **kwargs)
            return checked(GOOGLE, model, None, lambda: wrapped(*args, **kwargs))

        async def arequest(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            args, kwargs, already = _unmarked(args, kwargs)
            costly, model = _costly_model(args, kwargs)
            if already or not costly:
                return await wrapped(*args, **kwargs)
            return await achecked(GOOGLE, model, None, lambda: wrapped(*args, **kwargs))

        def method(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            metadata = pop_usage_metadata(kwargs)
            provider, model = _call_of(instance, args, kwargs)
            return checked(provider, model, metadata, lambda: wrapped(*args, **kwargs))

        async def amethod(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            metadata = pop_usage_metadata(kwargs)
            provider, model = _call_of(instance, args, kwargs)
            return await achecked(provider, model, metadata, lambda: wrapped(*args, **kwargs))

        def stream(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            metadata = pop_usage_metadata(kwargs)
            provider, model = _call_of(instance, args, kwargs)
            marked = _marked(kwargs, types)
            return checked(provider, model, metadata, lambda: wrapped(*args, **marked))

        async def astream(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            metadata = pop_usage_metadata(kwargs)
            provider, model = _call_of(instance, args, kwargs)
            marked = _marked(kwargs, types)
            return await achecked(provider, model, metadata, lambda: wrapped(*args, **marked))

        funnel = api_client.BaseApiClient
        self.wrap(funnel, "request", request)
        self.wrap(funnel, "request_streamed", request)
        self.wrap(funnel, "async_request", arequest)
        self.wrap(funnel, "async_request_streamed", arequest)
        for owner, plain, streaming in (
            (models.Models, method, stream),
            (models.AsyncModels, amethod, astream),
        ):
            for name in _METHODS:
                if name in owner.__dict__:
                    self.wrap(owner, name, plain)
            for name in _STREAMING:
                if name in owner.__dict__:
                    self.wrap(owner, name, streaming)


INSTRUMENTOR = GoogleGenAIInstrumentor()
