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
runs ``import enforcement.auto`` checks each request once.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Optional

from .._engine import Engine
from .._errors import BudgetExceededError
from .._metadata import current_metadata, merge_metadata
from .._providers import LITELLM
from .._usage import Estimate, Usage
from ._base import (
    CHECKED_ELSEWHERE,
    Call,
    Describe,
    Instrumentor,
    hooked_engine,
    pop_usage_metadata,
)
from ._estimate import estimate_from, prompt_tokens
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

logger = logging.getLogger("enforcement.hooks.litellm")


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

_GUARDRAIL_NAME = "revenium-enforcement"
_ORGANIZATION_HEADERS = ("x-revenium-organization-name", "x-revenium-organization-id")
_PRODUCT_HEADERS = ("x-revenium-product-name", "x-revenium-product-id")


# -- the model a call is checked under ------------------------------------------


def _model_position(function: Any, skip_self: bool, opaque: Optional[int] = None) -> Optional[int]:
    """Where ``model`` sits among the positional arguments; None when keyword-only.

    ``opaque`` is the answer for a signature that takes ``*args`` before any
    ``model`` (it cannot say where the model goes).
    """
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return opaque
    if skip_self and parameters and parameters[0].name == "self":
        parameters = parameters[1:]
    for index, parameter in enumerate(parameters):
        if parameter.kind is parameter.VAR_POSITIONAL:
            return opaque
        if parameter.kind is parameter.KEYWORD_ONLY:
            return None
        if parameter.name == "model":
            return index
    return None


def _given_model(args: tuple[Any, ...], kwargs: Mapping[str, Any], position: Optional[int]) -> Any:
    model = kwargs.get("model")
    if model is None and position is not None and len(args) > position:
        model = args[position]
    return model if isinstance(model, str) else None


def _routed(model: Optional[str], kwargs: Mapping[str, Any]) -> Optional[str]:
    """The model as LiteLLM routes it: ``custom_llm_provider`` prefixes a bare name."""
    vendor = kwargs.get("custom_llm_provider")
    if model is None or not isinstance(vendor, str) or not vendor:
        return model
    if model.lower().startswith(vendor.lower() + "/"):
        return model
    return f"{vendor}/{model}"


def _deployment_model(router: Any, name: Optional[str]) -> Optional[str]:
    """The one model a Router's group serves; the name as given when that is unclear.

    A group of several models is checked under its name: which deployment
    serves the call is decided later, by the Router's load balancing.
    """
    if name is None or router is None:
        return name
    try:
        served = set()
        for deployment in _deployments(router, name) or ():
            params = deployment.get("litellm_params") or {}
            model = _routed(params.get("model"), params)
            if not isinstance(model, str) or not model or "*" in model:
                return name
            served.add(model)
        return served.pop() if len(served) == 1 else name
    except Exception:
        logger.debug("Could not resolve the Router model %r", name, exc_info=True)
        return name


def _deployments(router: Any, name: str) -> Any:
    """A Router's deployments for a model group, by the API its release has.

    In 1.110 that is ``registry().deployments(name)`` (``get_model_list``
    still answers there, but is deprecated and warns); before, ``get_model_list``.
    The hooks get the Router's core rather than the Router in 1.110: it has
    the same ``registry()``.
    """
    registry = getattr(router, "registry", None)
    if callable(registry):
        return registry().deployments(name)
    return router.get_model_list(model_name=name)


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
            model = _routed(_given_model(args, kwargs, position), kwargs)
            return Call(LITELLM, _deployment_model(instance, model) if router else model)

        return describe

    def patch(self, module: ModuleType) -> None:
        for name, placed_like in ENTRY_POINTS:
            function = getattr(module, name, None)
            if function is None:
                continue
            position = _model_position(getattr(module, placed_like, function), skip_self=False)
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
            position = _model_position(method, skip_self=True, opaque=_ROUTER_MODEL_AT.get(name, 0))
            describe = self._describer(position, router=True)
            self.hook(owner, name, describe, required=True, meter=_METER)


INSTRUMENTOR = LiteLLMInstrumentor()


