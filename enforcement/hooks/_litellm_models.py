"""The model a LiteLLM call is checked under: as LiteLLM routes it, or as a Router deploys it.

An entry point's ``model`` may be positional or keyword (where, its
signature says), and is checked as LiteLLM routes it (``openai/gpt-4o``,
with ``custom_llm_provider=`` folded in). A Router call names a model group,
checked as its deployment's model when the group has exactly one; the proxy
guardrail resolves a proxied request's model the same way.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any, Optional

__all__ = ["deployment_model", "given_model", "model_position", "routed_model"]

logger = logging.getLogger("enforcement.hooks.litellm")


def model_position(function: Any, skip_self: bool, opaque: Optional[int] = None) -> Optional[int]:
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


def given_model(args: tuple[Any, ...], kwargs: Mapping[str, Any], position: Optional[int]) -> Any:
    model = kwargs.get("model")
    if model is None and position is not None and len(args) > position:
        model = args[position]
    return model if isinstance(model, str) else None


def routed_model(model: Optional[str], kwargs: Mapping[str, Any]) -> Optional[str]:
    """The model as LiteLLM routes it: ``custom_llm_provider`` prefixes a bare name."""
    vendor = kwargs.get("custom_llm_provider")
    if model is None or not isinstance(vendor, str) or not vendor:
        return model
    if model.lower().startswith(vendor.lower() + "/"):
        return model
    return f"{vendor}/{model}"


def deployment_model(router: Any, name: Optional[str]) -> Optional[str]:
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
            model = routed_model(params.get("model"), params)
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
