"""A local OpenAI API: enough of each endpoint for the real SDK, and a request counter."""

from __future__ import annotations

import json
import time
from typing import Any

from ._fake_server import FakeServer, Reply


def _chat(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {"role": "assistant", "content": "hi", "refusal": None},
            }
        ],
        "usage": CHAT_USAGE,
    }


#: what every chat completion reports it used, as OpenAI spells it.
CHAT_USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
#: a request for this model is refused with HTTP 400, as a bad request is.
FAILING_MODEL = "fail"


def _chat_chunks(model: str, with_usage: bool = False) -> list[dict[str, Any]]:
    """The chunks of a streamed "hi"; with a final usage-only chunk when the request asked."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    usage = [{**base, "choices": [], "usage": CHAT_USAGE}] if with_usage else []
    return [
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": "h"}, "finish_reason": None}
            ],
        },
        {**base, "choices": [{"index": 0, "delta": {"content": "i"}, "finish_reason": "stop"}]},
        *usage,
    ]


def _response(model: str) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": model,
        "status": "completed",
        "output": [
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "hi", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 11,
            "output_tokens": 6,
            "total_tokens": 17,
            "input_tokens_details": {"cached_tokens": 2},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def _response_events(model: str) -> list[dict[str, Any]]:
    done = _response(model)
    created = {**done, "status": "in_progress", "output": []}
    item = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    part = {"type": "output_text", "text": "", "annotations": []}
    return [
        {"type": "response.created", "sequence_number": 0, "response": created},
        {
            "type": "response.output_item.added",
            "sequence_number": 1,
            "output_index": 0,
            "item": item,
        },
        {
            "type": "response.content_part.added",
            "sequence_number": 2,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "part": part,
        },
        {
            "type": "response.output_text.delta",
            "sequence_number": 3,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "hi",
            "logprobs": [],
        },
        {"type": "response.completed", "sequence_number": 4, "response": done},
    ]


def _model(body: dict[str, Any]) -> str:
    named = body.get("model")
    return named if isinstance(named, str) else "gpt-4o"


def _body_for(path: str, model: str) -> Any:
    if path.endswith("/chat/completions"):
        return _chat(model)
    if path.endswith("/completions"):
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "text": "hi", "finish_reason": "stop", "logprobs": None}],
        }
    if path.endswith("/embeddings"):
        return {
            "object": "list",
            "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": 7, "total_tokens": 7},
        }
    if path.endswith("/responses"):
        return _response(model)
    if "/images/" in path:
        return {"created": 1, "data": [{"url": "http://127.0.0.1/image.png"}]}
    if path.endswith("/audio/transcriptions") or path.endswith("/audio/translations"):
        return {"text": "hello"}
    if path.endswith("/moderations"):
        return {"id": "modr-1", "model": "omni-moderation-latest", "results": []}
    if path.endswith("/batches"):
        return {
            "id": "batch_1",
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": "file-1",
            "completion_window": "24h",
            "status": "validating",
            "created_at": 1,
        }
    return {}


_MODELS = {
    "object": "list",
    "data": [{"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "x"}],
}


def _stream(path: str, model: str, with_usage: bool) -> Reply:
    """Chat chunks or Responses events as SSE, closed by OpenAI's ``[DONE]`` sentinel."""
    chat = path.endswith("/chat/completions")
    events = _chat_chunks(model, with_usage) if chat else _response_events(model)
    return Reply.sse([*(f"data: {json.dumps(e)}\n\n" for e in events), "data: [DONE]\n\n"])


class FakeOpenAI(FakeServer):
    """``with FakeOpenAI() as api: OpenAI(base_url=api.base_url, api_key="sk-test")``."""

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    @property
    def azure_endpoint(self) -> str:
        return self.origin

    def answer(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        if method == "GET":
            return Reply.json(_MODELS) if path.endswith("/models") else Reply.json({}, 404)
        if path.endswith("/audio/speech"):
            return Reply(200, "audio/mpeg", b"ID3fake-mp3")
        if body.get("model") == FAILING_MODEL:
            error = {"message": "bad request", "type": "invalid_request_error", "code": None}
            return Reply.json({"error": error}, 400)
        if body.get("stream"):
            options = body.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            return _stream(path, _model(body), with_usage)
        return Reply.json(_body_for(path, _model(body)))