# -- the proxy guardrail ----------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> Optional[str]:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _request_headers(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The inbound headers, from whichever place this proxy route put them.

    ``proxy_server_request`` before ``metadata``: the proxy writes the former
    itself, while on some routes ``metadata`` is the caller's own body.
    """
    for key in ("litellm_metadata", "proxy_server_request", "metadata"):
        headers = _mapping(_mapping(data.get(key)).get("headers"))
        if headers:
            return {str(k).lower(): v for k, v in headers.items()}
    return {}


def _first_header(headers: Mapping[str, Any], names: tuple[str, ...]) -> Optional[str]:
    for name in names:
        value = _text(headers.get(name))
        if value is not None:
            return value
    return None


def _proxy_caller(data: Mapping[str, Any], key: Any) -> dict[str, Any]:
    """The caller as the reference guardrail describes it: key identity, then headers.

    The virtual key gives the organization (its team), the subscriber email
    (its owner) and the credential (its alias); ``x-revenium-*`` headers name
    them per call and win.
    """
    metadata = _mapping(data.get("metadata"))
    headers = _request_headers(data)
    caller: dict[str, Any] = {}
    organization = _first_header(headers, _ORGANIZATION_HEADERS) or _text(
        metadata.get("user_api_key_team_alias") or getattr(key, "team_alias", None)
    )
    if organization is not None:
        caller["organizationName"] = organization
    for field, names in (
        ("productName", _PRODUCT_HEADERS),
        ("taskType", ("x-revenium-task-type",)),
        ("agent", ("x-revenium-agent",)),
    ):
        value = _first_header(headers, names)
        if value is not None:
            caller[field] = value
    subscriber: dict[str, Any] = {}
    subscriber_id = _first_header(headers, ("x-revenium-subscriber-id",))
    email = _first_header(headers, ("x-revenium-subscriber-email",)) or _text(
        metadata.get("user_api_key_user_email") or getattr(key, "user_email", None)
    )
    alias = _text(metadata.get("user_api_key_alias") or getattr(key, "key_alias", None))
    if subscriber_id is not None:
        subscriber["id"] = subscriber_id
    if email is not None:
        subscriber["email"] = email
    if alias is not None:
        subscriber["credential"] = {"name": alias, "value": alias}
    if subscriber:
        caller["subscriber"] = subscriber
    return caller


def _proxy_router() -> Any:
    """The proxy's Router, only if the proxy server is already running here."""
    server = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(server, "llm_router", None) if server is not None else None


def _budget_detail(
    error: BudgetExceededError, model: Any, guardrail: Optional[str] = _GUARDRAIL_NAME
) -> dict[str, Any]:
    """The 429 body's details, in the reference guardrail's shape, so clients read either."""
    return {
        "error": {
            "message": error.message or "Budget exceeded",
            "type": "budget_exceeded",
            "guardrail": guardrail,
            "model": model if isinstance(model, str) else None,
            "budgets": [
                {
                    "name": error.rule_name or "",
                    "ruleId": error.rule_id,
                    "threshold": error.threshold,
                    "currentValue": error.current_value,
                    "resetsAt": error.resets_at,
                }
            ],
        }
    }


def _too_many_requests(error: BudgetExceededError, detail: dict[str, Any]) -> Exception:
    """The exception the proxy turns into HTTP 429 with ``detail`` in the body.

    The proxy's own ``ProxyException`` (importable without fastapi) is sent
    as is, ``code`` as the status; an ``HTTPException`` with a dict detail
    would be converted into the same thing. ``x-should-retry: false`` stops
    the OpenAI and Anthropic SDKs from retrying a refusal that lasts until
    the budget resets.
    """
    headers = {"x-should-retry": "false"}
    try:
        kind: Any = importlib.import_module("litellm.proxy._types").ProxyException
        fields: dict[str, Any] = {
            "message": error.message,
            "type": "budget_exceeded",
            "param": None,
            "code": 429,
            "headers": headers,
        }
        carries_detail = "provider_specific_fields" in inspect.signature(kind).parameters
        if carries_detail:
            fields["provider_specific_fields"] = detail
        refusal: Exception = kind(**fields)
        if not carries_detail:  # an older proxy sends no details; they are on the exception still
            refusal.provider_specific_fields = detail  # type: ignore[attr-defined]
        if not hasattr(refusal, "status_code"):  # what older proxies take the status from
            refusal.status_code = 429  # type: ignore[attr-defined]
        return refusal
    except Exception:
        logger.debug("No ProxyException in this LiteLLM; using HTTPException", exc_info=True)
    try:
        fastapi = importlib.import_module("fastapi")
        return fastapi.HTTPException(  # type: ignore[no-any-return]
            status_code=429, detail=detail, headers=headers
        )
    except ImportError:
        return error


