"""The request-funnel hook shared by the SDKs Stainless generates (openai, anthropic).

Both SDKs send every request through ``SyncAPIClient.request`` /
``AsyncAPIClient.request(cast_to, options, ...)``, where ``options`` carries
the method, path and JSON body. One hook there sees every costly call,
including the ones a stream manager sends later, on ``__enter__``; the
provider module only says which requests cost money and for which models.

The public methods are wrapped only to accept the reference SDK's
``usage_metadata=`` keyword; the kit's relay carries it to the funnel in a
context variable, for the call and for a stream manager's ``__enter__``, and
nothing is stored past the call.

The funnel also reads what a call uses (:class:`StainlessMeter`): the
estimate from the JSON body, the usage from the parsed response or from the
events of the ``Stream`` the funnel returns, by their shape, so one reader
serves chat completions, the Responses API, embeddings and Anthropic's
messages. The ``.stream()`` helpers iterate that same ``Stream``. A chat
completion streamed without ``stream_options={"include_usage": True}``
reports no usage: its output is estimated from the streamed text rather
than the request changed (an OpenAI-compatible server may refuse
``stream_options``, and a guard must not break the call it guards).
"""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Callable, Generic, Optional, TypeVar

from .._usage import Estimate, Usage
from ._base import Call
from ._estimate import CHARS_PER_TOKEN, estimate_from
from ._instrumentor import Instrumentor
from ._streams import Meter, Tally, count, field

__all__ = [
    "EventTally",
    "PerClient",
    "PublicMethods",
    "StainlessInstrumentor",
    "usage_of",
]

#: (module, classes, methods): public methods that accept ``usage_metadata=``.
PublicMethods = tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]
_V = TypeVar("_V")


def _options_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``request(cast_to, options, ...)``'s options: the method, path and JSON body."""
    return args[1] if len(args) > 1 else kwargs.get("options")


class PerClient(Generic[_V]):
    """A value worked out per client, kept while it lives and its base URL is the same object.

    Keyed by ``id`` and checked against a weak reference, so a lookup builds
    nothing (a ``WeakKeyDictionary`` makes a weak reference at each one, and
    this runs on every request); an entry goes with its client. ``make``
    works a value out; one ``keep`` refuses, or for a client that cannot be
    weakly referenced, is worked out again at each lookup.
    """

    def __init__(
        self,
        make: Callable[[Any], _V],
        keep: Callable[[_V], bool] = lambda value: True,
        url_attribute: str = "_base_url",
    ) -> None:
        self._make, self._keep, self._url_attribute = make, keep, url_attribute
        self._known: dict[int, tuple[weakref.ref[Any], Any, _V]] = {}

    def of(self, client: Any) -> _V:
        base_url = getattr(client, self._url_attribute, None)
        known = self._known.get(id(client))
        if known is not None and known[1] is base_url and known[0]() is client:
            return known[2]
        value = self._make(client)
        if self._keep(value):
            self._put(client, base_url, value)
        return value

    def _put(self, client: Any, base_url: Any, value: _V) -> None:
        key = id(client)
        try:
            ref = weakref.ref(client, lambda dead: self._forget(key, dead))
        except TypeError:
            return
        self._known[key] = (ref, base_url, value)

    def _forget(self, key: int, dead: weakref.ref[Any]) -> None:
        known = self._known.get(key)
        if known is not None and known[0] is dead:
            del self._known[key]


# Request fields that make up the prompt, and those that cap the output.
_PROMPT_KEYS = ("system", "instructions", "messages", "input", "prompt", "tools")
_LIMIT_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens", "max_tokens_to_sample")
_STREAMS = frozenset({"Stream", "AsyncStream"})
# Responses API events that carry the finished response, usage included.
_FINISHED = frozenset({"response.completed", "response.incomplete", "response.failed"})


# OpenAI's two spellings, each told by its marker field: chat and embeddings; the Responses
# API (whose ``input_tokens`` Anthropic shares, so its details tell them apart).
_OPENAI_SPELLINGS = (
    ("prompt_tokens", "prompt_tokens", "completion_tokens", "prompt_tokens_details"),
    ("input_tokens_details", "input_tokens", "output_tokens", "input_tokens_details"),
)


