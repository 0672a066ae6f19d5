"""Vertex AI SDK (``google-cloud-aiplatform``, import ``vertexai``) hooks: Gemini on Vertex.

Every generation request of ``vertexai.generative_models`` (and of its
``vertexai.preview`` twin, whose classes derive from the same private ones) is
sent by one of four methods of ``_GenerativeModel`` in
``vertexai.generative_models._generative_models``: ``_generate_content``,
``_generate_content_async``, ``_generate_content_streaming`` and
``_generate_content_streaming_async``. The public ``generate_content`` and
``generate_content_async`` end there, and so does every ``ChatSession``
round (``send_message`` and ``send_message_async``, streamed or not, and each
request an automatic function-calling responder makes, every one checked), so
the check sits on those four. They sit above the transport, so gRPC (the
default) and REST are checked alike, before a client or channel is made.

Streams are checked when the user calls or awaits, before anything is sent.
``_generate_content_streaming`` is a generator function, so its hook runs
when ``generate_content(stream=True)`` is called, and the request goes out
on the first ``next``. A chat's sync stream, though, is a generator too
(``ChatSession._send_message_streaming``) that reaches the model's only when
first iterated, so that method is checked as well, at the call, and its
iteration runs as already checked. The async streaming methods are
coroutines that open the stream before returning it: their check is awaited
first.

The public methods are keyword-checked by the SDK, so they are wrapped only
to accept the reference SDK's ``usage_metadata=`` and hand it to the funnel.
``count_tokens`` and ``compute_tokens`` (and their async forms) are free and
not checked; ``start_chat`` sends nothing. The reference also checks
``TextEmbeddingModel.get_embeddings`` and Imagen's ``ImageGenerationModel``
(``vertexai.language_models``, ``vertexai.vision_models``); those are not
hooked here yet.

The provider is ``Google``, as the reference labels every Vertex AI SDK call.
The model is the model object's ``_model_name`` with Google's resource-path
prefix taken off as the reference takes it (see :func:`model_name`): the SDK
stores ``gemini-1.5-pro`` as ``publishers/google/models/gemini-1.5-pro``,
which is checked as ``gemini-1.5-pro``.

What a call costs is read by :class:`VertexMeter`: the estimate from the
contents, the system instruction and ``max_output_tokens`` (the call's
``generation_config``, else the model's), the usage from the response's
``usage_metadata`` (for a stream, the last chunk that carries one: Gemini
reports running totals).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Callable, Optional

from .._providers import GOOGLE
from .._usage import Estimate, Usage
from ._base import Call, Describe, Wrapper, checked, read_call
from ._estimate import output_limit, prompt_tokens
from ._instrumentor import Instrumentor
from ._reentry import already_checked
from ._relay import carry, pop_usage_metadata
from ._streams import Meter, count, field

__all__ = [
    "INSTRUMENTOR",
    "VertexAIInstrumentor",
    "VertexMeter",
    "describe",
    "describe_chat",
    "estimate",
    "model_name",
    "usage_of",
]

#: the module that defines the classes every public name derives from.
_IMPLEMENTATION = "vertexai.generative_models._generative_models"

#: ``_GenerativeModel``'s senders that run when called (or awaited): the kit's hook as it is.
_FUNNELS = ("_generate_content", "_generate_content_async", "_generate_content_streaming_async")
#: the sync stream's sender: a generator function, so its request waits for the first ``next``.
_STREAM_FUNNEL = "_generate_content_streaming"
#: the chat's own sync stream, which reaches the model's only when iterated.
_CHAT_STREAM = "_send_message_streaming"

# Public methods that accept ``usage_metadata=``, by the class that defines them.
_MODEL_METHODS = ("generate_content", "generate_content_async")
_CHAT_METHODS = ("send_message", "send_message_async")

#: Prefixes the reference takes off a model name, the first that matches only.
#: A full resource name loses just ``projects/``: ``projects/p/locations/l/endpoints/1``
#: is checked as ``p/locations/l/endpoints/1``, as the reference checks it.
_PATH_PREFIXES = ("publishers/google/models/", "models/", "google/models/", "projects/")


def model_name(model: Any) -> Optional[str]:
    """The model a ``GenerativeModel`` calls, as the reference names it to a rule.

    >>> class Model:
    ...     _model_name = "publishers/google/models/gemini-1.5-pro"
    >>> model_name(Model())
    'gemini-1.5-pro'
    """
    name = getattr(model, "_model_name", None)
    if not isinstance(name, str) or not name:
        return None
    for prefix in _PATH_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def describe(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Call]:
    """What a ``_GenerativeModel`` sender runs: always its model, never free."""
    return Call(GOOGLE, model_name(instance))


def describe_chat(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Call]:
    """What a ``ChatSession`` sender runs: its model's."""
    return Call(GOOGLE, model_name(getattr(instance, "_model", None)))


def usage_of(response: Any) -> Optional[Usage]:
    """The tokens a ``GenerationResponse`` says its call used; None when it says nothing.

    Thinking tokens are billed as output, so they count as output here.
    """
    usage = field(response, "usage_metadata")
    if usage is None:
        return None
    prompt = count(field(usage, "prompt_token_count"))
    output = count(field(usage, "candidates_token_count")) + count(
        field(usage, "thoughts_token_count")
    )
    if not prompt and not output:
        return None
    version = field(getattr(response, "_raw_response", None), "model_version")
    return Usage(
        prompt,
        output,
        cache_read_tokens=count(field(usage, "cached_content_token_count")),
        model=version if isinstance(version, str) and version else None,
    )


