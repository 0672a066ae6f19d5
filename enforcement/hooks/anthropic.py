"""Anthropic hooks (and Bedrock, Vertex, Foundry): the check in the SDK's request funnel.

Every request of the ``anthropic`` SDK passes through
``SyncAPIClient.request`` / ``AsyncAPIClient.request`` with its path and
body, so one hook there covers ``messages.create`` (streamed or not),
``messages.stream()`` (whose request is sent when the stream manager is
entered), ``messages.parse``, batches and the beta namespace, through the
raw-response and streaming-response variants alike. Only requests that cost
money are checked: a POST to one of :data:`COSTLY_PATHS` (messages,
batches, legacy completions, and the managed-agent calls that make an agent
work: session events, deployment runs, dreams). Token counting, model
listings, batch retrieval and results, files, every GET, and session events
that only interrupt an agent (which stops spending) are free.

The Bedrock and Vertex clients rewrite ``/v1/messages`` to their own paths
(``/model/<id>/invoke``, ``.../models/<id>:rawPredict``) and move the model
out of the body only later, per attempt, inside the SDK, so the hook sees the
Anthropic path and the body's model for every client. The provider label is
decided as the reference decides it, by the client's base URL and class
(see :func:`provider_label`): ``AWS`` for a base URL on amazonaws.com (every
AnthropicBedrock client left on its default endpoint), ``Foundry`` for
Microsoft Foundry, ``ANTHROPIC`` for every other client, Claude on Vertex AI
and the Bedrock Mantle client included. A model that names a Bedrock Claude
id is also known by the id Bedrock reports and by its Claude name, so a rule
on ``claude-haiku-4-5-20251001`` covers ``us.anthropic.claude-haiku-4-5-20251001-v1:0``
(see :func:`cap_model`).

A batch carries one model per request: it is checked once for each distinct
model in it, so a rule on any of them stops the whole batch. Requests given
as an iterator are not read (that would consume them), and the batch is
checked with model None, which every model-filtered rule covers.

The public methods are wrapped only to accept the reference SDK's
``usage_metadata=`` keyword. The metadata travels to the funnel in a private
header that the funnel removes before the SDK builds the request, so it also
reaches the request a stream manager sends later, on ``__enter__``.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from .._model_match import ModelKnownByAliases
from .._providers import ANTHROPIC, AWS, FOUNDRY
from ._stainless import PublicMethods, StainlessInstrumentor

__all__ = ["COSTLY_PATHS", "INSTRUMENTOR", "AnthropicInstrumentor", "cap_model", "provider_label"]

#: POST paths (query string aside) that spend money.
COSTLY_PATHS = re.compile(
    r"/v1/(?:messages|messages/batches|complete|dreams"
    r"|sessions/[^/]+/events|deployments/[^/]+/run)"
)
_BATCHES = "/v1/messages/batches"

# Public methods that accept ``usage_metadata=``: (module, classes, methods). Older SDKs
# define the messages resources in the package modules, newer ones re-export them there.
_PUBLIC_METHODS: PublicMethods = (
    ("anthropic.resources.messages", ("Messages", "AsyncMessages"), ("create", "stream")),
    ("anthropic.resources.beta.messages", ("Messages", "AsyncMessages"), ("create", "stream")),
    (
        "anthropic.resources.messages.messages",
        ("Messages", "AsyncMessages"),
        ("create", "stream", "parse"),
    ),
    ("anthropic.resources.messages.batches", ("Batches", "AsyncBatches"), ("create",)),
    (
        "anthropic.resources.beta.messages.messages",
        ("Messages", "AsyncMessages"),
        ("create", "stream", "parse"),
    ),
    ("anthropic.resources.beta.messages.batches", ("Batches", "AsyncBatches"), ("create",)),
    ("anthropic.resources.completions", ("Completions", "AsyncCompletions"), ("create",)),
    ("anthropic.resources.beta.dreams", ("Dreams", "AsyncDreams"), ("create",)),
    ("anthropic.resources.beta.sessions.events", ("Events", "AsyncEvents"), ("send",)),
    ("anthropic.resources.beta.deployments", ("Deployments", "AsyncDeployments"), ("run",)),
)

# What names a client's calls as Bedrock's or Foundry's, as the reference reads it.
_BEDROCK_HOST = "amazonaws.com"
_FOUNDRY_HOST = "services.ai.azure.com"
_FOUNDRY_CLASS = "foundry"  # in the name of a class the anthropic package defines

# Bedrock model ids: ``[<geography>.]anthropic.<name>[-v<n>:<n>]``, or an ARN naming one.
_VENDOR_PREFIX = "anthropic."
_BEDROCK_VERSION = re.compile(r"-v\d+:\d+$")
_NAMING_ARN = re.compile(r":(?:foundation-model|inference-profile)/([^/]+)$")
_UNNAMED_CLAUDE = "claude"  # the legacy ``anthropic.claude-v2:1`` names no model


def _costly_path(options: Any) -> Optional[str]:
    """The request's path when it is a POST that spends money, else None."""
    method = getattr(options, "method", "")
    url = getattr(options, "url", "")
    if not (isinstance(method, str) and method.lower() == "post" and isinstance(url, str)):
        return None
    path = url.split("?", 1)[0]
    if COSTLY_PATHS.fullmatch(path) is None:
        return None
    if path.endswith("/events") and _only_interrupts(options):
        return None  # stopping a running agent must never be blocked
    return path


