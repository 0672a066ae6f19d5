"""LiteLLM hooks: the check at LiteLLM's entry points, and a guardrail for its proxy.

LiteLLM has no single funnel: each provider has its own handler (the openai
SDK, its own httpx handlers, a native Rust path), so the hooks sit on the
public entry points every call starts from. They are the module attributes
users call, ``litellm.completion``, ``litellm.acompletion`` and the rest of
:data:`ENTRY_POINTS`, and the :class:`litellm.Router` methods in
:data:`ROUTER_METHODS`. The Router looks ``litellm.acompletion`` and friends up
on the module at call time, so it reaches the hooks too; code that did
``from litellm import completion`` before ``instrument()`` keeps the original
(``import enforcement.auto`` first avoids that, as it patches on import).

Where a Router method lives depends on the release. In older releases (1.53
to 1.106 at least) it is a function in ``Router``'s own namespace. In 1.110
``Router`` is a facade over its Rust core: the methods are functions of the
core's class (``litellm.router_rust.core.RustCore``), which the facade's
metaclass hands out for ``Router.completion`` and a router instance forwards
to for ``router.completion``. Each method is wrapped in the namespace that defines
it, found by the function itself (see :func:`_defining_class`), and restored
there by identity; a Router funnel that cannot be found is reported in
``status()`` rather than skipped.

One user call is checked once, by the outermost hook: a Router call is
checked on entry, before its retries and fallbacks (which would otherwise
retry a refused call and wrap its refusal in their own message), and the
``litellm.acompletion`` and openai SDK hooks below it pass through, so a
refusal reaches the caller as the :class:`BudgetExceededError` itself. Every
call is checked under the provider label ``LITELLM`` and the model as LiteLLM
routes it (``openai/gpt-4o``); a Router call's model group is resolved to its
deployment's model when the group has exactly one.

What a call used is read from LiteLLM's response (``ModelResponse.usage``,
OpenAI-shaped, for every provider it routes to), and from a stream's chunks:
the usage a final chunk carries, else an estimate from the streamed text. The
hook that began a call settles it; the openai SDK hook below passes through.

On the LiteLLM proxy the check belongs to :class:`EnforcementGuardrail`, which
answers a refused request with HTTP 429. Once a guardrail exists in the
process, the hooks leave the proxy's own calls to it, so a proxy that also
runs ``import enforcement.auto`` checks each request once. The guardrail lives
in ``_litellm_guardrail`` and the model resolution in ``_litellm_models``;
both are named here, where users import them. The walk from a call to the
matcher: entry point wrapper -> ``_base.checked`` -> ``Engine.begin`` ->
``Engine.check`` -> ``RuleSet.evaluate``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Optional

from .._providers import LITELLM
from .._usage import Estimate, Usage
from ._base import CHECKED_ELSEWHERE, Call, Describe
from ._estimate import estimate_from, prompt_tokens
from ._instrumentor import Instrumentor
from ._litellm_guardrail import guardrail_class
from ._litellm_models import deployment_model, given_model, model_position, routed_model
from ._stainless import EventTally, usage_of
from ._streams import Meter, Tally

__all__ = [
    "ENTRY_POINTS",
    "INSTRUMENTOR",
    "PROVIDER",
    "ROUTER_METHODS",
    "EnforcementGuardrail",
    "LiteLLMInstrumentor",
    "proxy_guardrail",
]

if TYPE_CHECKING:  # built on first use by the module __getattr__ below
    EnforcementGuardrail: type
    proxy_guardrail: Any


#: the provider label every LiteLLM call is checked under (kept under this name too).
PROVIDER = LITELLM

#: ``litellm.<name>`` entry points that spend money, each with the function whose
#: signature says where its ``model`` goes (``aembedding(*args)`` forwards to
#: ``embedding(model, input)``).
ENTRY_POINTS: tuple[tuple[str, str], ...] = (
    ("completion", "completion"),
    ("acompletion", "acompletion"),
    ("text_completion", "text_completion"),
    ("atext_completion", "text_completion"),
    ("completion_with_retries", "completion"),
    ("acompletion_with_retries", "completion"),
    ("embedding", "embedding"),
    ("aembedding", "embedding"),
    ("image_generation", "image_generation"),
    ("aimage_generation", "image_generation"),
    ("image_edit", "image_edit"),
    ("aimage_edit", "aimage_edit"),
    ("image_variation", "image_variation"),
    ("aimage_variation", "image_variation"),
    ("responses", "responses"),
    ("aresponses", "aresponses"),
    ("anthropic_messages", "anthropic_messages"),
    ("speech", "speech"),
    ("aspeech", "speech"),
    ("transcription", "transcription"),
    ("atranscription", "transcription"),
    ("rerank", "rerank"),
    ("arerank", "arerank"),
    ("video_generation", "video_generation"),
    ("avideo_generation", "avideo_generation"),
    ("ocr", "ocr"),
    ("aocr", "ocr"),
)

#: ``Router`` methods checked on entry, before the Router's retries and fallbacks.
ROUTER_METHODS: tuple[str, ...] = (
    "completion",
    "acompletion",
    "text_completion",
    "atext_completion",
    "embedding",
    "aembedding",
    "image_generation",
    "aimage_generation",
    "aspeech",
    "atranscription",
    "arerank",
)

#: Where ``model`` sits among a Router method's positional arguments when its
#: signature does not say (the Rust core's methods take ``*args``): first, but
#: after the prompt for image generation, as LiteLLM's Router has always had it.
_ROUTER_MODEL_AT: Mapping[str, int] = {"image_generation": 1, "aimage_generation": 1}


# -- where the Router's methods live ------------------------------------------


def _router_class(module: ModuleType) -> Any:
    router = getattr(module, "Router", None)
    if router is None:
        router = getattr(importlib.import_module("litellm.router"), "Router", None)
    return router


def _defining_class(router: type, name: str) -> Optional[type]:
    """The class whose own namespace holds the function a Router call ``name`` runs.

    ``Router`` or a class in its MRO when it defines the method; otherwise the
    class that defines the function ``Router.name`` hands out (in 1.110 the
    metaclass hands out the Rust core's methods, and an instance forwards to
    its core), found by the function's module and qualified name and kept only
    when that class's namespace holds that very function. None when nothing
    defines it, or when what the Router hands out is made up on the fly (an
    endpoint served per instance): that has no namespace to wrap and restore.
    """
    for klass in router.__mro__:
        if name in vars(klass):
            return klass
    try:
        function = getattr(router, name)
    except Exception:  # absent; or a facade that cannot say
        return None
    owner: Any = sys.modules.get(getattr(function, "__module__", None) or "")
    path = (getattr(function, "__qualname__", None) or "").split(".")
    for part in path[:-1]:
        owner = getattr(owner, part, None)
    if path[-1:] != [name] or not isinstance(owner, type):
        return None
    return owner if vars(owner).get(name) is function else None


# -- what a call uses -------------------------------------------------------------

_PROMPT_KEYS = ("system", "messages", "input", "prompt", "tools", "instructions")
_LIMIT_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


class LiteLLMMeter(Meter):
    """Reads an entry point's arguments, and the OpenAI-shaped response or stream it returns."""

    def estimate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Estimate:
        named = estimate_from(kwargs, _PROMPT_KEYS, _LIMIT_KEYS)
        positional = prompt_tokens(args[1:])  # ``completion(model, messages)``: after the model
        return named._replace(input_tokens=named.input_tokens + positional)

    def usage(self, result: Any) -> Optional[Usage]:
        return usage_of(getattr(result, "usage", None), getattr(result, "model", None))

    def tally(self, result: Any, estimate: Callable[[], Estimate]) -> Optional[Tally]:
        if type(result).__name__ != "CustomStreamWrapper":
            return None
        return EventTally(estimate)


