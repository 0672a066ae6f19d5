"""A local Gemini API (Developer and Vertex AI) for the real google-genai SDK, counting requests."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def _candidate(text: str, finish: Optional[str]) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "index": 0,
    }
    if finish:
        candidate["finishReason"] = finish
    return candidate


def _generated(model: str) -> dict[str, Any]:
    return {
        "candidates": [_candidate("hi", "STOP")],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4},
        "modelVersion": model,
        "responseId": "resp-1",
    }


def _chunks(model: str) -> list[dict[str, Any]]:
    return [
        {"candidates": [_candidate("h", None)], "modelVersion": model},
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


class FakeGemini:
    """``with FakeGemini() as api: genai.Client(api_key="k", http_options={"base_url": ...})``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def __enter__(self) -> FakeGemini:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each keep-alive reply waits ~40 ms

            def _record(self) -> dict[str, Any]:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"_raw": raw[:200].decode("latin-1")}
                with fake._lock:
                    fake.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "body": body,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                        }
                    )
                return body if isinstance(body, dict) else {}

            def _send(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._record()
                path = self.path.split("?", 1)[0]
                model = {"name": path.lstrip("/").split("/", 1)[-1], "displayName": "fake"}
                self._send(200, json.dumps(model).encode(), "application/json")

            def do_POST(self) -> None:
                body = self._record()
                path = self.path.split("?", 1)[0]
                if "/missing/" in path:
                    error = {"error": {"code": 404, "message": "no", "status": "NOT_FOUND"}}
                    self._send(404, json.dumps(error).encode(), "application/json")
                    return
                model = _model_of(path)
                if path.endswith(":streamGenerateContent"):
                    lines = "".join(f"data: {json.dumps(c)}\r\n\r\n" for c in _chunks(model))
                    self._send(200, lines.encode(), "text/event-stream")
                    return
                payload = json.dumps(_body_for(path, model, body)).encode()
                self._send(200, payload, "application/json")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
