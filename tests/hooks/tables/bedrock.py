"""boto3's ``bedrock-runtime`` calls for the conformance suite, against a local fake Bedrock.

boto3 is synchronous, so every case is. Each call reads its response to the
end (the body of ``invoke_model``, the event stream of the streaming
operations), so the request is really sent and answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import boto3
import botocore.session
from botocore.config import Config

from enforcement import _providers

from ..conformance import Case, Table
from ..fake_bedrock import FakeBedrock

MESSAGES = [{"role": "user", "content": [{"text": "hello"}]}]
BODY = json.dumps(
    {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hello"}],
    }
)
OUTPUT = {"s3OutputDataConfig": {"s3Uri": "s3://bucket/out"}}
#: the operations this botocore knows: each release adds some (Converse came in 1.34.116).
OPERATIONS = frozenset(
    botocore.session.get_session().get_service_model("bedrock-runtime").operation_names
)
_OPERATION = {
    "invoke_model": "InvokeModel",
    "invoke_model_with_response_stream": "InvokeModelWithResponseStream",
    "converse": "Converse",
    "converse_stream": "ConverseStream",
    "start_async_invoke": "StartAsyncInvoke",
}


@contextmanager
def client(api: FakeBedrock) -> Iterator[Any]:
    built = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=api.base_url,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}),  # one request per call, as counted
    )
    try:
        yield built
    finally:
        built.close()


def invoke(c: Any, m: str, **kw: Any) -> Any:
    return json.loads(c.invoke_model(modelId=m, body=BODY, **kw)["body"].read())


def invoke_stream(c: Any, m: str, **kw: Any) -> Any:
    return list(c.invoke_model_with_response_stream(modelId=m, body=BODY, **kw)["body"])


def converse(c: Any, m: str, **kw: Any) -> Any:
    return c.converse(modelId=m, messages=MESSAGES, **kw)


def converse_stream(c: Any, m: str, **kw: Any) -> Any:
    return list(c.converse_stream(modelId=m, messages=MESSAGES, **kw)["stream"])


def start_async(c: Any, m: str, **kw: Any) -> Any:
    return c.start_async_invoke(modelId=m, modelInput={}, outputDataConfig=OUTPUT, **kw)


def events(first: str) -> Callable[[Any], bool]:
    """A judge: a stream read to the end, opening with a ``first`` event."""
    return lambda result: isinstance(result, list) and len(result) > 1 and first in result[0]


TABLE = Table(
    provider="bedrock",
    label=_providers.AWS,
    model="anthropic.claude-3-5-sonnet-20240620-v1:0",
    fake=FakeBedrock,
    client=client,
    cases=[
        case
        for case in (
            Case("invoke_model", invoke, lambda result: result["type"] == "message"),
            Case("invoke_model_with_response_stream", invoke_stream, events("chunk")),
            Case("converse", converse, lambda result: result["stopReason"] == "end_turn"),
            Case("converse_stream", converse_stream, events("messageStart")),
            Case("start_async_invoke", start_async, lambda result: "invocationArn" in result),
        )
        if _OPERATION[case.name] in OPERATIONS
    ],
)
