"""The LiteLLM proxy guardrail: the check in front of every proxied call, refused as HTTP 429.

On the proxy, the hooks on LiteLLM's entry points would check a request
without knowing its caller; the guardrail checks it once, before the proxy
routes it, as the caller its virtual key and ``x-revenium-*`` headers name,
and answers a refusal with the reference guardrail's 429 body. Once a
guardrail exists, the instrumentor leaves the proxy's own calls to it.

The class subclasses LiteLLM's ``CustomGuardrail``, so it is built on first
use (:func:`guardrail_class`), by ``enforcement.hooks.litellm``, where users
name it.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

from .._engine import Engine
from .._errors import BudgetExceededError
from .._metadata import current_metadata, merge_metadata
from .._providers import LITELLM
from ._base import hooked_engine
from ._litellm_models import deployment_model
from ._relay import pop_usage_metadata

if TYPE_CHECKING:
    from .litellm import LiteLLMInstrumentor

__all__ = ["guardrail_class"]

logger = logging.getLogger("enforcement.hooks.litellm")

_GUARDRAIL_NAME = "revenium-enforcement"
_ORGANIZATION_HEADERS = ("x-revenium-organization-name", "x-revenium-organization-id")
_PRODUCT_HEADERS = ("x-revenium-product-name", "x-revenium-product-id")


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


def guardrail_class(instrumentor: LiteLLMInstrumentor) -> type:
    """The guardrail class, telling ``instrumentor`` when one is built (it then steps aside)."""
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
            instrumentor.proxy_guardrail_built = True

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
                model = deployment_model(_proxy_router(), requested)
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
    EnforcementGuardrail.__module__ = "enforcement.hooks.litellm"  # where users name it
    return EnforcementGuardrail
