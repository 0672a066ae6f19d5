"""A local stand-in for the OpenAI API: answers chat completions and counts requests.

Enough of the wire format for the real ``openai`` SDK to parse its answers
(whole, or streamed as server-sent events when the request says ``stream``), so
the examples exercise the SDK's own request path without a network. LiteLLM's
``openai/...`` routes go through the openai SDK, so they land here too.
"""

from __future__ import annotations

import json
import time
from typing import Any

from _fake_api import FakeAPI, Reply


class FakeOpenAI(FakeAPI):
    """``with FakeOpenAI() as api: OpenAI(base_url=api.base_url, api_key="sk-test")``."""

    path_prefix = "/v1"

    def answer(self, reply: Reply, path: str, body: dict[str, Any]) -> None:
        model = body.get("model", "gpt-4o")
        if body.get("stream"):
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = _chunks(model, with_usage)
            reply.events([f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"])
        else:
            reply.json(_completion(model))


_USAGE = {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}


def _chunks(model: str, with_usage: bool) -> list[dict[str, Any]]:
    """A streamed reply, word by word, and the usage chunk when the request asked for it."""
    base = {"id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": model}
    base["created"] = int(time.time())
    words = ["Hello ", "from ", "the ", "fake ", "API."]
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
        for word in words
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if with_usage:
        chunks.append({**base, "choices": [], "usage": dict(_USAGE)})
    return chunks


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-demo",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hello from the fake API."},
            }
        ],
        "usage": dict(_USAGE),
    }
