"""A local Anthropic API (and its Bedrock and Vertex shapes) for the real SDK, counting requests.

Speaks enough of each endpoint for the SDK to build its own objects: messages
(JSON, and SSE when ``stream`` is set), batches, token counting, model
listing and the managed-agents calls the hook checks; Bedrock's
``/model/<id>/invoke`` (and its AWS event-stream variant) and Vertex's
``...:rawPredict`` / ``:streamRawPredict``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from typing import Any

from ._fake_server import FakeServer, Reply

_BEDROCK = re.compile(r"/model/(?P<model>[^/]+)/(?P<action>invoke(?:-with-response-stream)?)")
_VERTEX = re.compile(r".*/publishers/anthropic/models/(?P<model>[^/:]+):(?P<action>\w+)")


def message(model: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": dict(USAGE),
    }


#: what every message reports it used: input without the cached tokens, as Anthropic counts.
USAGE = {
    "input_tokens": 3,
    "output_tokens": 9,
    "cache_read_input_tokens": 20,
    "cache_creation_input_tokens": 5,
}
#: a request for this model is refused with HTTP 400.
FAILING_MODEL = "fail"


def message_events(model: str) -> list[dict[str, Any]]:
    start = {**message(model), "content": [], "stop_reason": None}
    start["usage"] = {**USAGE, "output_tokens": 1}
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "h"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "i"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": USAGE["output_tokens"]},
        },
        {"type": "message_stop"},
    ]


def _sse(events: list[dict[str, Any]]) -> list[str]:
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]


def _aws_event(payload: dict[str, Any]) -> bytes:
    """One AWS event-stream frame carrying a Bedrock ``chunk`` event."""
    body = json.dumps({"bytes": base64.b64encode(json.dumps(payload).encode()).decode()}).encode()
    headers = b""
    for name, value in (
        (":event-type", "chunk"),
        (":message-type", "event"),
        (":content-type", "application/json"),
    ):
        headers += bytes([len(name)]) + name.encode() + b"\x07"
        headers += struct.pack(">H", len(value)) + value.encode()
    prelude = struct.pack(">II", 16 + len(headers) + len(body), len(headers))
    frame = prelude + struct.pack(">I", binascii.crc32(prelude)) + headers + body
    return frame + struct.pack(">I", binascii.crc32(frame))


_BATCH = {
    "id": "msgbatch_1",
    "type": "message_batch",
    "processing_status": "in_progress",
    "request_counts": {"processing": 1, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
    "created_at": "2025-01-01T00:00:00Z",
    "expires_at": "2025-01-02T00:00:00Z",
    "ended_at": None,
    "archived_at": None,
    "cancel_initiated_at": None,
    "results_url": None,
}


_MODEL = {
    "type": "model",
    "id": "claude-sonnet-4-5",
    "display_name": "Claude",
    "created_at": "2025-01-01T00:00:00Z",
}
_MODELS = {"data": [_MODEL], "has_more": False, "first_id": "a", "last_id": "a"}
_NOT_FOUND = {"type": "error", "error": {"type": "not_found_error"}}

# The API's other POST endpoints the hook lets through, and their fixed answers.
_FIXED = {
    "/v1/messages/batches": _BATCH,
    "/v1/messages/count_tokens": {"input_tokens": 3},
    "/v1/dreams": {"id": "dream_1", "type": "dream", "status": "pending"},
}


def _messages(model: str, stream: bool) -> Reply:
    return Reply.sse(_sse(message_events(model))) if stream else Reply.json(message(model))


def _bedrock(model: str, action: str) -> Reply:
    """``invoke`` answers JSON; ``invoke-with-response-stream`` answers AWS event-stream frames."""
    if action == "invoke":
        return Reply.json(message(model))
    frames = b"".join(_aws_event(e) for e in message_events(model))
    return Reply(200, "application/vnd.amazon.eventstream", frames)


def _post(path: str, body: dict[str, Any]) -> Reply:
    bedrock, vertex = _BEDROCK.fullmatch(path), _VERTEX.fullmatch(path)
    if bedrock:
        return _bedrock(bedrock["model"], bedrock["action"])
    if vertex and vertex["action"] in ("rawPredict", "streamRawPredict"):
        return _messages(vertex["model"], bool(body.get("stream")))
    if path == "/v1/messages" and body.get("model") == FAILING_MODEL:
        return Reply.json({"type": "error", "error": {"type": "invalid_request_error"}}, 400)
    if path == "/v1/messages":
        named = body.get("model")
        return _messages(named if isinstance(named, str) else "claude", bool(body.get("stream")))
    if path.startswith("/v1/sessions/") and path.endswith("/events"):
        return Reply.json({"data": []})
    return Reply.json(_FIXED[path]) if path in _FIXED else Reply.json(_NOT_FOUND, 404)


class FakeAnthropic(FakeServer):
    """``with FakeAnthropic() as api: Anthropic(base_url=api.base_url, api_key="k")``."""

    def answer(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        if method == "POST":
            return _post(path, body)
        return Reply.json(_MODELS) if path == "/v1/models" else Reply.json(_NOT_FOUND, 404)
