"""The scaffolding the fake provider APIs share: a local HTTP server that records every request.

A fake subclasses ``FakeServer`` and says only how to answer a recorded
request (``answer``, returning a ``Reply``); the server, its thread, the
request log and the clean shutdown live here once, so each fake reads as its
provider's wire format and nothing else.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, TypeVar

_Fake = TypeVar("_Fake", bound="FakeServer")


@dataclass(frozen=True)
class Reply:
    """One answer: whole (``body``, sent with a content-length) or streamed (``chunks``).

    Chunked transfer encoding is what makes an SDK read a stream line by line,
    as it does against the real provider.
    """

    status: int
    content_type: str
    body: bytes = b""
    chunks: Optional[tuple[bytes, ...]] = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, data: Any, status: int = 200, content_type: str = "application/json") -> Reply:
        return cls(status, content_type, json.dumps(data).encode())

    @classmethod
    def sse(cls, frames: Iterable[str]) -> Reply:
        """Server-sent events, each frame already spelled as its provider spells it."""
        return cls(200, "text/event-stream", "".join(frames).encode())

    @classmethod
    def ndjson(cls, lines: Iterable[Any]) -> Reply:
        """One JSON object per line, one chunk per line, as a streaming Ollama sends them."""
        chunks = tuple(json.dumps(line).encode() + b"\n" for line in lines)
        return cls(200, "application/x-ndjson", chunks=chunks)


class FakeServer(ABC):
    """``with Fake() as api: ...``: serves on 127.0.0.1, an OS-chosen port, until the block ends.

    ``requests`` holds one entry a request, oldest first: ``method``, ``path``
    (with its query), ``body`` (parsed JSON, or ``{"_raw": ...}``), ``headers``
    (names lower-cased, as HTTP compares them) and ``raw`` (the body's bytes).
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: Optional[_Server] = None

    @abstractmethod
    def answer(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        """The reply to a request already recorded; ``path`` is without its query."""

    @property
    def origin(self) -> str:
        assert self._httpd is not None, "the fake serves only inside its with block"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.origin

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return [request["path"] for request in self.requests]

    def reset(self) -> None:
        """Forget the requests seen so far (one server, many tests)."""
        with self._lock:
            self.requests.clear()

    def record(self, method: str, path: str, headers: Message, raw: bytes) -> dict[str, Any]:
        """Log the request; its body as a dict for ``answer`` (``{}`` when it is not one)."""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw[:200].decode("latin-1")}
        entry = {
            "method": method,
            "path": path,
            "body": body,
            "headers": {name.lower(): value for name, value in headers.items()},
            "raw": raw,
        }
        with self._lock:
            self.requests.append(entry)
        return body if isinstance(body, dict) else {}

    def __enter__(self: _Fake) -> _Fake:
        self._httpd = _Server(self)
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._httpd is not None:
            self._httpd.stop()


class _Server(ThreadingHTTPServer):
    """Tracks open connections so ``stop`` can close them all before it returns.

    An SDK client kept alive past the fake would otherwise leave a handler
    blocked on its socket, and a socket left to the garbage collector raises
    a ResourceWarning, which this suite turns into an error.
    """

    daemon_threads = True  # a fake whose with block never ended cannot hold the interpreter

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._changed = threading.Condition()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._changed:  # before the handler's thread starts, so stop() never misses it
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self._changed:
            self._open.discard(request)
            self._changed.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-reply (a stream closed early) is no error of the fake's."""
        if isinstance(
            sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
        ):
            return
        super().handle_error(request, client_address)

    def stop(self) -> None:
        """Stop accepting, wake each keep-alive handler with EOF, wait for its socket to close."""
        self.shutdown()
        with self._changed:
            for connection in self._open:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed by its handler
                    pass
            self._changed.wait_for(lambda: not self._open, timeout=5)
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True  # else each keep-alive reply waits ~40 ms

    def do_GET(self) -> None:
        self._reply()

    def do_POST(self) -> None:
        self._reply()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a test run's output is for its failures."""

    def _reply(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        body = server.fake.record(self.command, self.path, self.headers, self._read())
        reply = server.fake.answer(self.command, self.path.split("?", 1)[0], body)
        self.send_response(reply.status)
        self.send_header("content-type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.chunks is None:
            self._send_whole(reply.body)
        else:
            self._send_chunked(reply.chunks)

    def _read(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_whole(self, body: bytes) -> None:
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(self, chunks: tuple[bytes, ...]) -> None:
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")
