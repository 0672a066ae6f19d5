"""A local Ollama server for the real ``ollama`` SDK, counting the requests it receives."""

from __future__ import annotations

from typing import Any, Optional

from ._fake_server import FakeServer, Reply

CREATED = "2025-01-01T00:00:00Z"
MISSING = "missing-model"  # a model the server does not have: 404, as Ollama answers


def _final(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": CREATED,
        "done": True,
        "done_reason": "stop",
        "total_duration": 1000,
        "prompt_eval_count": 26,
        "eval_count": 8,
    }


def _chat(model: str, text: str, done: bool) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    if done:
        return {**_final(model), "message": message}
    return {"model": model, "created_at": CREATED, "message": message, "done": False}


def _generate(model: str, text: str, done: bool) -> dict[str, Any]:
    if done:
        return {**_final(model), "response": text}
    return {"model": model, "created_at": CREATED, "response": text, "done": False}


def _systemone(model: str, body: dict[str, Any]) -> dict[str, Any]:
    answers = {name: {"type": "noul", "noul": 0.75} for name in body.get("questions") or {}}
    return {"model": model, "answers": answers, "usage": {"input_tokens": 3, "output_tokens": 1}}


def _answer(path: str, model: str, body: dict[str, Any]) -> Optional[dict[str, Any]]:
    if path == "/api/chat":
        return _chat(model, "hi", True)
    if path == "/api/generate":
        return _generate(model, "hi", True)
    if path == "/api/embed":
        return {"model": model, "embeddings": [[0.1, 0.2]], "prompt_eval_count": 4}
    if path == "/api/embeddings":
        return {"embedding": [0.1, 0.2]}
    if path == "/v1/systemone":
        return _systemone(model, body)
    if path == "/api/show":
        return {"modelfile": "FROM x", "template": "{{ .Prompt }}", "model_info": {}}
    if path in ("/api/tags", "/api/ps"):
        return {"models": []}
    return None


_JSON = "application/json; charset=utf-8"


class FakeOllama(FakeServer):
    """``with FakeOllama() as api: ollama.Client(host=api.base_url)``.

    Chat and generate stream NDJSON, one chunked line per message, when the
    body says ``"stream": true`` (the SDK sends it either way).
    """

    def answer(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        model = body.get("model")
        model = model if isinstance(model, str) else ""
        if model == MISSING:
            return Reply.json({"error": f"model '{model}' not found"}, 404, _JSON)
        if body.get("stream") is True and path in ("/api/chat", "/api/generate"):
            piece = _chat if path == "/api/chat" else _generate
            return Reply.ndjson([piece(model, "h", False), piece(model, "i", True)])
        answer = _answer(path, model, body)
        if answer is None:
            return Reply.json({"error": "404 page not found"}, 404, _JSON)
        return Reply.json(answer, 200, _JSON)
