"""A local Perplexity API for the real ``perplexityai`` SDK, counting the requests it receives.

Bodies are shaped as the SDK's response models read them; a body that asks
for ``"stream": true`` gets server-sent events ending in ``data: [DONE]``.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from ._fake_server import FakeServer, Reply

CREATED = 1735689600
USAGE = {
    "prompt_tokens": 3,
    "completion_tokens": 1,
    "total_tokens": 4,
    "cost": {"input_tokens_cost": 0.0, "output_tokens_cost": 0.0, "total_cost": 0.0},
}


def _completion(model: str, text: str, final: bool) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    choice = {
        "index": 0,
        "message": message,
        "delta": message,
        "finish_reason": "stop" if final else None,
    }
    return {
        "id": "cmpl-1",
        "model": model,
        "created": CREATED,
        "object": "chat.completion",
        "choices": [choice],
        "usage": USAGE if final else None,
    }


def _response(model: str) -> dict[str, Any]:
    message = {
        "type": "message",
        "id": "msg-1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "hi", "annotations": []}],
    }
    return {
        "id": "resp-1",
        "object": "response",
        "created_at": CREATED,
        "model": model,
        "status": "completed",
        "output": [message],
        "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
    }


def _response_events(model: str) -> list[dict[str, Any]]:
    delta = {
        "type": "response.output_text.delta",
        "sequence_number": 1,
        "item_id": "msg-1",
        "output_index": 0,
        "content_index": 0,
        "delta": "hi",
    }
    done = {"type": "response.completed", "sequence_number": 2, "response": _response(model)}
    return [delta, done]


def _embeddings(model: str) -> dict[str, Any]:
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": 0, "embedding": "AAAA"}],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


def _answer(path: str, model: str, body: dict[str, Any]) -> Optional[dict[str, Any]]:
    if path == "/chat/completions":
        return _completion(model, "hi", True)
    if path in _RESPONSES:
        return _response(model)
    if path == "/async/chat/completions":
        request = body.get("request")
        inner = request.get("model") if isinstance(request, dict) else None
        return {
            "id": "async-1",
            "model": inner if isinstance(inner, str) else "",
            "created_at": CREATED,
            "status": "CREATED",
        }
    if path in ("/v1/embeddings", "/v1/contextualizedembeddings"):
        return _embeddings(model)
    if path == "/search":
        page = {"title": "t", "url": "https://example.com", "snippet": "s"}
        return {"id": "search-1", "results": [page]}
    if path.startswith("/async/chat/completions/"):
        completed = {"status": "COMPLETED", "completed_at": CREATED}
        return {"id": path.rsplit("/", 1)[1], "model": "", "created_at": CREATED, **completed}
    if path == "/v1/browser/sessions":
        return {"session_id": "session-1", "status": "running"}
    return None


class FakePerplexity(FakeServer):
    """``with FakePerplexity() as api: Perplexity(api_key="x", base_url=api.base_url)``."""

    def answer(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        model = body.get("model")
        model = model if isinstance(model, str) else ""
        if body.get("stream") is True and path == "/chat/completions":
            chunks = [_completion(model, "h", False), _completion(model, "i", True)]
            return Reply.sse([f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + _DONE)
        if body.get("stream") is True and path in _RESPONSES:
            # Data-only frames (the type rides in the JSON): older SDKs skip named events.
            events = _response_events(model)
            return Reply.sse([f"data: {json.dumps(event)}\n\n" for event in events] + _DONE)
        answer = _answer(path, model, body)
        if answer is None:
            return Reply.json({"error": {"message": "not found"}}, 404)
        return Reply.json(answer)


_DONE = ["data: [DONE]\n\n"]
_RESPONSES = ("/v1/responses", "/v2/responses")  # v2 for SDK releases before 0.30
