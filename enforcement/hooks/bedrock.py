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

boto3 is synchronous; aiobotocore's clients override ``_make_api_call`` with
a coroutine of their own and are not hooked here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Callable, Optional

from .._filters import ModelKnownByAliases
from .._providers import AWS
from ._base import Call, Instrumentor, checked, read_call

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
    return checked(call.provider, call.model, metadata, lambda: wrapped(*args, **kwargs))


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