def usage_of(usage: Any, model: Any) -> Optional[Usage]:
    """A Stainless SDK's ``usage`` object as :class:`Usage`, by its shape; None when absent.

    OpenAI's chat and embeddings say ``prompt_tokens``, its Responses API
    ``input_tokens`` with ``input_tokens_details``; Anthropic's ``input_tokens``
    leaves out the cached tokens it reports beside them.
    """
    if usage is None:
        return None
    named = model if isinstance(model, str) else None
    for marker, prompt, output, details in _OPENAI_SPELLINGS:
        if field(usage, marker) is not None:
            return Usage(
                count(field(usage, prompt)),
                count(field(usage, output)),
                cache_read_tokens=count(field(usage, details, "cached_tokens")),
                model=named,
            )
    read = count(field(usage, "cache_read_input_tokens"))
    written = count(field(usage, "cache_creation_input_tokens"))
    return Usage(
        count(field(usage, "input_tokens")) + read + written,
        count(field(usage, "output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=written,
        model=named,
    )


class EventTally:
    """A Stainless stream's usage: the last usage an event reports, else the streamed text.

    Anthropic reports the input on ``message_start`` and the running output on
    each ``message_delta``; OpenAI's chat on a final chunk (when asked), its
    Responses API on ``response.completed``.
    """

    def __init__(self, estimate: Callable[[], Estimate]) -> None:
        self._estimate = estimate
        self._usage: Optional[Usage] = None
        self._model: Optional[str] = None
        self._chars = 0

    def add(self, event: Any) -> None:
        kind = field(event, "type")
        if kind == "message_start":
            message = field(event, "message")
            self._usage = usage_of(field(message, "usage"), field(message, "model"))
        elif kind == "message_delta":
            self._delta(field(event, "usage"))
        elif kind in _FINISHED:
            response = field(event, "response")
            self._usage = usage_of(field(response, "usage"), field(response, "model"))
        elif field(event, "choices") is not None:
            self._chunk(event)

    def _delta(self, usage: Any) -> None:
        if self._usage is None or usage is None:
            return
        self._usage = self._usage._replace(output_tokens=count(field(usage, "output_tokens")))

    def _chunk(self, chunk: Any) -> None:
        model = field(chunk, "model")
        self._model = model if isinstance(model, str) else self._model
        reported = usage_of(field(chunk, "usage"), model)
        if reported is not None:
            self._usage = reported
        for choice in field(chunk, "choices") or ():
            delta = field(choice, "delta")
            text = field(delta, "content")
            self._chars += len(text) if isinstance(text, str) else 0
            for tool_call in field(delta, "tool_calls") or ():
                arguments = field(tool_call, "function", "arguments")
                self._chars += len(arguments) if isinstance(arguments, str) else 0

    def usage(self) -> Optional[Usage]:
        if self._usage is not None:
            return self._usage
        if self._model is None:
            return None  # no chunk read: nothing to go by
        output = -(-self._chars // CHARS_PER_TOKEN)
        return Usage(self._estimate().input_tokens, output, model=self._model)


class StainlessMeter(Meter):
    """Reads the funnel's request body and the response (or stream) it returns."""

    def estimate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Estimate:
        return estimate_from(
            getattr(_options_of(args, kwargs), "json_data", None), _PROMPT_KEYS, _LIMIT_KEYS
        )

    def usage(self, result: Any) -> Optional[Usage]:
        return usage_of(getattr(result, "usage", None), getattr(result, "model", None))

    def tally(self, result: Any, estimate: Callable[[], Estimate]) -> Optional[Tally]:
        if not any(kind.__name__ in _STREAMS for kind in type(result).__mro__):
            return None
        return EventTally(estimate)


_METER = StainlessMeter()


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

    def describe(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The funnel call ``request(cast_to, options, ...)`` as :meth:`judge` tells it."""
        judged = self.judge(instance, _options_of(args, kwargs))
        if judged is None:
            return None
        provider, models = judged
        return Call(provider, models[-1], tuple(models[:-1])) if models else Call(provider)

    def patch(self, module: ModuleType) -> None:
        base = importlib.import_module(f"{self.module}._base_client")
        # ``leaf``: the funnel hands the request to httpx, where no hook runs.
        for client in (base.SyncAPIClient, base.AsyncAPIClient):
            self.hook(client, "request", self.describe, required=True, meter=_METER, leaf=True)
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
                        self.relay(owner, method)