def _guardrail_class() -> type:
    base: Any = importlib.import_module("litellm.integrations.custom_guardrail").CustomGuardrail
    try:
        pre_call: Any = importlib.import_module("litellm.types.guardrails").GuardrailEventHooks
        pre_call = pre_call.pre_call
    except (ImportError, AttributeError):
        pre_call = "pre_call"
    # Older releases (1.55 and before) take no ``default_on``; the attribute is set all the same.
    try:
        takes_default_on = "default_on" in inspect.signature(base.__init__).parameters
    except (TypeError, ValueError):
        takes_default_on = True

    class EnforcementGuardrail(base):  # type: ignore[misc]
        """Budget enforcement for the LiteLLM proxy: a refused request gets HTTP 429.

        Runs before every proxied call (chat, completions, embeddings, images,
        audio, responses, messages), judged under provider ``LITELLM``, the
        model the request names (resolved to its deployment's model when the
        group has one) and the caller: the virtual key's team, owner and
        alias, overridden per call by the ``x-revenium-organization-name``,
        ``-product-name``, ``-task-type``, ``-agent``, ``-subscriber-id`` and
        ``-subscriber-email`` headers, and by a ``usage_metadata`` object in
        the request body (removed before the provider sees it). The 429 body
        is ``{"error": {"message", "type": "budget_exceeded", "code": "429",
        "provider_specific_fields": {"error": {..., "budgets": [{"name",
        "ruleId", "threshold", "currentValue", "resetsAt"}]}}}}``.

        Enable it in the proxy's ``config.yaml``, either as a callback::

            litellm_settings:
              callbacks: ["enforcement.hooks.litellm.proxy_guardrail"]

        or as a guardrail (a top-level key)::

            guardrails:
              - guardrail_name: "revenium-enforcement"
                litellm_params:
                  guardrail: enforcement.hooks.litellm.EnforcementGuardrail
                  mode: "pre_call"
                  default_on: true

        The engine is the default one (configured from ``REVENIUM_*``), or
        ``EnforcementGuardrail(engine=...)``. The check never waits on the
        network and never blocks the event loop.
        """

        def __init__(self, engine: Optional[Engine] = None, **kwargs: Any) -> None:
            kwargs.setdefault("guardrail_name", _GUARDRAIL_NAME)
            if kwargs.get("event_hook") is None:
                kwargs["event_hook"] = pre_call
            default_on = kwargs.pop("default_on", True)
            if takes_default_on:
                kwargs["default_on"] = default_on
            super().__init__(**kwargs)
            if not takes_default_on:
                self.default_on = default_on
            self.engine = engine
            INSTRUMENTOR.proxy_guardrail_built = True

        async def async_pre_call_hook(
            self, user_api_key_dict: Any, cache: Any, data: Any, call_type: Any
        ) -> Any:
            """Raise the proxy's 429 when a tripped rule covers this request; else ``data``."""
            if not isinstance(data, dict):
                return data
            requested = data.get("model")
            try:
                declared = pop_usage_metadata(data)
                caller = merge_metadata(_proxy_caller(data, user_api_key_dict), declared)
                model = _deployment_model(_proxy_router(), requested)
                if model is None and isinstance(requested, str):
                    model = requested
            except Exception:
                logger.debug("Could not read the proxied request", exc_info=True)
                caller, model = {}, requested if isinstance(requested, str) else None
            engine = self.engine or hooked_engine()
            try:
                await engine.acheck(current_metadata(caller), model=model, provider=LITELLM)
            except BudgetExceededError as error:
                name = getattr(self, "guardrail_name", None) or _GUARDRAIL_NAME
                detail = _budget_detail(error, requested, name)
                raise _too_many_requests(error, detail) from error
            return data

    EnforcementGuardrail.__qualname__ = "EnforcementGuardrail"
    return EnforcementGuardrail


def __getattr__(name: str) -> Any:
    """``EnforcementGuardrail`` and ``proxy_guardrail``, built on first use.

    Lazy, because subclassing LiteLLM's guardrail imports LiteLLM, which this
    module must not do just to be imported.
    """
    if name not in ("EnforcementGuardrail", "proxy_guardrail"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    lazy = INSTRUMENTOR.lazy
    if "EnforcementGuardrail" not in lazy:
        lazy["EnforcementGuardrail"] = _guardrail_class()
    if name == "proxy_guardrail" and name not in lazy:
        lazy[name] = lazy["EnforcementGuardrail"]()
    return lazy[name]
