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
automatic continuation) are not checked again; a stream, whose requests are
sent later, carries the guard into its iteration (the kit's ``deferred``), so
the funnel does not check them again either.

What a call used is read from the response's ``usage_metadata`` (each
streamed chunk carries the running count; the last one wins): the prompt with
its tool-use prompt, the candidates with their thinking tokens, the cached
content. The estimate comes from the call's ``contents`` and its config's
system instruction, tools and ``max_output_tokens``.

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
from typing import Any, Optional

from .._providers import GOOGLE
from .._usage import Estimate, Usage
from ._base import Call
from ._estimate import output_limit, prompt_tokens
from ._instrumentor import Instrumentor
from ._streams import GeneratorMeter, count, field

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


def describe_request(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Optional[Call]:
    """What a funnel request costs: its model when the path or body names one; None if free."""
    costly, model = _costly_model(args, kwargs)
    return Call(GOOGLE, model) if costly else None


def describe_method(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Call]:
    """A public ``Models`` call, judged on its ``model`` as the caller spelled it."""
    model = args[0] if args else kwargs.get("model")
    return Call(GOOGLE, model if isinstance(model, str) else None)


def usage_of(response: Any) -> Optional[Usage]:
    """A response's (or chunk's) ``usage_metadata``; None when it has none."""
    usage = field(response, "usage_metadata")
    if usage is None:
        return None
    model = field(response, "model_version")
    return Usage(
        count(field(usage, "prompt_token_count"))
        + count(field(usage, "tool_use_prompt_token_count")),
        count(field(usage, "candidates_token_count")) + count(field(usage, "thoughts_token_count")),
        cache_read_tokens=count(field(usage, "cached_content_token_count")),
        model=model if isinstance(model, str) else None,
    )


class GenAIMeter(GeneratorMeter):
    """Reads a public ``Models`` call's arguments, and the response or chunks it returns."""

    def estimate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Estimate:
        config = kwargs.get("config")
        contents = kwargs.get("contents", args[1] if len(args) > 1 else None)
        system, tools = field(config, "system_instruction"), field(config, "tools")
        limit = output_limit(field(config, "max_output_tokens"))
        return Estimate(prompt_tokens(contents, system, tools), limit)

    read = staticmethod(usage_of)


_METER = GenAIMeter()


class GoogleGenAIInstrumentor(Instrumentor):
    """Checks the ``google-genai`` SDK's costly requests, in its funnel and its public methods."""

    name = "google-genai"
    module = "google.genai"
    distribution = "google-genai"
    minimum = (1, 4)  # the first release with ``_api_client.BaseApiClient``
    below = (4,)
    provider = GOOGLE

    def patch(self, module: ModuleType) -> None:
        api_client = importlib.import_module("google.genai._api_client")
        models = importlib.import_module("google.genai.models")
        funnel = api_client.BaseApiClient
        for name in ("request", "request_streamed", "async_request", "async_request_streamed"):
            self.hook(funnel, name, describe_request, required=True)
        for owner in (models.Models, models.AsyncModels):
            for name in _METHODS:
                if name in owner.__dict__:
                    self.hook(owner, name, describe_method, meter=_METER)
            for name in _STREAMING:
                self.hook(owner, name, describe_method, required=True, deferred=True, meter=_METER)


INSTRUMENTOR = GoogleGenAIInstrumentor()
