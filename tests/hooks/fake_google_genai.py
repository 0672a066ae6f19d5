"""A local Gemini API (Developer and Vertex AI) for the real google-genai SDK, counting requests."""

from __future__ import annotations

import base64
import json
from typing import Any, Optional

from ._fake_server import FakeServer, Reply

_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def _candidate(text: str, finish: Optional[str]) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "index": 0,
    }
    if finish:
        candidate["finishReason"] = finish
    return candidate


#: what every generation reports it used, as Gemini spells it (the prompt includes the cache).
USAGE = {
    "promptTokenCount": 30,
    "candidatesTokenCount": 7,
    "cachedContentTokenCount": 10,
    "thoughtsTokenCount": 2,
    "totalTokenCount": 39,
}
#: a request for this model is refused with HTTP 400.
FAILING_MODEL = "fail"


def _generated(model: str) -> dict[str, Any]:
    return {
        "candidates": [_candidate("hi", "STOP")],
        "usageMetadata": dict(USAGE),
        "modelVersion": model,
        "responseId": "resp-1",
    }


def _chunks(model: str) -> list[dict[str, Any]]:
    return [
        {
            "candidates": [_candidate("h", None)],
            "usageMetadata": {"promptTokenCount": 30, "totalTokenCount": 30},
            "modelVersion": model,
        },
        {
            **_generated(model),
            "candidates": [_candidate("i", "STOP")],
        },
    ]


def _calls_a_function(body: dict[str, Any]) -> Optional[str]:
    """The function to call when the request offers tools and has no function's answer yet."""
    declared = [
        declaration.get("name")
        for tool in body.get("tools") or []
        for declaration in tool.get("functionDeclarations") or []
    ]
    answered = any(
        "functionResponse" in part
        for content in body.get("contents") or []
        for part in content.get("parts") or []
    )
    return None if answered or not declared else declared[0]


def _body_for(path: str, model: str, body: dict[str, Any]) -> dict[str, Any]:
    method = path.rsplit(":", 1)[-1] if ":" in path else ""
    if method == "generateContent":
        function = _calls_a_function(body)
        if function:  # automatic function calling: the SDK calls it and asks again
            call = {"functionCall": {"name": function, "args": {}}}
            content = {"role": "model", "parts": [call]}
            return {**_generated(model), "candidates": [{"content": content, "index": 0}]}
        return _generated(model)
    if method == "batchEmbedContents":
        return {"embeddings": [{"values": [0.1, 0.2]}]}
    if method == "embedContent":
        return {"embedding": {"values": [0.1, 0.2]}}
    if method == "predict":  # images, and Vertex's older embedding models
        return {
            "predictions": [
                {
                    "bytesBase64Encoded": _PNG,
                    "mimeType": "image/png",
                    "embeddings": {"values": [0.1, 0.2]},
                }
            ]
        }
    if method == "predictLongRunning":
        resource = path.split(":", 1)[0].lstrip("/").split("/", 1)[-1]  # without /v1beta1
        return {"name": f"{resource}/operations/op-1"}
    if method == "countTokens":
        return {"totalTokens": 3}
    return {}


def _model_of(path: str) -> str:
    """``.../models/gemini-2.5-flash:generateContent`` -> ``gemini-2.5-flash``."""
    resource = path.split(":", 1)[0]
    return resource.rsplit("/models/", 1)[-1] if "/models/" in resource else resource


_NOT_FOUND = {"error": {"code": 404, "message": "no", "status": "NOT_FOUND"}}


def _post(path: str, body: dict[str, Any]) -> Reply:
    if "/missing/" in path:
        return Reply.json(_NOT_FOUND, 404)
    model = _model_of(path)
    if model == FAILING_MODEL:
        return Reply.json({"error": {"code": 400, "message": "bad", "status": "INVALID"}}, 400)
    if path.endswith(":streamGenerateContent"):
        return Reply.sse(f"data: {json.dumps(c)}\r\n\r\n" for c in _chunks(model))
    return Reply.json(_body_for(path, model, body))


class FakeGemini(FakeServer):
    """``with FakeGemini() as api: genai.Client(api_key="k", http_options={"base_url": ...})``."""

    @property
    def base_url(self) -> str:
        return f"{self.origin}/"

    def answer(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        if method == "POST":
            return _post(path, body)
        return Reply.json({"name": path.lstrip("/").split("/", 1)[-1], "displayName": "fake"})
