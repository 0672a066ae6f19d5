"""A local Bedrock runtime for the real boto3 ``bedrock-runtime`` client, counting requests.

Speaks enough of the REST-JSON protocol for botocore to build its own
responses: ``InvokeModel`` (the Anthropic Messages body, as Claude on
Bedrock answers), ``Converse``, their streaming twins in the AWS event-stream
binary framing, ``StartAsyncInvoke``, and the free ``CountTokens``,
``ApplyGuardrail`` and ``ListAsyncInvokes``; and the control plane's
``ListFoundationModels``, for a client of another service.

The model id arrives percent-encoded in the path (``...-v1%3A0``); ``models``
lists each request's id decoded, oldest first.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from ._fake_server import FakeServer, Reply
from .fake_anthropic import message, message_events

_MODEL_PATH = re.compile(r"/model/(?P<model>[^/]+)/(?P<action>[a-z-]+)")
_GUARDRAIL_PATH = re.compile(r"/guardrail/[^/]+/version/[^/]+/apply")
_EVENT_STREAM = "application/vnd.amazon.eventstream"
_INVOCATION_ARN = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/abc123"
#: what every Converse call reports it used (input without the cache, as Bedrock counts).
USAGE = {
    "inputTokens": 3,
    "outputTokens": 9,
    "totalTokens": 37,
    "cacheReadInputTokens": 20,
    "cacheWriteInputTokens": 5,
}
#: the token counts ``InvokeModel`` reports in its response headers.
INVOKE_HEADERS = (
    ("x-amzn-bedrock-input-token-count", "14"),
    ("x-amzn-bedrock-output-token-count", "6"),
)
#: the invocation metrics the last chunk of ``InvokeModelWithResponseStream`` carries.
INVOCATION_METRICS = {
    "inputTokenCount": 14,
    "outputTokenCount": 6,
    "invocationLatency": 10,
    "firstByteLatency": 5,
}
#: a request for this model is refused with HTTP 400, as a ValidationException.
FAILING_MODEL = "fail"


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    """One AWS event-stream message: prelude and its CRC32, string headers, JSON payload, CRC32."""
    body = json.dumps(payload).encode()
    headers = b""
    for name, value in (
        (":event-type", event_type),
        (":message-type", "event"),
        (":content-type", "application/json"),
    ):
        headers += bytes([len(name)]) + name.encode() + b"\x07"  # 7: a string header
        headers += struct.pack(">H", len(value)) + value.encode()
    prelude = struct.pack(">II", 16 + len(headers) + len(body), len(headers))
    frame = prelude + struct.pack(">I", binascii.crc32(prelude)) + headers + body
    return frame + struct.pack(">I", binascii.crc32(frame))


def _event_stream(events: Iterable[tuple[str, dict[str, Any]]]) -> Reply:
    """One chunk per event, so botocore reads the stream frame by frame as it would from AWS."""
    return Reply(200, _EVENT_STREAM, chunks=tuple(event_frame(kind, e) for kind, e in events))


def _chunks(model: str) -> Reply:
    """``InvokeModelWithResponseStream``: each Messages event base64-encoded in a ``chunk``,
    the last with Bedrock's invocation metrics."""
    events = message_events(model)
    events[-1] = {**events[-1], "amazon-bedrock-invocationMetrics": INVOCATION_METRICS}
    return _event_stream(
        ("chunk", {"bytes": base64.b64encode(json.dumps(event).encode()).decode()})
        for event in events
    )


def converse_reply() -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
        "stopReason": "end_turn",
        "usage": USAGE,
        "metrics": {"latencyMs": 10},
    }


def _converse_stream() -> Reply:
    return _event_stream(
        [
            ("messageStart", {"role": "assistant"}),
            ("contentBlockDelta", {"delta": {"text": "h"}, "contentBlockIndex": 0}),
            ("contentBlockDelta", {"delta": {"text": "i"}, "contentBlockIndex": 0}),
            ("contentBlockStop", {"contentBlockIndex": 0}),
            ("messageStop", {"stopReason": "end_turn"}),
            ("metadata", {"usage": USAGE, "metrics": {"latencyMs": 10}}),
        ]
    )


_VALIDATION = (("x-amzn-errortype", "ValidationException:http://internal.amazon.com/"),)


def _not_found(what: str) -> Reply:
    return Reply.json({"message": f"{what} not found"}, 404)


def _model_action(model: str, action: str) -> Reply:
    if model == FAILING_MODEL:
        failure = Reply.json({"message": "The provided model identifier is invalid."}, 400)
        return Reply(400, failure.content_type, failure.body, headers=_VALIDATION)
    if action == "invoke":
        reply = Reply.json(message(model))
        return Reply(200, reply.content_type, reply.body, headers=INVOKE_HEADERS)
    if action == "invoke-with-response-stream":
        return _chunks(model)
    if action == "converse":
        return Reply.json(converse_reply())
    if action == "converse-stream":
        return _converse_stream()
    if action == "count-tokens":
        return Reply.json({"inputTokens": 3})
    return _not_found(action)


class FakeBedrock(FakeServer):
    """``with FakeBedrock() as api: boto3.client("bedrock-runtime", endpoint_url=api.base_url)``."""

    @property
    def models(self) -> list[str]:
        """Each request's model id, decoded (``None`` for a request naming none)."""
        models: list[Any] = []
        for path in self.paths:
            named = _MODEL_PATH.fullmatch(path.split("?", 1)[0])
            models.append(unquote(named["model"]) if named else None)
        return models

    def answer(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        named = _MODEL_PATH.fullmatch(path)
        if method == "POST" and named:
            return _model_action(unquote(named["model"]), named["action"])
        if method == "POST" and path == "/async-invoke":
            return Reply.json({"invocationArn": _INVOCATION_ARN})
        if method == "GET" and path == "/async-invoke":
            return Reply.json({"asyncInvokeSummaries": []})
        if method == "GET" and path == "/foundation-models":  # the ``bedrock`` control plane
            return Reply.json({"modelSummaries": []})
        if method == "POST" and _GUARDRAIL_PATH.fullmatch(path):
            return Reply.json({"usage": {}, "action": "NONE", "outputs": [], "assessments": []})
        return _not_found(path)
