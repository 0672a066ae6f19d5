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
(see :func:`provider_label`): ``Azure``, ``OLLAMA``, ``XAI`` or ``OPENAI``,
and ``PERPLEXITY`` for chat completions and Responses calls to a base URL
naming perplexity. So a rule on xAI or a local Ollama covers the openai SDK
pointed at them. The model is the one the method was given (the request
body's ``model``), an Azure client's included, as the reference checks it.

The public methods are wrapped only to accept the reference SDK's
``usage_metadata=`` keyword. The metadata travels to the funnel in a private
header that the funnel removes before the SDK builds the request, so it also
reaches requests a stream manager sends later, on ``__enter__``.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional

from .._providers import AZURE, OLLAMA, OPENAI, PERPLEXITY, XAI
from ._stainless import PublicMethods, StainlessInstrumentor

__all__ = ["COSTLY_PATHS", "INSTRUMENTOR", "OpenAIInstrumentor", "provider_label", "url_label"]

#: POST paths that spend money; the Azure client's ``/deployments/<name>``
#: prefix is added after the hook runs.
COSTLY_PATHS = re.compile(
    r"/(?:chat/completions|completions|embeddings|responses|responses/compact"
    r"|images/(?:generations|edits|variations)|audio/(?:speech|transcriptions|translations)"
    r"|batches|fine_tuning/jobs|videos|threads(?:/[^/]+)?/runs)"
)

#: POST paths whose calls the reference labels ``PERPLEXITY`` on a Perplexity base URL.
_CHAT_PATHS = re.compile(r"/(?:chat/completions|responses(?:/.*)?)")

# OpenAI-compatible APIs told apart by the host the client talks to: (domain, provider).
_COMPATIBLE_HOSTS: tuple[tuple[str, str], ...] = (("x.ai", XAI),)

# Public methods that accept ``usage_metadata=``: (module, classes, methods).
_PUBLIC_METHODS: PublicMethods = (
    # Before 1.63 chat completions lived in a module, since then in a package of that name.
    ("openai.resources.chat.completions", ("Completions", "AsyncCompletions"), ("create",)),
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
    provider = OPENAI

    public_methods = _PUBLIC_METHODS

    def __init__(self) -> None:
        super().__init__()
        self._labels: weakref.WeakKeyDictionary[Any, tuple[Any, _Labels]] = (
            weakref.WeakKeyDictionary()
        )

    def judge(self, client: Any, options: Any) -> Optional[tuple[str, Sequence[Optional[str]]]]:
        """The provider the client talks to (see :func:`provider_label`) and the body's model."""
        if not _costly(options):
            return None
        body = getattr(options, "json_data", None)
        model = body.get("model") if isinstance(body, Mapping) else None
        labels = self._label(client)
        chat = _CHAT_PATHS.fullmatch(getattr(options, "url", "")) is not None
        return labels.chat if chat else labels.other, (model if isinstance(model, str) else None,)

    def _label(self, client: Any) -> _Labels:
        """:func:`_labels`, remembered per client until its base URL changes."""
        base_url = getattr(client, "_base_url", None)
        try:
            known = self._labels.get(client)
        except TypeError:  # not weak-referenceable or not hashable: work it out each time
            return _labels(client)
        if known is not None and known[0] is base_url:
            return known[1]
        labels = _labels(client)
        if labels.cacheable:
            self._labels[client] = (base_url, labels)
        return labels


class _Labels(NamedTuple):
    """A client's labels: for chat completions and Responses calls, and for every other call."""

    chat: str
    other: str
    #: False when the answer depends on ``AZURE_OPENAI_ENDPOINT``, read at each call.
    cacheable: bool = True


def provider_label(client: Any, *, chat: bool = True) -> str:
    """The provider an openai client's calls are checked under, as the reference labels them.

    In the reference's order: ``Azure`` for a client class named for Azure
    and for any base URL that mentions azure; ``OLLAMA`` for an Ollama
    server's OpenAI-compatible API (``localhost:11434``, or "ollama" in the
    URL); ``XAI`` for x.ai and its subdomains; ``Azure`` again for a class
    whose module or qualified name mentions Azure while ``AZURE_OPENAI_ENDPOINT``
    is set; ``OPENAI`` for everything else. A ``chat`` call (chat completions
    and Responses) to a base URL that mentions perplexity is ``PERPLEXITY``
    whatever else the URL says; the other calls of that client keep the
    label above, as the reference's embeddings and audio checks do.
    """
    labels = _labels(client)
    return labels.chat if chat else labels.other


def _labels(client: Any) -> _Labels:
    try:
        base_url = getattr(client, "base_url", None)
    except Exception:
        base_url = None
    url = str(base_url).lower() if base_url else ""
    other, cacheable = _detected(client, url)
    return _Labels(PERPLEXITY if "perplexity" in url else other, other, cacheable)


def _detected(client: Any, url: str) -> tuple[str, bool]:
    """The reference's ``detect_provider`` on a client: its label, and whether it can be kept."""
    if "Azure" in type(client).__name__:
        return AZURE, True
    label = url_label(url)
    if label != OPENAI:
        return label, True
    if "Azure" in str(type(client)):
        return (AZURE if os.environ.get("AZURE_OPENAI_ENDPOINT") else OPENAI), False
    return OPENAI, True


def url_label(url: str) -> str:
    """The label a base URL alone gives an openai client: Azure, OLLAMA, XAI or OPENAI.

    Perplexity aside (see :func:`provider_label`), and before the client's class is read.
    """
    url = url.lower()
    if "azure" in url:
        return AZURE
    if "localhost:11434" in url or "ollama" in url:
        return OLLAMA
    try:
        host = (urllib.parse.urlparse(url).hostname or "").rstrip(".")
    except ValueError:
        return OPENAI
    for domain, label in _COMPATIBLE_HOSTS:
        if host == domain or host.endswith("." + domain):
            return label
    return OPENAI


INSTRUMENTOR = OpenAIInstrumentor()
