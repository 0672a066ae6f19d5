"""A local Ollama server for the real ``ollama`` SDK, counting the requests it receives."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

CREATED = "2025-01-01T00:00:00Z"
MISSING = "missing-model"  # a model the server does not have: 404, as Ollama answers


def _final(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": CREATED,
        "done": True,
        "done_reason": "stop",
        "total_duration": 1000,
        "prompt_eval_count": 3,
        "eval_count": 1,
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
        return {"model": model, "embeddings": [[0.1, 0.2]], "prompt_eval_count": 1}
    if path == "/api/embeddings":
        return {"embedding": [0.1, 0.2]}
    if path == "/v1/systemone":
        return _systemone(model, body)
    if path == "/api/show":
        return {"modelfile": "FROM x", "template": "{{ .Prompt }}", "model_info": {}}
    if path in ("/api/tags", "/api/ps"):
        return {"models": []}
    return None


class FakeOllama:
    """``with FakeOllama() as api: ollama.Client(host=api.base_url)``.

    Chat and generate stream NDJSON, one chunked line per message, when the
    body says ``"stream": true`` (the SDK sends it either way).
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return [request["path"] for request in self.requests]

    def __enter__(self) -> FakeOllama:
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
                        {"method": self.command, "path": self.path, "body": body, "raw": raw}
                    )
                return body if isinstance(body, dict) else {}

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, lines: list[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/x-ndjson")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for line in lines:
                    data = json.dumps(line).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.write(b"0\r\n\r\n")

            def _answer(self, body: dict[str, Any]) -> None:
                path = self.path.split("?", 1)[0]
                model = body.get("model")
                model = model if isinstance(model, str) else ""
                if model == MISSING:
                    self._send(404, {"error": f"model '{model}' not found"})
                    return
                if body.get("stream") is True and path in ("/api/chat", "/api/generate"):
                    piece = _chat if path == "/api/chat" else _generate
                    self._stream([piece(model, "h", False), piece(model, "i", True)])
                    return
                answer = _answer(path, model, body)
                if answer is None:
                    self._send(404, {"error": "404 page not found"})
                    return
                self._send(200, answer)

            def do_GET(self) -> None:
                self._answer(self._record())

            def do_POST(self) -> None:
                self._answer(self._record())

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