def _only_interrupts(options: Any) -> bool:
    """Whether a session's events only interrupt it (anything else makes the agent work)."""
    try:
        events = _field(options, "events")
        return (
            isinstance(events, (list, tuple))
            and len(events) > 0
            and all(isinstance(e, Mapping) and e.get("type") == "user.interrupt" for e in events)
        )
    except Exception:
        return False


def _model_name(value: Any) -> Optional[str]:
    """A model as a request names it: a string, or an object with an ``id`` (dreams)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        identifier = value.get("id")
        return identifier if isinstance(identifier, str) else None
    return None


def _field(options: Any, name: str) -> Any:
    """A body field as the SDK will send it: ``extra_body`` overrides the method's own."""
    extra = getattr(options, "extra_json", None)
    if isinstance(extra, Mapping) and name in extra:
        return extra[name]
    body = getattr(options, "json_data", None)
    return body.get(name) if isinstance(body, Mapping) else None


def _batch_models(requests: Any) -> list[Optional[str]]:
    """Each distinct model of a batch's requests, in order; [None] when unreadable."""
    if not isinstance(requests, (list, tuple)):
        return [None]  # an iterator: reading it would consume what the SDK must send
    models: dict[Optional[str], None] = {}
    for request in requests:
        params = request.get("params") if isinstance(request, Mapping) else None
        models[_model_name(params.get("model")) if isinstance(params, Mapping) else None] = None
    return list(models) or [None]


def _models(path: str, options: Any) -> list[Optional[str]]:
    """The models a costly request runs; never raises.

    A request's own model is the one the method was given (the body before
    ``extra_body``), as the reference reads ``kwargs["model"]``.
    """
    try:
        if path == _BATCHES:
            return _batch_models(_field(options, "requests"))
        body = getattr(options, "json_data", None)
        return [_model_name(body.get("model")) if isinstance(body, Mapping) else None]
    except Exception:
        return [None]


def cap_model(model: Optional[str], provider: str) -> Optional[str]:
    """The model a rule judges a call by: a Bedrock Claude id with the other names it goes by.

    ``us.anthropic.claude-haiku-4-5-20251001-v1:0`` is also known as
    ``anthropic.claude-haiku-4-5-20251001-v1:0`` (the id Bedrock reports) and
    ``claude-haiku-4-5-20251001`` (the Claude model); on ``AWS`` an ARN that
    names its model is recorded as that model's id. Any other model is
    judged as given.
    """
    if model is None or _VENDOR_PREFIX not in model:
        return model
    reported = _VENDOR_PREFIX + model.rsplit(_VENDOR_PREFIX, 1)[1]
    name = _BEDROCK_VERSION.sub("", reported[len(_VENDOR_PREFIX) :])
    claude = model if name == _UNNAMED_CLAUDE else name
    recorded = reported
    if provider == AWS:
        named = _NAMING_ARN.search(model) if model.startswith("arn:") else None
        recorded = named.group(1) if named else model
    if recorded == reported == claude:
        return recorded
    return ModelKnownByAliases(recorded, reported, claude)


