"""Amazon Bedrock through boto3 (``bedrock-runtime``): the check in botocore's one API funnel.

boto3 clients are classes botocore generates at runtime, one per service and
client, so there is no ``invoke_model`` attribute to wrap ahead of time.
Every generated method (``invoke_model``, ``converse``...) is a one-line
``_api_call(self, **kwargs)`` that calls
``BaseClient._make_api_call(self, operation_name, api_params)``, and so do
paginators and waiters: one hook there sees every request of every client,
made before or after instrumenting, before botocore validates, signs or
sends it. Retries happen inside it, so a call is checked once however often
botocore retries it.

The hook runs on every call of every boto3 client, so it settles the common
case first from its arguments alone: an operation not in
:data:`COSTLY_OPERATIONS` whose parameters carry no ``usage_metadata`` goes
straight through, whatever the service. Otherwise it asks the client which
service it is (``client.meta.service_model.service_name``): any other service
(S3, STS, the ``bedrock`` control plane...) goes through untouched. For
``bedrock-runtime`` it removes the reference SDK's ``usage_metadata=``
keyword from the parameters (a copy of them), where botocore would refuse it
as an unknown parameter, so every operation of the client accepts it.

Checked: ``InvokeModel``, ``InvokeModelWithResponseStream``, ``Converse`` and
``ConverseStream``, the four the reference's Bedrock transport guards, plus
``StartAsyncInvoke`` and ``InvokeModelWithBidirectionalStream``, which run
the model they name too. Free: guardrails (``ApplyGuardrail``,
``InvokeGuardrailChecks``), ``CountTokens`` and the async-invoke listings,
which run no model. The streaming operations send their request inside
``_make_api_call`` and return the open event stream in ``response["body"]``
or ``response["stream"]``, so a blocked stream raises when the method is
called, before anything is sent, and an allowed one is returned exactly as
botocore built it.

The provider is ``AWS``, as the reference labels these calls. The model is
the request's ``modelId`` under every name a rule may use for it
(:func:`model_names`, the reference's names for a Claude id): an ARN of a
foundation model or a system inference profile is read as the id it ends
with, and the call is known by that id, the id Bedrock reports back (a
cross-region profile's ``us.`` or ``global.`` dropped), the Claude model name
(vendor and Bedrock version dropped) and the id as the caller wrote it.

Where the reference does less, this hook checks more, because a budget it
cannot see is a budget that never stops anything. The reference's transport
is off unless ``REVENIUM_BEDROCK_TRANSPORT`` is set; here ``instrument()`` is
the opt-in. It checks only ids naming ``anthropic.``; here every model is
checked, under its id as written. It looks an application inference profile
or a Provisioned Throughput ARN up in the control plane, in the background,
and leaves the calls made before the answer unchecked; here no lookup is
made (a check never waits on the network) and the call is checked under the
ARN, so rules on that ARN or on the provider bite and rules on a model name
do not.

What a call used is read from the response: ``Converse``'s ``usage``,
``ConverseStream``'s ``metadata`` event, ``InvokeModel``'s
``x-amzn-bedrock-input-token-count`` / ``-output-token-count`` headers (the
body, a stream, is left unread for the caller), and the invocation metrics on
the last chunk of ``InvokeModelWithResponseStream``. The estimate comes from
Converse's messages, system and tools and ``inferenceConfig.maxTokens``, or
from ``InvokeModel``'s JSON body (messages or prompt, ``max_tokens``).

boto3 is synchronous; aiobotocore's clients override ``_make_api_call`` with
a coroutine of their own and are not hooked here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Callable, Optional

from .._model_match import ModelKnownByAliases
from .._providers import AWS
from .._usage import Estimate, Usage
from ._base import Call, checked, read_call
from ._estimate import estimate_from, output_limit, prompt_tokens
from ._instrumentor import Instrumentor
from ._stainless import EventTally
from ._streams import Meter, Tally, count, field

__all__ = ["COSTLY_OPERATIONS", "INSTRUMENTOR", "BedrockInstrumentor", "describe", "model_names"]

#: the botocore service whose calls are judged; every other service is free.
SERVICE = "bedrock-runtime"

#: ``bedrock-runtime`` operations that run a model.
COSTLY_OPERATIONS = frozenset(
    {
        "InvokeModel",
        "InvokeModelWithResponseStream",
        "Converse",
        "ConverseStream",
        "StartAsyncInvoke",
        "InvokeModelWithBidirectionalStream",
    }
)

# An ARN whose last segment is the model id it runs (a foundation model, a system
# inference profile); other ARNs (custom, imported, application profile) name no model.
_NAMING_ARN = re.compile(r"arn:.*:(?:foundation-model|inference-profile)/([^/]+)")
_VENDOR = "anthropic."
_BEDROCK_VERSION = re.compile(r"-v\d+:\d+$")
_UNNAMED_CLAUDE = "claude"  # ``anthropic.claude-v2`` names no Claude model of its own


def model_names(model_id: str) -> str:
    """``model_id`` with every name a rule may use for the model it runs.

    >>> names = model_names("us.anthropic.claude-3-5-sonnet-20240620-v1:0")
    >>> str(names), sorted(names.aliases)[0]
    ('us.anthropic.claude-3-5-sonnet-20240620-v1:0', 'anthropic.claude-3-5-sonnet-20240620-v1:0')
    """
    named = _NAMING_ARN.fullmatch(model_id)
    recorded = named.group(1) if named else model_id
    reported = recorded
    claude = recorded
    if _VENDOR in recorded:
        reported = _VENDOR + recorded.rsplit(_VENDOR, 1)[1]
        name = _BEDROCK_VERSION.sub("", reported[len(_VENDOR) :])
        claude = recorded if name == _UNNAMED_CLAUDE else name
    return ModelKnownByAliases(recorded, reported, claude, model_id)


def _operation(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    return args[0] if args else kwargs.get("operation_name")


def _params(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    return args[1] if len(args) > 1 else kwargs.get("api_params")


def describe(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Call]:
    """What ``_make_api_call(operation_name, api_params)`` of a bedrock-runtime client runs."""
    operation = _operation(args, kwargs)
    if not isinstance(operation, str) or operation not in COSTLY_OPERATIONS:
        return None
    params = _params(args, kwargs)
    model_id = params.get("modelId") if isinstance(params, Mapping) else None
    return Call(AWS, model_names(model_id) if isinstance(model_id, str) and model_id else None)


def _service(instance: Any) -> Any:
    try:
        return instance.meta.service_model.service_name
    except Exception:  # not a botocore client as we know it: not ours to judge
        return None


def _without_metadata(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], Optional[Mapping[str, Any]]]:
    """The call's arguments with ``usage_metadata`` taken out of ``api_params``, and its value.

    The parameters are copied, never edited: a caller of ``_make_api_call``
    may reuse its dict.
    """
    params = _params(args, kwargs)
    if not isinstance(params, Mapping) or "usage_metadata" not in params:
        return args, None
    metadata = params["usage_metadata"]
    rest = {name: value for name, value in params.items() if name != "usage_metadata"}
    if len(args) > 1:
        args = (args[0], rest, *args[2:])
    else:
        kwargs["api_params"] = rest
    return args, metadata if isinstance(metadata, Mapping) else None


# -- what a call uses -------------------------------------------------------------

_STREAMED = {"ConverseStream": "stream", "InvokeModelWithResponseStream": "body"}
_INVOKE_PROMPT = ("system", "messages", "prompt", "inputText", "tools")
_INVOKE_LIMITS = ("max_tokens", "max_gen_len", "max_new_tokens", "maxTokenCount")
_METRICS = "amazon-bedrock-invocationMetrics"
_HEADER = "x-amzn-bedrock-{}-token-count"


def converse_usage(usage: Any) -> Optional[Usage]:
    """Converse's ``usage``; its ``inputTokens`` leaves out the cached tokens beside it."""
    if not isinstance(usage, Mapping):
        return None
    read, written = (
        count(usage.get("cacheReadInputTokens")),
        count(usage.get("cacheWriteInputTokens")),
    )
    return Usage(
        count(usage.get("inputTokens")) + read + written,
        count(usage.get("outputTokens")),
        cache_read_tokens=read,
        cache_write_tokens=written,
    )


