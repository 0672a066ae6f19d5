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
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional

from .._providers import AZURE, OLLAMA, OPENAI, PERPLEXITY, XAI
from ._base import Call
from ._stainless import PerClient, PublicMethods, StainlessInstrumentor

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


def _posts(method: Any) -> bool:
    """Whether a request's method is POST, however it is spelled."""
    return isinstance(method, str) and method.lower() == "post"


def _model_of(options: Any) -> Optional[str]:
    """The model the method was given: the request body's ``model``."""
    body = getattr(options, "json_data", None)
    model = body.get("model") if type(body) is dict or isinstance(body, Mapping) else None
    return model if isinstance(model, str) else None


def _call_of(labels: _Labels, url: Any, model: Optional[str]) -> Optional[Call]:
    """The :class:`Call` of a POST to ``url`` for ``model``; None when the path is free."""
    if not isinstance(url, str) or COSTLY_PATHS.fullmatch(url) is None:
        return None
    chat = _CHAT_PATHS.fullmatch(url) is not None
    return Call(labels.chat if chat else labels.other, model)


class _Seen:
    """One client's labels, and the answer for each (path, model) of its POSTs so far.

    An answer is a pure function of the labels, the path and the model, so
    the funnel asks two dictionaries per request instead of two regular
    expressions, the labels and a new :class:`Call`.
    """

    __slots__ = ("answers", "labels")

    def __init__(self, labels: _Labels) -> None:
        self.labels = labels
        self.answers: dict[tuple[str, Optional[str]], Optional[Call]] = {}

    @classmethod
    def of(cls, client: Any) -> _Seen:
        return cls(_labels(client))

    def keep(self) -> bool:
        """False when the labels depend on ``AZURE_OPENAI_ENDPOINT``, read at each call."""
        return self.labels.cacheable


#: ``_Seen.answers``' bound per client: paths with ids in them must not grow it without end.
_ANSWERS_KEPT = 256
_UNSEEN = Call("")  # not CHECKED_ELSEWHERE: a distinct object


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
        self._seen: PerClient[_Seen] = PerClient(_Seen.of, _Seen.keep)

    def judge(self, client: Any, options: Any) -> Optional[tuple[str, Sequence[Optional[str]]]]:
        """The provider the client talks to (see :func:`provider_label`) and the body's model."""
        call = self.describe(client, (None, options), {})
        return None if call is None else (call.provider, (call.model,))

    def describe(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The funnel call ``request(cast_to, options, ...)``: its :class:`Call`, None when free.

        Asked on every request, so a client's answers are remembered (see :class:`_Seen`).
        """
        options = args[1] if len(args) > 1 else kwargs.get("options")
        method = getattr(options, "method", "")
        if (type(method) is not str or method != "post") and not _posts(method):
            return None
        url = getattr(options, "url", "")
        body = getattr(options, "json_data", None)
        model = body.get("model") if type(body) is dict else None  # _model_of, inline
        if type(model) is not str:
            model = _model_of(options)
        seen = self._seen.of(instance)
        if type(url) is not str or (model is not None and type(model) is not str):
            return _call_of(seen.labels, url, model)  # not a plain string: asked each time
        key = (url, model)
        call = seen.answers.get(key, _UNSEEN)
        if call is _UNSEEN:
            call = _call_of(seen.labels, url, model)
            if len(seen.answers) < _ANSWERS_KEPT:
                seen.answers[key] = call
        return call


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
