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
Anthropic path and the body's model for every client. The provider label
follows the client's class, see :func:`provider_label`.

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
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ._stainless import PublicMethods, StainlessInstrumentor

__all__ = ["COSTLY_PATHS", "INSTRUMENTOR", "AnthropicInstrumentor", "provider_label"]

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

# Client classes (the SDK's own, by name) -> provider label; any other client is "anthropic".
_LABELS: Mapping[str, str] = {
    "BaseBedrockClient": "bedrock",
    "AnthropicBedrock": "bedrock",
    "AsyncAnthropicBedrock": "bedrock",
    "BaseMantleClient": "bedrock",
    "BaseVertexClient": "vertex",
    "AnthropicVertex": "vertex",
    "AsyncAnthropicVertex": "vertex",
    "BaseFoundryClient": "foundry",
}
_known_labels: dict[type, str] = {}


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
    """The models a costly request runs; never raises."""
    try:
        if path == _BATCHES:
            return _batch_models(_field(options, "requests"))
        return [_model_name(_field(options, "model"))]
    except Exception:
        return [None]


def provider_label(client: Any) -> str:
    """The provider label a client's calls are checked under, decided by its class.

    "bedrock" for the Bedrock and Bedrock Mantle clients, "vertex" for Vertex
    AI, "foundry" for Microsoft Foundry (which the engine also counts toward
    "anthropic" caps), "anthropic" for every other client: the first-party
    API, also when it is served through the AWS or Google Cloud gateways.
    """
    cls = type(client)
    label = _known_labels.get(cls)
    if label is None:
        label = next(
            (
                _LABELS[klass.__name__]
                for klass in cls.__mro__
                if klass.__name__ in _LABELS
                and str(getattr(klass, "__module__", "")).split(".", 1)[0] == "anthropic"
            ),
            "anthropic",
        )
        _known_labels[cls] = label
    return label


class AnthropicInstrumentor(StainlessInstrumentor):
    """Checks the ``anthropic`` SDK's costly requests in its request funnel."""

    name = "anthropic"
    module = "anthropic"
    distribution = "anthropic"
    minimum = (0, 30)
    below = (3,)

    public_methods = _PUBLIC_METHODS

    def judge(self, client: Any, options: Any) -> Optional[tuple[str, Sequence[Optional[str]]]]:
        path = _costly_path(options)
        if path is None:
            return None
        return provider_label(client), _models(path, options)


INSTRUMENTOR = AnthropicInstrumentor()