def provider_label(client: Any) -> str:
    """The provider label a client's calls are checked under, decided as the reference decides.

    ``AWS`` when the client is boto3's bedrock-runtime or its base URL is on
    amazonaws.com; else ``Foundry`` for a class of the anthropic package named
    for Foundry (AnthropicFoundry) or a base URL on services.ai.azure.com;
    else ``ANTHROPIC``. The base URL decides, not the class: an
    AnthropicBedrock client sent to a proxy is checked as ``ANTHROPIC``, a
    plain client sent to an API Gateway on amazonaws.com as ``AWS``; Claude
    on Vertex AI, the AWS and Google Cloud gateways and the Bedrock Mantle
    client (``bedrock-mantle.<region>.api.aws``) are ``ANTHROPIC``.
    Remembered per client (by the instrumentor) until its base URL changes. Never raises.
    """
    return INSTRUMENTOR.label(client)


def _label(client: Any, base_url: Any, foundry: bool) -> str:
    url = str(base_url).lower() if base_url else ""
    if _BEDROCK_HOST in url or _is_bedrock_runtime(client):
        return AWS
    if foundry or _FOUNDRY_HOST in url:
        return FOUNDRY
    return ANTHROPIC


def _is_bedrock_runtime(client: Any) -> bool:
    try:
        return bool(client.meta.service_model.service_name == "bedrock-runtime")
    except Exception:
        return False


def _is_foundry_class(cls: type) -> bool:
    return any(
        _FOUNDRY_CLASS in klass.__name__.lower()
        and str(getattr(klass, "__module__", "")).split(".", 1)[0] == "anthropic"
        for klass in cls.__mro__
    )


class AnthropicInstrumentor(StainlessInstrumentor):
    """Checks the ``anthropic`` SDK's costly requests in its request funnel."""

    name = "anthropic"
    module = "anthropic"
    distribution = "anthropic"
    minimum = (0, 30)
    below = (3,)
    provider = ANTHROPIC

    public_methods = _PUBLIC_METHODS

    def __init__(self) -> None:
        super().__init__()
        # Both weak: bounded by the clients and client classes alive.
        self._labels: weakref.WeakKeyDictionary[Any, tuple[Any, str]] = weakref.WeakKeyDictionary()
        self._foundry: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()

    def label(self, client: Any) -> str:
        """:func:`provider_label`, remembered per client until its base URL changes."""
        try:
            base_url = getattr(client, "base_url", None)
        except Exception:
            base_url = None
        try:
            known = self._labels.get(client)
        except TypeError:  # not weak-referenceable or not hashable: work it out each time
            return _label(client, base_url, self._is_foundry(type(client)))
        if known is not None and known[0] is base_url:
            return known[1]
        label = _label(client, base_url, self._is_foundry(type(client)))
        self._labels[client] = (base_url, label)
        return label

    def _is_foundry(self, cls: type) -> bool:
        try:
            known = self._foundry.get(cls)
        except TypeError:
            return _is_foundry_class(cls)
        if known is None:
            known = self._foundry[cls] = _is_foundry_class(cls)
        return known

    def judge(self, client: Any, options: Any) -> Optional[tuple[str, Sequence[Optional[str]]]]:
        path = _costly_path(options)
        if path is None:
            return None
        provider = self.label(client)
        return provider, [cap_model(model, provider) for model in _models(path, options)]


INSTRUMENTOR = AnthropicInstrumentor()