def _counted(value: Any) -> int:
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def _header_usage(response: Any) -> Optional[Usage]:
    headers = field(response, "ResponseMetadata", "HTTPHeaders")
    if not isinstance(headers, Mapping) or _HEADER.format("input") not in headers:
        return None
    read = _counted(headers.get(_HEADER.format("cache-read-input")))
    written = _counted(headers.get(_HEADER.format("cache-write-input")))
    return Usage(
        _counted(headers.get(_HEADER.format("input"))),
        _counted(headers.get(_HEADER.format("output"))),
        cache_read_tokens=read,
        cache_write_tokens=written,
    )


class _ChunkTally:
    """``InvokeModelWithResponseStream``: Bedrock's invocation metrics, else the model's events.

    Only chunks that can carry usage are decoded (the JSON is small, and the
    event the caller gets is left as it was).
    """

    def __init__(self, estimate: Callable[[], Estimate]) -> None:
        self._events = EventTally(estimate)
        self._metrics: Optional[Usage] = None

    def add(self, event: Any) -> None:
        data = field(event, "chunk", "bytes")
        data = data.encode() if isinstance(data, str) else data
        if not isinstance(data, bytes) or not any(mark in data for mark in _USAGE_MARKS):
            return
        decoded = json.loads(data)
        metrics = decoded.get(_METRICS) if isinstance(decoded, Mapping) else None
        if isinstance(metrics, Mapping):
            read = count(metrics.get("cacheReadInputTokenCount"))
            written = count(metrics.get("cacheWriteInputTokenCount"))
            self._metrics = Usage(
                count(metrics.get("inputTokenCount")),
                count(metrics.get("outputTokenCount")),
                cache_read_tokens=read,
                cache_write_tokens=written,
            )
        self._events.add(decoded)

    def usage(self) -> Optional[Usage]:
        return self._metrics or self._events.usage()