def _prompt(value: Any) -> Any:
    """Contents as plain text and media markers, for :func:`prompt_tokens` to count.

    Read from the SDK objects' fields (``Content.parts``, a part's proto), not
    their ``to_dict()``, which warns under protobuf 5.
    """
    if isinstance(value, (list, tuple)):
        return [_prompt(item) for item in value]
    parts = getattr(value, "parts", None)  # a Content
    if isinstance(parts, (list, tuple)):
        return _prompt(parts)
    raw = getattr(value, "_raw_part", None)  # a Part
    if raw is not None:
        text = getattr(raw, "text", "")
        return text if isinstance(text, str) and text else {"image": 1}
    return value if isinstance(value, (str, Mapping)) else None


def _output_limit(config: Any) -> Any:
    """``max_output_tokens`` of a ``GenerationConfig`` or a dict."""
    if isinstance(config, Mapping):
        return config.get("max_output_tokens")
    return field(config, "_raw_generation_config", "max_output_tokens")


def estimate(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Estimate:
    """A ``_GenerativeModel`` sender's worst case: its prompt and ``max_output_tokens``."""
    contents = args[0] if args else kwargs.get("contents")
    system = getattr(model, "_system_instruction", None)
    prompt = prompt_tokens(_prompt(contents), _prompt(system))
    limits = (kwargs.get("generation_config"), getattr(model, "_generation_config", None))
    return Estimate(prompt, output_limit(*(_output_limit(config) for config in limits)))


class _LastUsage:
    """A stream's tally: the last chunk's usage, Gemini's running total."""

    def __init__(self) -> None:
        self._usage: Optional[Usage] = None

    def add(self, item: Any) -> None:
        self._usage = usage_of(item) or self._usage

    def usage(self) -> Optional[Usage]:
        return self._usage


class VertexMeter(Meter):
    """Reads a Vertex Gemini call's estimate and usage for the post-call path."""

    def estimate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Estimate:
        # A chat's sender runs its model's: the chat object holds it as ``_model``.
        model = getattr(instance, "_model", instance)
        return estimate(model, args, kwargs)

    def usage(self, result: Any) -> Optional[Usage]:
        return usage_of(result)

    def tally(self, result: Any, estimate: Callable[[], Estimate]) -> Optional[_LastUsage]:
        kind = type(result)
        streams = hasattr(kind, "__next__") or hasattr(kind, "__anext__")
        return _LastUsage() if streams else None


_METER = VertexMeter()


def _stream_guard(describer: Describe) -> Wrapper:
    """A generator function's wrapper: the check at the call, the stream read as checked.

    The generator's body (the request, and any sender it reaches) runs only
    when it is iterated, after this call returned; carrying the guard into
    each ``next`` keeps a funnel below from checking the same call again.
    """

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        metadata = pop_usage_metadata(kwargs)
        if already_checked():
            return carry(wrapped(*args, **kwargs), guarded=True)
        call = read_call(describer, GOOGLE, instance, args, kwargs) or Call(GOOGLE)
        stream = checked(
            call.provider,
            call.model,
            metadata,
            lambda: wrapped(*args, **kwargs),
            _METER,
            (instance, args, kwargs),
        )
        return carry(stream, guarded=True)

    return wrapper


class VertexAIInstrumentor(Instrumentor):
    """Checks the Vertex AI SDK's Gemini requests in ``_GenerativeModel``'s senders."""

    name = "vertexai"
    module = "vertexai.generative_models"
    distribution = "google-cloud-aiplatform"
    minimum = (1, 43)
    below = (3,)
    provider = GOOGLE

    def patch(self, module: ModuleType) -> None:
        implementation = importlib.import_module(_IMPLEMENTATION)
        base_model, base_chat = implementation._GenerativeModel, implementation.ChatSession
        for name in _FUNNELS:
            self.hook(base_model, name, describe, required=True, meter=_METER)
        self.wrap(base_model, _STREAM_FUNNEL, _stream_guard(describe), required=True)
        self.wrap(base_chat, _CHAT_STREAM, _stream_guard(describe_chat))
        for owner in vars(implementation).values():
            if isinstance(owner, type) and issubclass(owner, base_model):
                self._patch_model_class(owner)
            elif isinstance(owner, type) and issubclass(owner, base_chat):
                self._relay_own(owner, _CHAT_METHODS)
                if _CHAT_STREAM in vars(owner):
                    self.wrap(owner, _CHAT_STREAM, _stream_guard(describe_chat))

    def _patch_model_class(self, owner: type) -> None:
        """A model class's own public methods relayed, and any sender it overrides hooked.

        Today only ``_GenerativeModel`` defines them, but a subclass's override
        of a sender would otherwise send unchecked.
        """
        self._relay_own(owner, _MODEL_METHODS)
        for name in _FUNNELS:
            if name in vars(owner):
                self.hook(owner, name, describe, meter=_METER)
        if _STREAM_FUNNEL in vars(owner):
            self.wrap(owner, _STREAM_FUNNEL, _stream_guard(describe))

    def _relay_own(self, owner: type, names: tuple[str, ...]) -> None:
        for name in names:
            if name in vars(owner):
                self.relay(owner, name)


INSTRUMENTOR = VertexAIInstrumentor()