_METER = LiteLLMMeter()


# -- the hooks ------------------------------------------------------------------


class LiteLLMInstrumentor(Instrumentor):
    """Checks LiteLLM's entry points and its Router's, each call once."""

    name = "litellm"
    module = "litellm"
    distribution = "litellm"
    # The oldest release the tests run on: 1.15 to 1.52 are not on the index they install from.
    minimum = (1, 53)
    provider = LITELLM
    below = (2,)

    def __init__(self) -> None:
        super().__init__()
        # Set once an EnforcementGuardrail exists: the proxy's calls are then its to check.
        self.proxy_guardrail_built = False
        # ``EnforcementGuardrail`` and ``proxy_guardrail``, built on first use (two names).
        self.lazy: dict[str, Any] = {}

    def _proxy_owns(self, kwargs: Mapping[str, Any]) -> bool:
        return self.proxy_guardrail_built and isinstance(
            kwargs.get("proxy_server_request"), Mapping
        )

    def _describer(self, position: Optional[int], router: bool) -> Describe:
        """How one entry point's calls are read: the model as routed, or the proxy's own."""

        def describe(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
            if self._proxy_owns(kwargs):
                return CHECKED_ELSEWHERE
            model = routed_model(given_model(args, kwargs, position), kwargs)
            return Call(LITELLM, deployment_model(instance, model) if router else model)

        return describe

    def patch(self, module: ModuleType) -> None:
        for name, placed_like in ENTRY_POINTS:
            function = getattr(module, name, None)
            if function is None:
                continue
            position = model_position(getattr(module, placed_like, function), skip_self=False)
            self.hook(module, name, self._describer(position, router=False), meter=_METER)
        router = _router_class(module)
        if router is None:
            self._missing.append("litellm.Router")
            return
        for name in ROUTER_METHODS:
            owner = _defining_class(router, name)
            if owner is None:
                # What the Router hands out has no namespace to patch: report it as missing.
                self._missing.append(f"{router.__module__}.{router.__qualname__}.{name}")
                continue
            method = vars(owner)[name]
            position = model_position(method, skip_self=True, opaque=_ROUTER_MODEL_AT.get(name, 0))
            describe = self._describer(position, router=True)
            self.hook(owner, name, describe, required=True, meter=_METER)


INSTRUMENTOR = LiteLLMInstrumentor()


def __getattr__(name: str) -> Any:
    """``EnforcementGuardrail`` and ``proxy_guardrail``, built on first use.

    Lazy, because subclassing LiteLLM's guardrail imports LiteLLM, which this
    module must not do just to be imported.
    """
    if name not in ("EnforcementGuardrail", "proxy_guardrail"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    lazy = INSTRUMENTOR.lazy
    if "EnforcementGuardrail" not in lazy:
        lazy["EnforcementGuardrail"] = guardrail_class(INSTRUMENTOR)
    if name == "proxy_guardrail" and name not in lazy:
        lazy[name] = lazy["EnforcementGuardrail"]()
    return lazy[name]
