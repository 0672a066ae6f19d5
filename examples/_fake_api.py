"""What the fake provider APIs share: a threaded HTTP server on 127.0.0.1 that records requests.

A subclass says how to answer one POST (:meth:`FakeAPI.answer`); this class
binds a free port, serves on a daemon thread, keeps every request's path and
JSON body, and counts them, so an example can show that a refused call sent
nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, TypeVar

_Fake = TypeVar("_Fake", bound="FakeAPI")


class FakeAPI:
    """Subclass, define ``answer``; then ``with Fake() as api: ... api.base_url ...``."""

    #: appended to the server's origin in :attr:`base_url` (``/v1`` for OpenAI).
    path_prefix = ""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None

    def answer(self, reply: Reply, path: str, body: dict[str, Any]) -> None:
        """Answer one POST through ``reply``."""
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{self.path_prefix}"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def __enter__(self: _Fake) -> _Fake:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each keep-alive reply waits ~40 ms

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append({"path": self.path, "body": body})
                fake.answer(Reply(self), self.path, body)

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


class Reply:
    """How a fake answers: one JSON document, or a stream of server-sent events."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._handler = handler

    def json(self, document: Any) -> None:
        answer = json.dumps(document).encode()
        self._handler.send_response(200)
        self._handler.send_header("content-type", "application/json")
        self._handler.send_header("content-length", str(len(answer)))
        self._handler.end_headers()
        self._handler.wfile.write(answer)

    def events(self, lines: Iterable[str]) -> None:
        """Each of ``lines`` is one whole event (``data: ...\\n\\n``); the stream ends at close."""
        self._handler.close_connection = True
        self._handler.send_response(200)
        self._handler.send_header("content-type", "text/event-stream")
        self._handler.send_header("connection", "close")
        self._handler.end_headers()
        for line in lines:
            self._handler.wfile.write(line.encode())
        self._handler.wfile.flush()
