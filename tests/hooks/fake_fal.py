"""A local fal.ai for the real ``fal-client`` SDK, counting the requests it receives.

fal-client builds its URLs from module constants (``https://`` plus a host
read from the environment at import), so the tables point
``RUN_URL_FORMAT`` at :attr:`FakeFal.run_url` and ``QUEUE_URL_FORMAT`` at
:attr:`FakeFal.queue_url` for the duration of a client (see
:func:`pointed_at`). The run endpoint answers at once (server-sent events
under ``/stream``); the queue answers a submission with the URLs of its
request, whose status is always ``COMPLETED``, so ``subscribe`` finishes
after one poll.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._fake_server import FakeServer, Reply

REQUEST_ID = "req-1"
RESULT = {"images": [{"url": "https://example.com/image.png", "width": 8, "height": 8}], "seed": 1}


class FakeFal(FakeServer):
    """``with FakeFal() as api, pointed_at(api): fal_client.SyncClient(key="x").run(...)``."""

    @property
    def run_url(self) -> str:
        return f"{self.origin}/run/"

    @property
    def queue_url(self) -> str:
        return f"{self.origin}/queue/"

    @property
    def rest_url(self) -> str:
        return f"{self.origin}/rest"

    @property
    def realtime_url(self) -> str:
        return f"ws://127.0.0.1:{self.origin.rsplit(':', 1)[1]}/realtime/"

    def answer(self, method: str, path: str, body: dict[str, Any]) -> Reply:
        if path.startswith("/run/"):
            if path.endswith("/stream"):
                events = [{"partial": True}, {**RESULT, "partial": False}]
                return Reply.sse(f"data: {json.dumps(event)}\n\n" for event in events)
            return Reply.json(RESULT)
        if path.startswith("/queue/"):
            return self._queue(method, path[len("/queue/") :])
        if path == "/rest/tokens/":
            return Reply.json("a-realtime-token")
        return Reply.json({"detail": "Not Found"}, 404)

    def _queue(self, method: str, rest: str) -> Reply:
        application, marker, request = rest.partition("/requests/")
        if not marker:  # a submission
            base = f"{self.queue_url}{application}/requests/{REQUEST_ID}"
            return Reply.json(
                {
                    "request_id": REQUEST_ID,
                    "response_url": base,
                    "status_url": base + "/status",
                    "cancel_url": base + "/cancel",
                    "queue_position": 0,
                }
            )
        if request.endswith("/status"):
            return Reply.json({"status": "COMPLETED", "logs": [], "metrics": {}})
        return Reply.json(RESULT)


@contextmanager
def pointed_at(api: FakeFal) -> Iterator[None]:
    """fal-client's URL constants pointed at the fake, and put back after.

    This is setup of the SDK under test: fal-client reads its hosts once, at
    import, and always prefixes them with ``https://``.
    """
    from fal_client import client as module

    names = {
        "RUN_URL_FORMAT": api.run_url,
        "QUEUE_URL_FORMAT": api.queue_url,
        "REST_URL": api.rest_url,
        "REALTIME_URL_FORMAT": api.realtime_url,
    }
    saved = {name: getattr(module, name) for name in names if hasattr(module, name)}
    for name in saved:
        setattr(module, name, names[name])
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)
