"""Provider hooks: the check in front of every LLM SDK call, behind one ``instrument()``.

Each provider lives in its own module here and declares the SDK versions it
supports. ``instrument()`` patches SDKs already imported and, through import
hooks, those imported later; ``uninstrument()`` puts every original back.

This module keeps no state: each instrumentor owns its patches and the lock
that makes its own ``instrument()`` and ``uninstrument()`` atomic (renewed in
a forked child), and :func:`~enforcement.hooks._base.set_hooked_engine` owns
which engine the hooks ask.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Optional

from .._engine import Engine
from ._base import set_hooked_engine
from ._instrumentor import HookStatus, Instrumentor

__all__ = ["PROVIDERS", "HookStatus", "hook_status", "instrument", "uninstrument"]

#: provider name -> module of ours that defines ``INSTRUMENTOR``.
PROVIDERS: Mapping[str, str] = {
    "openai": "enforcement.hooks.openai",
    "anthropic": "enforcement.hooks.anthropic",
    "google-genai": "enforcement.hooks.google_genai",
    "ollama": "enforcement.hooks.ollama",
    "litellm": "enforcement.hooks.litellm",
    "langchain": "enforcement.hooks.langchain",
    "bedrock": "enforcement.hooks.bedrock",
    "vertexai": "enforcement.hooks.vertexai",
    "perplexity": "enforcement.hooks.perplexity",
    "fal": "enforcement.hooks.fal",
}


def _instrumentor(name: str) -> Optional[Instrumentor]:
    module_name = PROVIDERS.get(name)
    if module_name is None:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(sorted(PROVIDERS))}")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    instrumentor: Instrumentor = module.INSTRUMENTOR
    return instrumentor


def instrument(*providers: str, engine: Optional[Engine] = None) -> list[str]:
    """Check every call of these provider SDKs (all known ones by default).

    Idempotent: instrumenting twice never wraps twice. Returns the providers
    now instrumented (patched, or waiting for their SDK's import).

    >>> import enforcement
    >>> enforcement.instrument("openai")  # doctest: +SKIP
    ['openai']
    """
    names = providers or tuple(PROVIDERS)
    done = []
    if engine is not None:
        set_hooked_engine(engine)
    for name in names:
        instrumentor = _instrumentor(name)
        if instrumentor is not None:
            instrumentor.instrument()
            done.append(name)
    return done


def uninstrument(*providers: str) -> None:
    """Restore the original SDK methods of these providers (all by default)."""
    for name in providers or tuple(PROVIDERS):
        instrumentor = _instrumentor(name)
        if instrumentor is not None:
            instrumentor.uninstrument()
    if not providers:
        set_hooked_engine(None)


def hook_status(*providers: str) -> dict[str, HookStatus]:
    """What ``instrument()`` did for each provider (all known ones by default), as data.

    >>> import enforcement
    >>> enforcement.hook_status("openai")["openai"].state  # doctest: +SKIP
    'patched'
    """
    statuses = {}
    for name in providers or tuple(PROVIDERS):
        instrumentor = _instrumentor(name)
        if instrumentor is None:
            module = PROVIDERS[name]
            statuses[name] = HookStatus(name, "skipped", module, None, "", "hook not importable")
        else:
            statuses[name] = instrumentor.status()
    return statuses
