"""A local stand-in for the Anthropic Messages API: answers ``/v1/messages`` and counts requests.

Enough for the real ``anthropic`` SDK to build its ``Message`` (whole, or
streamed as server-sent events when the request says ``stream``).
"""

from __future__ import annotations

import json
from typing import Any

from _fake_api import FakeAPI, Reply

_USAGE = {"input_tokens": 12, "output_tokens": 7}


class FakeAnthropic(FakeAPI):
    """``with FakeAnthropic() as api: Anthropic(base_url=api.base_url, api_key="sk-ant-test")``."""

    def answer(self, reply: Reply, path: str, body: dict[str, Any]) -> None:
        model = body.get("model", "claude")
        if body.get("stream"):
            reply.events(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in _events(model))
        else:
            reply.json(_message(model, "Hello from the fake API."))


def _message(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "msg_demo",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}] if text else [],
        "stop_reason": "end_turn" if text else None,
        "stop_sequence": None,
        "usage": dict(_USAGE),
    }


def _events(model: str) -> list[dict[str, Any]]:
    text = {"type": "text_delta", "text": "Hello from the fake API."}
    return [
        {"type": "message_start", "message": _message(model, "")},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": text},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": _USAGE["output_tokens"]},
        },
        {"type": "message_stop"},
    ]
