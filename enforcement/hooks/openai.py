"""OpenAI hooks (and Azure, and OpenAI-compatible APIs): the check in the SDK's request funnel.

Every request of the ``openai`` SDK passes through ``SyncAPIClient.request``
/ ``AsyncAPIClient.request`` with its path and body, so one hook there covers
chat completions (create, parse, stream), completions, embeddings, the
Responses API, images, audio, batches, fine-tuning and videos, through the
raw-response, streaming-response and beta variants alike, and keeps covering
methods a new SDK release adds. Only requests that cost money are checked: a
POST to one of the paths in :data:`COSTLY_PATHS` (moderations, files, model
listings and every GET are free). Calls are checked under the provider the
client talks to, told by its class and base URL as the reference tells it
(see :func:`provider_label`), so a rule on xAI or a local Ollama covers the
openai SDK pointed at them.

The public methods are wrapped only to accept the reference SDK's
``usage_metadata=`` keyword. The metadata travels to the funnel in a private
header that the funnel removes before the SDK builds the request, so it also
reaches requests a stream manager sends later, on ``__enter__``.
"""

from __future__ import annotations

import importlib
import re
import urllib.parse
import weakref
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Optional

from ._stainless import PublicMethods, StainlessInstrumentor

__all__ = ["COSTLY_PATHS", "INSTRUMENTOR", "OpenAIInstrumentor", "provider_label"]

#: POST paths that spend money; the Azure client's ``/deployments/<name>``
#: prefix is added after the hook runs.
COSTLY_PATHS = re.compile(
    r"/(?:chat/completions|completions|embeddings|responses|responses/compact"
    r"|images/(?:generations|edits|variations)|audio/(?:speech|transcriptions|translations)"
    r"|batches|fine_tuning/jobs|videos|threads(?:/[^/]+)?/runs)"
)

# OpenAI-compatible APIs told apart by the host the client talks to: (domain, provider).
_COMPATIBLE_HOSTS: tuple[tuple[str, str], ...] = (("x.ai", "xai"), ("perplexity.ai", "perplexity"))

# Public methods that accept ``usage_metadata=``: (module, classes, methods).
_PUBLIC_METHODS: PublicMethods = (
    (
        "openai.resources.chat.completions.completions",
        ("Completions", "AsyncCompletions"),
        ("create", "parse", "stream"),
    ),
    (
        "openai.resources.beta.chat.completions",
        ("Completions", "AsyncCompletions"),
        ("parse", "stream"),
    ),
    ("openai.resources.completions", ("Completions", "AsyncCompletions"), ("create",)),
    ("openai.resources.embeddings", ("Embeddings", "AsyncEmbeddings"), ("create",)),
    (
        "openai.resources.responses.responses",
        ("Responses", "AsyncResponses"),
        ("create", "parse", "stream"),
    ),
    (
        "openai.resources.images",
        ("Images", "AsyncImages"),
        ("generate", "edit", "create_variation"),
    ),
    ("openai.resources.audio.speech", ("Speech", "AsyncSpeech"), ("create",)),
    (
        "openai.resources.audio.transcriptions",
        ("Transcriptions", "AsyncTranscriptions"),
        ("create",),
    ),
    ("openai.resources.audio.translations", ("Translations", "AsyncTranslations"), ("create",)),
    ("openai.resources.batches", ("Batches", "AsyncBatches"), ("create",)),
    ("openai.resources.videos", ("Videos", "AsyncVideos"), ("create",)),
    ("openai.resources.fine_tuning.jobs.jobs", ("Jobs", "AsyncJobs"), ("create",)),
)


def _costly(options: Any) -> bool:
    method = getattr(options, "method", "")
    url = getattr(options, "url", "")
    return (
        isinstance(method, str)
        and method.lower() == "post"
        and isinstance(url, str)
        and COSTLY_PATHS.fullmatch(url) is not None
    )


class OpenAIInstrumentor(StainlessInstrumentor):
    """Checks the ``openai`` SDK's costly requests in its request funnel."""

    name = "openai"
    module = "openai"
    distribution = "openai"
    minimum = (1, 0)
    below = (4,)

    public_methods = _PUBLIC_METHODS

    def __init__(self) -> None:
        super().__init__()
        self._azure: Optional[type] = None
        self._labels: weakref.WeakKeyDictionary[Any, tuple[Any, str]] = weakref.WeakKeyDictionary()

    def patch(self, module: ModuleType) -> None:
        self._azure = importlib.import_module("openai.lib.azure").BaseAzureClient
        super().patch(module)

    def judge(self, client: Any, options: Any) -> Optional[tuple[str, Sequence[Optional[str]]]]:
        """The provider the client talks to (see :func:`provider_label`) and the model.

        An Azure client's deployment is its model, as the reference reports it.
        """
        if not _costly(options):
            return None
        body = getattr(options, "json_data", None)
        model = body.get("model") if isinstance(body, Mapping) else None
        model = model if isinstance(model, str) else None
        provider = self._label(client)
        if provider == "azure":
            deployment = getattr(client, "_azure_deployment", None)
            return provider, (deployment if isinstance(deployment, str) else model,)
        return provider, (model,)

    def _label(self, client: Any) -> str:
        """:func:`provider_label`, remembered per client until its base URL changes."""
        base_url = getattr(client, "_base_url", None)
        try:
            known = self._labels.get(client)
        except TypeError:  # not weak-referenceable or not hashable: work it out each time
            return provider_label(client, self._azure)
        if known is not None and known[0] is base_url:
            return known[1]
        label = provider_label(client, self._azure)
        self._labels[client] = (base_url, label)
        return label


def provider_label(client: Any, azure_client: Optional[type] = None) -> str:
    """The provider an openai client's calls are checked under, as the reference labels it.

    ``azure`` for the Azure clients and for any base URL that mentions azure;
    ``ollama`` for an Ollama server's OpenAI-compatible API (port 11434, or
    "ollama" in the URL); ``xai`` and ``perplexity`` for their hosts (and
    subdomains); ``openai`` for everything else.
    """
    if azure_client is not None and isinstance(client, azure_client):
        return "azure"
    url = str(getattr(client, "base_url", "") or "").lower()
    if "azure" in url:
        return "azure"
    if "localhost:11434" in url or "ollama" in url:
        return "ollama"
    try:
        host = (urllib.parse.urlparse(url).hostname or "").rstrip(".")
    except ValueError:
        return "openai"
    for domain, label in _COMPATIBLE_HOSTS:
        if host == domain or host.endswith("." + domain):
            return label
    return "openai"


INSTRUMENTOR = OpenAIInstrumentor()
