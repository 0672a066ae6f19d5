"""Ollama Python SDK (``ollama``) hooks: local Ollama servers and Ollama's cloud.

Every request of ``ollama.Client`` that builds a response goes through
``Client._request(cls, method, path, json=..., stream=...)`` (and
``AsyncClient._request`` for the async client), so the check sits there and
reads the path and the JSON body. Only the paths in :data:`COSTLY_PATHS` are
checked: chat, generate, embed, the deprecated embeddings and System One
scoring, each of which runs a model. Listing, showing, pulling, pushing,
creating, copying and deleting models, ``ps`` and the web search and fetch
tools are free of model time and pass straight through.

Streaming needs no special care here: ``_request(stream=True)`` is a plain
function (a coroutine for the async client) that returns a generator whose
first ``next()`` opens the request. The hook runs when ``_request`` is
called, which is when the user calls ``chat(stream=True)`` (or awaits it), so
a blocked stream raises at the call and the generator is never made. The
generator the SDK made is returned as it is.

The module functions (``ollama.chat``, ``ollama.generate``...) are bound
methods of a ``Client`` made when ``ollama`` is imported; they resolve
``self._request`` through the class, so the funnel covers them whenever they
were imported. The public methods ``chat``, ``generate``, ``embed``,
``embeddings`` and ``systemone`` of both clients, and the module functions,
are wrapped only to accept the reference SDK's ``usage_metadata=`` keyword,
which they hand to the funnel for the duration of the call. A module function
bound with ``from ollama import chat`` before instrumenting is still checked,
but does not accept the keyword.

What a call used is read from the response's ``prompt_eval_count`` and
``eval_count`` (a stream's last chunk carries them); the estimate from the
body's messages, prompt, system, tools and images, and ``options.num_predict``.

The provider is ``OLLAMA``, as the reference labels it; the model is the
request body's ``model``, as the caller spelled it (``llama3.2`` and
``llama3.2:latest`` are different names to a rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any, Optional

from .._providers import OLLAMA
from .._usage import Estimate, Usage
from ._base import Call
from ._estimate import output_limit, prompt_tokens
from ._instrumentor import Instrumentor
from ._streams import GeneratorMeter, count, field

__all__ = ["COSTLY_PATHS", "INSTRUMENTOR", "OllamaInstrumentor", "describe"]

#: POST paths that run a model, as the SDK passes them to ``_request``.
COSTLY_PATHS = frozenset(
    {"/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/v1/systemone"}
)

# Public methods (and module functions) that accept ``usage_metadata=``.
_PUBLIC_METHODS = ("chat", "generate", "embed", "embeddings", "systemone")


def describe(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Call]:
    """What ``_request(cls, method, path, json=...)`` runs: a model, or None when it is free."""
    method = args[1] if len(args) > 1 else kwargs.get("method")
    path = args[2] if len(args) > 2 else kwargs.get("url")
    if not isinstance(method, str) or method.upper() != "POST" or not isinstance(path, str):
        return None
    if "://" in path:  # an absolute URL: keep its path
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    if path.split("?", 1)[0].rstrip("/") not in COSTLY_PATHS:
        return None
    body = kwargs.get("json")
    model = body.get("model") if isinstance(body, Mapping) else None
    return Call(OLLAMA, model if isinstance(model, str) and model else None)


def usage_of(response: Any) -> Optional[Usage]:
    """A response's (or final chunk's) token counts; None when it reports none."""
    prompt, output = field(response, "prompt_eval_count"), field(response, "eval_count")
    if prompt is None and output is None:
        return None
    model = field(response, "model")
    return Usage(count(prompt), count(output), model=model if isinstance(model, str) else None)


class OllamaMeter(GeneratorMeter):
    """Reads ``_request``'s JSON body, and the response or the chunks it streams."""

    def estimate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Estimate:
        body = kwargs.get("json")
        if not isinstance(body, Mapping):
            return Estimate(0)
        parts = (body.get(key) for key in ("system", "messages", "prompt", "input", "tools"))
        media = body.get("images")  # base64 pictures: one piece of media each, not text
        prompt = prompt_tokens(*parts, {"images": media} if media else None)
        return Estimate(prompt, output_limit(field(body, "options", "num_predict")))

    read = staticmethod(usage_of)


_METER = OllamaMeter()


class OllamaInstrumentor(Instrumentor):
    """Checks the ``ollama`` SDK's model runs in ``Client._request`` / ``AsyncClient._request``."""

    name = "ollama"
    module = "ollama"
    distribution = "ollama"
    minimum = (0, 4)
    below = (1,)
    provider = OLLAMA

    def patch(self, module: ModuleType) -> None:
        client, async_client = module.Client, module.AsyncClient
        self.hook(client, "_request", describe, required=True, meter=_METER)
        self.hook(async_client, "_request", describe, required=True, meter=_METER)
        for owner in (client, async_client):
            for name in _PUBLIC_METHODS:
                if name in owner.__dict__:
                    self.relay(owner, name)
        for name in _PUBLIC_METHODS:  # bound methods of the default client, made at import
            if callable(module.__dict__.get(name)):
                self.relay(module, name)


INSTRUMENTOR = OllamaInstrumentor()
