"""A local Anthropic API (and its Bedrock and Vertex shapes) for the real SDK, counting requests.

Speaks enough of each endpoint for the SDK to build its own objects: messages
(JSON, and SSE when ``stream`` is set), batches, token counting, model
listing and the managed-agents calls the hook checks; Bedrock's
``/model/<id>/invoke`` (and its AWS event-stream variant) and Vertex's
``...:rawPredict`` / ``:streamRawPredict``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

_BEDROCK = re.compile(r"/model/(?P<model>[^/]+)/(?P<action>invoke(?:-with-response-stream)?)")
_VERTEX = re.compile(r".*/publishers/anthropic/models/(?P<model>[^/:]+):(?P<action>\w+)")


def message(model: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }


def message_events(model: str) -> list[dict[str, Any]]:
    start = {**message(model), "content": [], "stop_reason": None}
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "h"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "i"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 1},
        },
        {"type": "message_stop"},
    ]


def _sse(events: list[dict[str, Any]]) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def _aws_event(payload: dict[str, Any]) -> bytes:
    """One AWS event-stream frame carrying a Bedrock ``chunk`` event."""
    body = json.dumps({"bytes": base64.b64encode(json.dumps(payload).encode()).decode()}).encode()
    headers = b""
    for name, value in (
        (":event-type", "chunk"),
        (":message-type", "event"),
        (":content-type", "application/json"),
    ):
        headers += bytes([len(name)]) + name.encode() + b"\x07"
        headers += struct.pack(">H", len(value)) + value.encode()
    prelude = struct.pack(">II", 16 + len(headers) + len(body), len(headers))
    frame = prelude + struct.pack(">I", binascii.crc32(prelude)) + headers + body
    return frame + struct.pack(">I", binascii.crc32(frame))


_BATCH = {
    "id": "msgbatch_1",
    "type": "message_batch",
    "processing_status": "in_progress",
    "request_counts": {"processing": 1, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
    "created_at": "2025-01-01T00:00:00Z",
    "expires_at": "2025-01-02T00:00:00Z",
    "ended_at": None,
    "archived_at": None,
    "cancel_initiated_at": None,
    "results_url": None,
}


class FakeAnthropic:
    """``with FakeAnthropic() as api: Anthropic(base_url=api.base_url, api_key="k")``."""

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

    def reset(self) -> None:
        """Forget the requests seen so far (one server, many tests)."""
        with self._lock:
            self.requests.clear()

    def __enter__(self) -> FakeAnthropic:
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

            def _json(self, data: Any, status: int = 200) -> None:
                self._send(status, json.dumps(data).encode(), "application/json")

            def do_GET(self) -> None:
                self._record()
                if self.path.split("?", 1)[0] == "/v1/models":
                    model = {
                        "type": "model",
                        "id": "claude-sonnet-4-5",
                        "display_name": "Claude",
                        "created_at": "2025-01-01T00:00:00Z",
                    }
                    page = {"data": [model], "has_more": False, "first_id": "a", "last_id": "a"}
                    self._json(page)
                else:
                    self._json({"type": "error", "error": {"type": "not_found_error"}}, 404)

            def do_POST(self) -> None:
                body = self._record()
                path = self.path.split("?", 1)[0]
                named = body.get("model")
                model = named if isinstance(named, str) else "claude"
                bedrock, vertex = _BEDROCK.fullmatch(path), _VERTEX.fullmatch(path)
                if bedrock:
                    model = bedrock["model"]
                    if bedrock["action"] == "invoke":
                        self._json(message(model))
                    else:
                        frames = b"".join(_aws_event(e) for e in message_events(model))
                        self._send(200, frames, "application/vnd.amazon.eventstream")
                elif vertex and vertex["action"] in ("rawPredict", "streamRawPredict"):
                    model = vertex["model"]
                    if body.get("stream"):
                        self._send(200, _sse(message_events(model)), "text/event-stream")
                    else:
                        self._json(message(model))
                elif path == "/v1/messages":
                    if body.get("stream"):
                        self._send(200, _sse(message_events(model)), "text/event-stream")
                    else:
                        self._json(message(model))
                elif path == "/v1/messages/batches":
                    self._json(_BATCH)
                elif path == "/v1/messages/count_tokens":
                    self._json({"input_tokens": 3})
                elif path.startswith("/v1/sessions/") and path.endswith("/events"):
                    self._json({"data": []})
                elif path == "/v1/dreams":
                    self._json({"id": "dream_1", "type": "dream", "status": "pending"})
                else:
                    self._json({"type": "error", "error": {"type": "not_found_error"}}, 404)

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
