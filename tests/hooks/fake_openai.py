"""A local OpenAI API: enough of each endpoint for the real SDK, and a request counter."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional


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
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def _chat_chunks(model: str) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    return [
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": "h"}, "finish_reason": None}
            ],
        },
        {**base, "choices": [{"index": 0, "delta": {"content": "i"}, "finish_reason": "stop"}]},
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
            "input_tokens": 3,
            "output_tokens": 1,
            "total_tokens": 4,
            "input_tokens_details": {"cached_tokens": 0},
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


def _body_for(path: str, body: dict[str, Any]) -> Any:
    model = body.get("model") if isinstance(body.get("model"), str) else "gpt-4o"
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
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
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


class FakeOpenAI:
    """``with FakeOpenAI() as api: OpenAI(base_url=api.base_url, api_key="sk-test")``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def azure_endpoint(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def __enter__(self) -> FakeOpenAI:
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
                            "headers": dict(self.headers),
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
                if self.path.endswith("/models"):
                    data = {
                        "object": "list",
                        "data": [
                            {"id": "gpt-4o", "object": "model", "created": 1, "owned_by": "x"}
                        ],
                    }
                    self._send(200, json.dumps(data).encode(), "application/json")
                else:
                    self._send(404, b"{}", "application/json")

            def do_POST(self) -> None:
                body = self._record()
                path = self.path.split("?", 1)[0]
                model = body.get("model") if isinstance(body.get("model"), str) else "gpt-4o"
                if path.endswith("/audio/speech"):
                    self._send(200, b"ID3fake-mp3", "audio/mpeg")
                    return
                if body.get("stream"):
                    events = (
                        _chat_chunks(model)
                        if path.endswith("/chat/completions")
                        else _response_events(model)
                    )
                    lines = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
                    self._send(200, (lines + "data: [DONE]\n\n").encode(), "text/event-stream")
                    return
                self._send(200, json.dumps(_body_for(path, body)).encode(), "application/json")

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
