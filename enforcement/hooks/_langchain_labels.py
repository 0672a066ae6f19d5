"""How a LangChain run is labelled: the provider and model the reference checks it under.

A run announces its vendor as ``ls_provider`` (or not at all, in older
integrations), and the reference checks it under a label of its own; a chat
model on the openai SDK is checked by the reference's openai hook instead,
under the label of the client it builds. This module reads a run's start
event into that label, its model and its ``usage_metadata``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from .._metadata import merge_metadata
from .._providers import (
    ANTHROPIC,
    AWS,
    AZURE,
    COHERE,
    GOOGLE,
    HUGGINGFACE,
    LITELLM,
    MISTRAL,
    OLLAMA,
    OPENAI,
    PERPLEXITY,
    XAI,
)
from .openai import url_label

__all__ = ["PROVIDER_LABELS", "run_facts"]

logger = logging.getLogger("enforcement.hooks")

#: LangChain's provider key (a run's ``ls_provider``) -> the label the reference's
#: callback checks the run under; any other key, or none, is ``OPENAI``.
PROVIDER_LABELS: Mapping[str, str] = {
    "openai": OPENAI,
    "azure": AZURE,
    "anthropic": ANTHROPIC,
    "ollama": OLLAMA,
    "google_genai": GOOGLE,
    "google_vertexai": GOOGLE,
    "amazon_bedrock": AWS,
    "anthropic-bedrock": AWS,
    "cohere": COHERE,
    "huggingface": HUGGINGFACE,
    "mistral": MISTRAL,
    "litellm": LITELLM,
    "perplexity": PERPLEXITY,
    "anthropicvertex": ANTHROPIC,
}
# Chat models built on the openai SDK's chat completions (ChatOpenAI, AzureChatOpenAI,
# ChatXAI, ChatDeepSeek...). The reference's openai hook is always installed beside its
# callback and checks these itself, under the label of the client the model builds.
_OPENAI_CHAT_KEYS = frozenset(
    {"openai", "azure", "xai", "deepseek", "together", "cerebras", "upstage", "openai-mantle"}
)
# A run with no ``ls_provider``: the first of these in its ``_type`` or class name
# ("azure" before "openai": AzureChatOpenAI holds both).
_PROVIDER_MARKERS = ("azure", "anthropic", "ollama", "openai")
# Where a serialized model keeps the base URL of the client it builds.
_BASE_URL_KEYS = ("openai_api_base", "base_url", "xai_api_base")
_MODEL_KEYS = ("model", "model_name")


def _text(mapping: Mapping[str, Any], keys: Iterable[str]) -> Optional[str]:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _provider_key(serialized: Any, params: Mapping[str, Any], metadata: Mapping[str, Any]) -> Any:
    """LangChain's name for the run's vendor: its ``ls_provider``, else a marker in its type."""
    announced = metadata.get("ls_provider")
    if announced:
        return str(announced).lower()
    ids = serialized.get("id") if isinstance(serialized, Mapping) else None
    class_name = ids[-1] if isinstance(ids, list) and ids else ""
    for hint in (params.get("_type"), class_name):
        hint = str(hint or "").lower()
        for marker in _PROVIDER_MARKERS:
            if marker in hint:
                return marker
    return None


def _base_url(serialized: Any) -> str:
    fields = serialized.get("kwargs") if isinstance(serialized, Mapping) else None
    if not isinstance(fields, Mapping):
        return ""
    for key in _BASE_URL_KEYS:
        if fields.get(key):
            return str(fields[key])
    return ""


def _provider(
    serialized: Any, params: Mapping[str, Any], metadata: Mapping[str, Any], chat: bool
) -> str:
    """The label the reference checks the run under.

    A chat model on the openai SDK is checked by the reference's openai hook,
    under its client's label: ``PERPLEXITY`` for a base URL naming perplexity,
    ``Azure`` for AzureChatOpenAI, else the base URL's label (``XAI`` for
    ChatXAI's default). Every other run is checked by the reference's
    callback, under :data:`PROVIDER_LABELS` (``PERPLEXITY`` for an ``openai``
    model whose base URL names perplexity).
    """
    key = _provider_key(serialized, params, metadata)
    base_url = _base_url(serialized)
    calls_perplexity = "perplexity" in base_url.lower()
    if chat and key in _OPENAI_CHAT_KEYS and metadata.get("ls_model_type") != "llm":
        if calls_perplexity:
            return PERPLEXITY
        if key == "azure":
            return AZURE
        if base_url:
            return url_label(base_url)
        return XAI if key == "xai" else OPENAI
    if key == "openai" and calls_perplexity:
        return PERPLEXITY
    return PROVIDER_LABELS.get(key, OPENAI) if isinstance(key, str) else OPENAI


def run_facts(
    serialized: Any,
    metadata: Any,
    params: Any,
    own: Optional[Mapping[str, Any]],
    chat: bool = True,
) -> tuple[Optional[str], Optional[str], Optional[Mapping[str, Any]]]:
    """The run's provider label, model and ``usage_metadata``; never raises.

    The model is the run's ``invocation_params`` ``model`` (else ``model_name``),
    as the reference reads it; ``chat`` says the run is a chat model's.
    """
    try:
        metadata = metadata if isinstance(metadata, Mapping) else {}
        params = params if isinstance(params, Mapping) else {}
        provider = _provider(serialized, params, metadata, chat)
        model = _text(params, _MODEL_KEYS)
        call = merge_metadata(own, metadata.get("usage_metadata"), params.get("usage_metadata"))
        return provider, model, call or None
    except Exception:
        logger.debug("Could not read a LangChain run's model", exc_info=True)
        return None, None, own