_USAGE_MARKS = (b"usage", _METRICS.encode())


class _ConverseTally:
    """``ConverseStream``: the ``metadata`` event's usage."""

    def __init__(self) -> None:
        self._usage: Optional[Usage] = None

    def add(self, event: Any) -> None:
        if isinstance(event, Mapping) and "metadata" in event:
            self._usage = converse_usage(field(event, "metadata", "usage"))

    def usage(self) -> Optional[Usage]:
        return self._usage


class BedrockMeter(Meter):
    """Reads ``_make_api_call``'s parameters and the response dict botocore built."""

    def estimate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Estimate:
        params = _params(args, kwargs)
        if not isinstance(params, Mapping):
            return Estimate(0)
        if "messages" in params or "system" in params:  # Converse
            prompt = prompt_tokens(params.get("messages"), params.get("system"))
            tools = prompt_tokens(params.get("toolConfig"))
            limit = output_limit(field(params, "inferenceConfig", "maxTokens"))
            return Estimate(prompt + tools, limit)
        body = params.get("body")
        decoded = json.loads(body) if isinstance(body, (bytes, str)) and body else None
        return estimate_from(decoded, _INVOKE_PROMPT, _INVOKE_LIMITS)

    def usage(self, result: Any) -> Optional[Usage]:
        if isinstance(result, Mapping) and "usage" in result:
            return converse_usage(result["usage"])
        return _header_usage(result)

    def tally(self, result: Any, estimate: Callable[[], Estimate]) -> Optional[Tally]:
        key = self.stream_key(result)
        if key == "stream":
            return _ConverseTally()
        return _ChunkTally(estimate) if key == "body" else None

    def stream_key(self, result: Any) -> Optional[str]:
        if not isinstance(result, dict):
            return None
        for key in ("stream", "body"):
            if type(result.get(key)).__name__ == "EventStream":  # botocore's
                return key
        return None


_METER = BedrockMeter()


def _funnel(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:  # the common case, an operation of any service that runs no model, decided first
        free = args[0] not in COSTLY_OPERATIONS and "usage_metadata" not in args[1]
    except Exception:  # an odd call: read it the careful way below
        free = False
    if free or _service(instance) != SERVICE:
        return wrapped(*args, **kwargs)
    args, metadata = _without_metadata(args, kwargs)
    call = read_call(describe, AWS, instance, args, kwargs)
    if call is None:
        return wrapped(*args, **kwargs)
    return checked(
        call.provider,
        call.model,
        metadata,
        lambda: wrapped(*args, **kwargs),
        _METER,
        (instance, args, kwargs),
    )


class BedrockInstrumentor(Instrumentor):
    """Checks boto3's ``bedrock-runtime`` model runs in ``BaseClient._make_api_call``."""

    name = "bedrock"
    module = "botocore.client"
    distribution = "botocore"
    minimum = (1, 31, 57)  # the first release with bedrock-runtime
    below = (2,)
    provider = AWS

    def patch(self, module: ModuleType) -> None:
        self.wrap(module.BaseClient, "_make_api_call", _funnel, required=True)


INSTRUMENTOR = BedrockInstrumentor()
