"""Model names as a price table knows them, and how much output a model may write.

A call names its model the way its SDK does: with a route (``openai/gpt-4o``),
a path (``models/gemini-2.0-flash``), a Bedrock id with vendor, region and
version (``us.anthropic.claude-3-5-sonnet-20240620-v1:0``), a dated snapshot
(``gpt-4o-2024-08-06``). :func:`candidate_names` lists the spellings to look
up, most specific first; :func:`output_limit` is the largest output a
request that sets no limit may get, by model family.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Optional

__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "OUTPUT_LIMITS",
    "candidate_names",
    "output_limit",
    "split_route",
]

#: Output limit assumed for a model found in neither the overrides nor
#: :data:`OUTPUT_LIMITS`: the common ceiling of the 2024 chat models. A larger
#: figure would refuse calls up front near a cap that they would fit under.
DEFAULT_OUTPUT_LIMIT = 8_192
#: The largest output a request may get when it sets no ``max_tokens``, per
#: model family (the providers' documented limits; genai-prices has none).
#: Matched by the longest prefix of the model name without its vendor,
#: region and route prefixes.
OUTPUT_LIMITS: Mapping[str, int] = {
    "gpt-3.5-turbo": 4_096,
    "gpt-4": 8_192,
    "gpt-4-turbo": 4_096,
    "gpt-4o": 16_384,
    "gpt-4o-mini": 16_384,
    "chatgpt-4o": 16_384,
    "gpt-4.1": 32_768,
    "gpt-5": 128_000,
    "o1": 100_000,
    "o1-mini": 65_536,
    "o3": 100_000,
    "o4-mini": 100_000,
    "text-embedding": 0,
    "claude-3-haiku": 4_096,
    "claude-3-opus": 4_096,
    "claude-3-sonnet": 4_096,
    "claude-3-5-haiku": 8_192,
    "claude-3-5-sonnet": 8_192,
    "claude-3-7-sonnet": 64_000,
    "claude-sonnet-4": 64_000,
    "claude-haiku-4": 64_000,
    "claude-opus-4": 32_000,
    "claude-opus-4-5": 64_000,
    "gemini-1.5": 8_192,
    "gemini-2.0": 8_192,
    "gemini-2.5": 65_536,
    "gemini-3": 65_536,
}
_FAMILIES = tuple(sorted(OUTPUT_LIMITS.items(), key=lambda item: -len(item[0])))

#: Our provider labels (``_providers``) as genai-prices names them. ``None``:
#: the label says nothing about price, let the model name decide. Missing
#: (OLLAMA, fal): self-hosted or not per token; only an override prices it.
_ROUTES: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "bedrock": "aws",
    "vertex_ai": "google",
    "gemini": "google",
    "google": "google",
    "xai": "x-ai",
    "perplexity": "perplexity",
    "mistral": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
}
#: Leading dotted segments of Bedrock ids: regions and vendors.
_BEDROCK_PREFIXES = frozenset(
    {"us", "eu", "apac", "global", "regional", "us-gov", "jp", "au"}
    | {"anthropic", "amazon", "meta", "mistral", "cohere", "ai21", "deepseek", "openai", "qwen"}
)
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")


def _strip_bedrock(name: str) -> str:
    head, dot, rest = name.partition(".")
    while dot and head in _BEDROCK_PREFIXES:
        name = rest
        head, dot, rest = name.partition(".")
    return _BEDROCK_VERSION.sub("", name)


def split_route(name: str) -> tuple[Optional[str], str]:
    """``models/x`` and ``publishers/p/models/x`` are paths; ``openai/x`` is a route."""
    if "/models/" in name:
        name = name.rsplit("/models/", 1)[1]
    elif name.startswith("models/"):
        name = name[len("models/") :]
    head, slash, rest = name.partition("/")
    if slash and head in _ROUTES:
        return _ROUTES[head], rest
    return None, name


def candidate_names(model: str) -> list[str]:
    """Spellings to try, most exact first: as given, unrouted, bare Bedrock id, undated."""
    raw = model.strip().lower()
    _, bare = split_route(raw)
    names = [raw, bare, _strip_bedrock(bare)]
    names.append(_DATE_SUFFIX.sub("", names[-1]))
    return list(dict.fromkeys(name for name in names if name))


def output_limit(model: str) -> int:
    name = candidate_names(model)[-1]
    for family, limit in _FAMILIES:
        if name.startswith(family):
            return limit
    return DEFAULT_OUTPUT_LIMIT
