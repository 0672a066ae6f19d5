"""A local Vertex AI prediction service for the real ``vertexai`` SDK's REST transport.

``vertexai.init(api_transport="rest", api_endpoint=api.origin, ...)`` points the
SDK here (the ``http://`` scheme in the endpoint keeps it off TLS, for the
``requests`` transport and the ``aiohttp`` one alike). The REST transport
sends JSON and reads a server stream as one JSON array, which arrives here in
chunks, element by element, as the real service sends it.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from ._fake_server import FakeServer, Reply

_JSON = "application/json; charset=UTF-8"
#: a request for this model is refused with HTTP 400, as an invalid argument is.
FAILING_MODEL = "fail"


def _candidate(text: str, finish: Optional[str]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
    if finish:
        candidate["finishReason"] = finish
    return candidate


def _usage() -> dict[str, Any]:
    return {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}


def _model_of(path: str) -> str:
    """``gemini-1.5-pro`` from ``/v1/projects/p/.../models/gemini-1.5-pro:generateContent``."""
    return path.rsplit(":", 1)[0].rsplit("/", 1)[-1]


def _generated(model: str) -> dict[str, Any]:
    return {
        "candidates": [_candidate("hi", "STOP")],
        "usageMetadata": _usage(),
        "modelVersion": model,
    }


def _streamed(model: str) -> tuple[bytes, ...]:
    """A streamed answer as the REST transport reads it: a JSON array, one chunk per element."""
    elements = [
        {"candidates": [_candidate("h", None)], "modelVersion": model},
        {"candidates": [_candidate("i", "STOP")], "usageMetadata": _usage(), "modelVersion": model},
    ]
    encoded = [json.dumps(element).encode() for element in elements]
    return (b"[" + encoded[0], *(b"," + element for element in encoded[1:]), b"]")


class FakeVertexAI(FakeServer):
    """``with FakeVertexAI() as api: vertexai.init(api_endpoint=api.origin, ...)``.

    Answers ``:generateContent``, ``:streamGenerateContent`` and the free
    ``:countTokens`` and ``:computeTokens`` under ``/v1`` and ``/v1beta1`` (the
    preview classes' API); anything else is a 404 in Google's error shape.
    """

    def answer(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        verb = path.rsplit(":", 1)[-1] if ":" in path else ""
        model = _model_of(path)
        if method != "POST":
            verb = ""
        if model == FAILING_MODEL and verb in ("generateContent", "streamGenerateContent"):
            error = {"code": 400, "message": "invalid argument", "status": "INVALID_ARGUMENT"}
            return Reply.json({"error": error}, 400, _JSON)
        if verb == "generateContent":
            return Reply.json(_generated(model), 200, _JSON)
        if verb == "streamGenerateContent":
            return Reply(200, _JSON, chunks=_streamed(model))
        if verb == "countTokens":
            return Reply.json({"totalTokens": 3, "totalBillableCharacters": 5}, 200, _JSON)
        if verb == "computeTokens":
            return Reply.json({"tokensInfo": []}, 200, _JSON)
        error = {"code": 404, "message": f"{method} {path} not found", "status": "NOT_FOUND"}
        return Reply.json({"error": error}, 404, _JSON)
