"""A real rules feed on localhost, for testing budget handling offline.

Mocking the HTTP client tests the mock; a budget breach only proves itself
through the same socket, headers and status codes the control plane uses. So
this module runs a small threaded HTTP server that speaks CONTRACT §1 and §2
(rules, ``ETag``/304, 204, 401, 404, the inspection reads) and breaks on
demand: error statuses with ``Retry-After``, hangs, TCP resets, garbage and
oversized bodies. It needs nothing beyond the standard library.

>>> from enforcement import Engine
>>> from enforcement.testing import RulesServer, make_rule
>>> with RulesServer() as server:  # doctest: +SKIP
...     server.set_rules([make_rule(1, "daily-cap", breached=True)])
...     engine = Engine(environ=server.env(REVENIUM_CACHE_DIR="off"))
...     ...  # engine.check(...) now raises BudgetExceededError
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import json
import socket
import socketserver
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping, Optional, Sequence, Union, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit

__all__ = [
    "Fault",
    "RecordedRequest",
    "RulesServer",
    "make_filter",
    "make_group_entry",
    "make_rule",
]

_RULES_PATH = "/v2/api/ai/enforcement-rules/"
_CHUNK = 64 * 1024
_JOIN_SECONDS = 2.0


# --------------------------------------------------------------------------- payload builders


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_end(day: datetime.date) -> str:
    # The control plane ends a window on its last nanosecond; readers must cope.
    return f"{day.isoformat()}T23:59:59.999999999Z"


def _window(period_type: str, now: datetime.datetime) -> tuple[str, str]:
    today = now.date()
    period = period_type.upper()
    if period == "WEEKLY":
        start = today - datetime.timedelta(days=today.weekday())
        last = start + datetime.timedelta(days=6)
    elif period == "MONTHLY":
        start = today.replace(day=1)
        following = (start + datetime.timedelta(days=32)).replace(day=1)
        last = following - datetime.timedelta(days=1)
    elif period == "YEARLY":
        start = today.replace(month=1, day=1)
        last = today.replace(month=12, day=31)
    else:
        start = last = today
    midnight = datetime.datetime(start.year, start.month, start.day)
    return _iso(midnight), _iso_end(last)


def _percent(current: Union[float, str], threshold: Union[float, str]) -> float:
    try:
        limit = float(threshold)
        return round(float(current) / limit * 100.0, 4) if limit else 0.0
    except (TypeError, ValueError):
        return 0.0


def make_rule(
    rule_id: Union[int, str] = 1,
    name: str = "daily-cap",
    *,
    breached: bool = False,
    threshold: Union[float, str] = 100.0,
    current_value: Union[float, str] = 0.0,
    action: Optional[str] = "BLOCK",
    shadow_mode: bool = False,
    filters: Optional[Sequence[Mapping[str, Any]]] = None,
    group_by: Optional[str] = None,
    group_breakdown: Optional[Sequence[Mapping[str, Any]]] = None,
    deny_message: Optional[str] = None,
    window_end: Union[str, float, None] = None,
    period_type: str = "DAILY",
    metric_type: str = "TOTAL_COST",
    now: Optional[datetime.datetime] = None,
    **extra: Any,
) -> dict[str, Any]:
    """One rule in wire format (camelCase), shaped like the control plane's.

    The window defaults to the current UTC period of ``period_type`` (DAILY:
    today, ending ``23:59:59.999999999Z``); ``now`` pins it. ``action=None``
    leaves ``action`` out. ``extra`` keys are merged in unchanged, last, so a
    test can add legacy or odd fields (``blocked=True``, ``threshold="1e2"``).

    >>> make_rule(7, "gpt-cap", breached=True, deny_message="Ask finance.")["denyMessage"]
    'Ask finance.'
    """
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    window_start, default_end = _window(period_type, moment)
    rule: dict[str, Any] = {
        "ruleId": rule_id,
        "teamId": 1,
        "name": name,
        "metricType": metric_type,
        "operatorType": "GREATER_THAN_OR_EQUAL_TO",
        "threshold": threshold,
        "currentValue": current_value,
        "periodType": period_type,
        "windowStart": window_start,
        "windowEnd": default_end if window_end is None else window_end,
        "percentUsed": _percent(current_value, threshold),
        "breached": breached,
        "groupBy": group_by,
        "filters": [dict(f) for f in filters] if filters is not None else [],
        "compiledAt": round(time.time(), 3),
        "shadowMode": shadow_mode,
    }
    if action is not None:
        rule["action"] = action
    rule["denyMessage"] = deny_message
    if group_breakdown is not None:
        rule["groupBreakdown"] = [dict(entry) for entry in group_breakdown]
    elif group_by is not None:
        rule["groupBreakdown"] = []
    rule.update(extra)
    return rule


def make_filter(
    dimension: str, operator: str, value: Union[str, Sequence[str], Any]
) -> dict[str, Any]:
    """One rule filter row; ``IN`` carries its list under ``values``.

    >>> make_filter("MODEL", "IN", ["gpt-4o", "gpt-4o-mini"])
    {'dimension': 'MODEL', 'operator': 'IN', 'values': ['gpt-4o', 'gpt-4o-mini']}
    """
    if operator == "IN":
        values = [value] if isinstance(value, str) else list(value)
        return {"dimension": dimension, "operator": operator, "values": values}
    return {"dimension": dimension, "operator": operator, "value": value}


def make_group_entry(
    group_value: str,
    current_value: Union[float, str] = 0.0,
    *,
    breached: bool = False,
    display_name: Optional[str] = None,
    usage_percent: float = 0.0,
) -> dict[str, Any]:
    """One ``groupBreakdown`` entry of a ``SUBSCRIBER``-grouped rule.

    >>> make_group_entry("ana@example.com", 12.5, breached=True)["groupValue"]
    'ana@example.com'
    """
    return {
        "groupValue": group_value,
        "displayName": display_name if display_name is not None else group_value,
        "currentValue": current_value,
        "usagePercent": usage_percent,
        "breached": breached,
    }


# --------------------------------------------------------------------------- faults and records


@dataclass(frozen=True)
class Fault:
    """One way for the feed to misbehave; build it with the class methods.

    ``Fault.status(429, headers={"Retry-After": "2"})``, ``Fault.hang()``,
    ``Fault.reset()``, ``Fault.garbage()``, ``Fault.body(b"[1,2]")``,
    ``Fault.huge(20 * 2**20)``, ``Fault.delay(0.5)``, ``Fault.trickle(b"[]", every=2)``.
    """

    kind: str
    code: int = 200
    content: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    seconds: float = 0.0
    nbytes: int = 0
    chunked: bool = False

    @classmethod
    def status(
        cls, code: int, body: bytes = b"", headers: Optional[Mapping[str, str]] = None
    ) -> Fault:
        """Answer ``code`` with ``body`` and extra ``headers`` (e.g. ``Retry-After``)."""
        return cls("status", code=code, content=body, headers=tuple((headers or {}).items()))

    @classmethod
    def hang(cls, seconds: float = 3600.0) -> Fault:
        """Hold the request without a byte, then drop the connection unanswered.

        Models a stuck origin: the client's timeout should fire first.
        :meth:`RulesServer.close` releases it at once.
        """
        return cls("hang", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        """Abort the TCP connection (RST, no response) once the request is read."""
        return cls("reset")

    @classmethod
    def garbage(cls) -> Fault:
        """A 200 whose body is not JSON, like a proxy's error page."""
        body = b"<html><body><h1>Service Temporarily Unavailable</h1></body></html>"
        return cls("body", code=200, content=body, content_type="text/html")

    @classmethod
    def body(
        cls,
        content: bytes,
        status: int = 200,
        content_type: str = "application/json",
        headers: Optional[Mapping[str, str]] = None,
    ) -> Fault:
        """Any body: wrong shapes such as ``b"[1,2]"`` or ``b'{"rules": null}'``."""
        return cls(
            "body",
            code=status,
            content=content,
            content_type=content_type,
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def huge(cls, nbytes: int = 20 * 1024 * 1024, *, chunked: bool = False) -> Fault:
        """A valid JSON 200 of ``nbytes`` streamed in chunks, never held in memory.

        ``chunked=True`` omits ``Content-Length`` so only counting the bytes
        read can catch it.
        """
        return cls("huge", nbytes=nbytes, chunked=chunked)

    @classmethod
    def trickle(
        cls,
        content: bytes = b'{"rules": []}',
        every: float = 2.0,
        status: int = 200,
        content_type: str = "application/json",
    ) -> Fault:
        """Answer ``status`` at once, then send ``content`` one byte every ``every`` seconds.

        The connection never goes quiet for long enough to trip a read
        timeout, yet the body takes ``len(content) * every`` seconds: only a
        deadline on the whole read ends it. :meth:`RulesServer.close` cuts it.
        """
        return cls(
            "trickle", code=status, content=content, content_type=content_type, seconds=every
        )

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds``, then answer normally: a slow but healthy origin."""
        return cls("delay", seconds=seconds)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it.

    ``path`` is the raw path without the query; ``headers`` keys are lower
    case; ``at`` is ``time.monotonic()`` when the request was read.
    """

    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    at: float = 0.0


# --------------------------------------------------------------------------- the server


def _int(text: Optional[str], default: int) -> int:
    return int(text) if text is not None and text.isdigit() else default


def _default_roster(query: Mapping[str, str]) -> dict[str, Any]:
    return {
        "ruleId": query.get("ruleId"),
        "page": _int(query.get("page"), 0),
        "size": _int(query.get("size"), 25),
        "rows": [],
        "totalElements": 0,
        "blockedCount": 0,
        "warnedCount": 0,
        "underCount": 0,
    }


def _etag_matches(header: Optional[str], etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


_Response = tuple[int, Optional[bytes], dict[str, str]]


class RulesServer:
    """A local control plane serving one team's rules over real HTTP.

    Why a server rather than a mock: the poller's retries, ``Retry-After``,
    conditional requests, size cap and timeouts only show against real
    sockets. Faults queued with :meth:`fail_next` / :meth:`add_fault` are
    used one per request (any path), then :meth:`set_fault`'s persistent
    fault, if any, then the normal answer.

    Example::

        with RulesServer(team_id="team-1", api_key="hak_test") as server:
            server.set_rules([make_rule(1, "daily-cap")])
            server.fail_next(2, status=503)  # the first refresh retries twice
            for name, value in server.env().items():
                monkeypatch.setenv(name, value)
            ...
            server.update_rule(1, breached=True, current_value=120.0)
            assert server.wait_for_requests(4)
    """

    def __init__(
        self,
        team_id: str = "team-1",
        api_key: Optional[str] = "hak_test",
        *,
        etags: bool = True,
        base_path: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """``api_key=None`` accepts any key; ``base_path`` (e.g. ``/profitstream``)
        prefixes every route, as a proxied deployment does.

        ``host`` and ``port`` are where to listen; port 0 lets the OS pick a
        free one, which is what tests running side by side need. Anything but a
        loopback host serves the payload, unauthenticated, to the network.
        """
        self.team_id = team_id
        self.host = host
        self.requested_port = port
        self.api_key = api_key
        self.etags = etags
        self.base_path = base_path.rstrip("/")
        self._cond = threading.Condition()
        self._payload: Any = {"rules": []}
        self._status = 200
        self._advisory: list[Any] = []
        self._roster: Any = None
        self._roster_set = False
        self._rosters: dict[str, Any] = {}
        self._faults: list[Fault] = []
        self._persistent: Optional[Fault] = None
        self._requests: list[RecordedRequest] = []
        self._errors: list[BaseException] = []
        self._closing = threading.Event()
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    # -- lifecycle

    def start(self) -> RulesServer:
        """Bind ``host:port`` (an OS-chosen port by default) and serve on a daemon thread.

        Raises :class:`OSError` when the address cannot be bound (a port in use).
        """
        if self._httpd is not None or self._closed:
            raise RuntimeError("a RulesServer starts once")
        httpd = _HTTPServer(self, (self.host, self.requested_port))
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"RulesServer:{httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release hanging handlers; returns within about 2 s."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        httpd = self._httpd
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.abort_connections()
        if self._thread is not None:
            self._thread.join(_JOIN_SECONDS)
        httpd.join_handlers(_JOIN_SECONDS)

    def __enter__(self) -> RulesServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- addresses

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the RulesServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` plus ``base_path``: the engine's base URL."""
        return f"http://{_url_host(self.host)}:{self.port}{self.base_path}"

    @property
    def url(self) -> str:
        """The team's rules URL, as the engine builds it."""
        return f"{self.base_url}{_RULES_PATH}{quote(self.team_id, safe='')}"

    def env(self, **overrides: Optional[str]) -> dict[str, str]:
        """Environment variables pointing the engine here; ``NAME=None`` drops one.

        >>> server.env(REVENIUM_CB_FAIL_MODE="closed")  # doctest: +SKIP
        """
        values: dict[str, Optional[str]] = {
            "REVENIUM_ENFORCEMENT_BASE_URL": self.base_url,
            "REVENIUM_TEAM_ID": self.team_id,
            "REVENIUM_METERING_API_KEY": self.api_key if self.api_key is not None else "hak_any",
            "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
        }
        values.update(overrides)
        return {name: value for name, value in values.items() if value is not None}

    # -- what it serves

    def set_payload(self, payload: Any) -> None:
        """Serve ``payload`` (an object, a bare list, anything JSON-able) with a 200."""
        snapshot = copy.deepcopy(payload)
        with self._cond:
            self._payload = snapshot
            self._status = 200

    def set_rules(self, rules: Sequence[Mapping[str, Any]], **maps: Any) -> None:
        """Serve ``{"rules": rules, "compiledAt": now, **maps}``.

        Map names may be camelCase (``departmentBudgetBlocks``) or snake_case.
        """
        payload: dict[str, Any] = {
            "rules": [dict(rule) for rule in rules],
            "compiledAt": round(time.time(), 3),
        }
        payload.update({_camel(name): value for name, value in maps.items()})
        self.set_payload(payload)

    def update_rule(self, rule_id: Union[int, str], **fields: Any) -> None:
        """Patch one served rule in place: ``update_rule(1, breached=True, current_value=9)``.

        snake_case names become camelCase; camelCase names pass unchanged.
        Raises ``KeyError`` when no served rule has that ``ruleId``.
        """
        patch = {_camel(name): value for name, value in fields.items()}
        with self._cond:
            payload = copy.deepcopy(self._payload)
            rules = payload.get("rules") if isinstance(payload, dict) else payload
            for rule in rules if isinstance(rules, list) else []:
                if isinstance(rule, dict) and str(rule.get("ruleId")) == str(rule_id):
                    rule.update(patch)
                    self._payload = payload
                    return
        raise KeyError(f"no served rule has ruleId {rule_id!r}")

    def set_status(self, code: int) -> None:
        """Answer rules reads with a bare ``code``, e.g. ``204`` ("no rules").

        The next :meth:`set_payload` / :meth:`set_rules` restores 200.
        """
        with self._cond:
            self._status = code

    def set_advisory(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Rows appended to the rules on ``?include=advisory`` reads only."""
        snapshot = copy.deepcopy([dict(row) for row in rows])
        with self._cond:
            self._advisory = snapshot

    def set_roster(self, roster: Any, *, rule_id: Union[int, str, None] = None) -> None:
        """What ``/roster?ruleId=...`` returns, for one rule or (by default) all.

        ``None`` answers 204 ("no reading yet"). Unset, an empty roster is served.
        """
        snapshot = copy.deepcopy(roster)
        with self._cond:
            if rule_id is None:
                self._roster = snapshot
                self._roster_set = True
            else:
                self._rosters[str(rule_id)] = snapshot

    # -- faults

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        body: bytes = b"",
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        """Answer the next ``n`` requests with ``status``."""
        self.add_fault(*[Fault.status(status, body, headers) for _ in range(n)])

    def add_fault(self, *faults: Fault) -> None:
        """Queue faults, each used by exactly one upcoming request."""
        with self._cond:
            self._faults.extend(faults)

    def set_fault(self, fault: Optional[Fault]) -> None:
        """A fault for every request once the queue is empty; ``None`` heals."""
        with self._cond:
            self._persistent = fault

    def clear_faults(self) -> None:
        """Drop queued faults and the persistent one."""
        with self._cond:
            self._faults.clear()
            self._persistent = None

    # -- observation

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._cond:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._cond:
            return len(self._requests)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions raised in handlers (client disconnects excluded)."""
        with self._cond:
            return list(self._errors)

    def reset_requests(self) -> None:
        """Forget the recorded requests."""
        with self._cond:
            self._requests.clear()

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` requests were recorded; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # -- used by the handler

    def _record(self, request: RecordedRequest) -> Optional[Fault]:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()
            if self._faults:
                return self._faults.pop(0)
            return self._persistent

    def _record_error(self, error: BaseException) -> None:
        with self._cond:
            self._errors.append(error)

    def _answer(self, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> _Response:
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            return _json_response(401, {"error": "Unauthorized"})
        prefix = self.base_path + _RULES_PATH
        if not path.startswith(prefix):
            return _json_response(404, {"error": "Not Found"})
        team, _, rest = path[len(prefix) :].partition("/")
        if (
            unquote(team) != self.team_id
            or rest not in ("", "roster")
            or (rest == "" and path.endswith("/"))
        ):
            return _json_response(404, {"error": "Not Found"})
        with self._cond:
            status = self._status
            payload = self._payload
            advisory = self._advisory
            roster_set, roster = self._roster_set, self._roster
            per_rule = self._rosters
            if status != 200:
                return status, b"", {}
            if rest == "roster":
                return self._roster_response(query, roster_set, roster, per_rule)
            body = _encode(_rules_view(payload, query, advisory))
        response_headers = {"Content-Type": "application/json"}
        if self.etags:
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            response_headers["ETag"] = etag
            if _etag_matches(headers.get("if-none-match"), etag):
                return 304, None, {"ETag": etag}
        return 200, body, response_headers

    @staticmethod
    def _roster_response(
        query: Mapping[str, str], roster_set: bool, roster: Any, per_rule: Mapping[str, Any]
    ) -> _Response:
        rule_id = query.get("ruleId")
        if not rule_id:
            return _json_response(400, {"error": "ruleId is required"})
        if rule_id in per_rule:
            chosen = per_rule[rule_id]
        elif roster_set:
            chosen = roster
        else:
            chosen = _default_roster(query)
        if chosen is None:
            return 204, None, {}
        return _json_response(200, chosen)


def _url_host(host: str) -> str:
    """A host as it goes in a URL: an IPv6 literal in brackets, and 0.0.0.0 as this host."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _json_response(status: int, obj: Any) -> _Response:
    return status, _encode(obj), {"Content-Type": "application/json"}


def _rules_view(payload: Any, query: Mapping[str, str], advisory: list[Any]) -> Any:
    """The body for one rules read: whole team, one rule, or with advisory rows."""
    rules = payload.get("rules") if isinstance(payload, dict) else payload
    rule_id = query.get("ruleId")
    if rule_id is not None:
        # The control plane narrows to one rule and drops the department maps.
        found = [
            rule
            for rule in (rules if isinstance(rules, list) else [])
            if isinstance(rule, dict) and str(rule.get("ruleId")) == rule_id
        ]
        return {"rules": found[:1]}
    if query.get("include") == "advisory" and isinstance(rules, list):
        if isinstance(payload, dict):
            return {**payload, "rules": rules + advisory}
        return rules + advisory
    return payload


class _HTTPServer(ThreadingHTTPServer):
    """Tracks every connection so close() can cut them and join their threads."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: RulesServer, address: tuple[str, int]) -> None:
        self.owner = owner
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._connections_lock = threading.Lock()
        if ":" in address[0]:  # an IPv6 literal such as ::1
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which can stall on odd networks.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="RulesServer-handler",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[thread] = request
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Silent by design; a client hanging up mid-answer is a normal test event.
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, (ConnectionError, TimeoutError)):
            self.owner._record_error(error)

    def abort_connections(self) -> None:
        with self._connections_lock:
            sockets = list(self._connections.values())
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def join_handlers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._connections_lock:
            threads = list(self._connections)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; Nagle would hold the body ~40 ms.
    disable_nagle_algorithm = True
    server_version = "RulesServer"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a test run's stderr is for the test's own output."""

    @property
    def _owner(self) -> RulesServer:
        return cast(_HTTPServer, self.server).owner

    def do_GET(self) -> None:
        owner = self._owner
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {name.lower(): value for name, value in self.headers.items()}
        fault = owner._record(RecordedRequest(parts.path, query, headers, time.monotonic()))
        if fault is not None and self._apply_fault(fault, owner):
            return
        if owner._closing.is_set():
            self._drop()
            return
        status, body, response_headers = owner._answer(parts.path, query, headers)
        self._send(status, body, response_headers)

    def _apply_fault(self, fault: Fault, owner: RulesServer) -> bool:
        """Act out ``fault``; ``True`` when the request is fully handled."""
        if fault.kind == "delay":
            owner._closing.wait(fault.seconds)
            return False
        if fault.kind == "hang":
            owner._closing.wait(fault.seconds)
            self._drop()
        elif fault.kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._drop()
        elif fault.kind == "huge":
            self._send_huge(fault.nbytes, fault.chunked, owner._closing)
        elif fault.kind == "trickle":
            self._send_trickle(fault, owner._closing)
        else:
            headers = {"Content-Type": fault.content_type} if fault.content else {}
            headers.update(dict(fault.headers))
            self._send(fault.code, fault.content, headers)
        return True

    def _drop(self) -> None:
        """Close without a response; with SO_LINGER 0 the peer sees a reset."""
        self.close_connection = True
        self.connection.close()  # the fd closes when finish() closes rfile

    def _send(self, status: int, body: Optional[bytes], headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        if body and not no_body:
            self.wfile.write(body)

    def _send_trickle(self, fault: Fault, closing: threading.Event) -> None:
        self.send_response(fault.code)
        self.send_header("Content-Type", fault.content_type)
        self.send_header("Content-Length", str(len(fault.content)))
        self.end_headers()
        for index in range(len(fault.content)):
            if closing.wait(fault.seconds):
                self._drop()
                return
            self.wfile.write(fault.content[index : index + 1])

    def _send_huge(self, nbytes: int, chunked: bool, closing: threading.Event) -> None:
        head, tail = b'{"rules":[],"padding":"', b'"}'
        fill = max(0, nbytes - len(head) - len(tail))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(head) + fill + len(tail)))
        self.end_headers()

        def write(piece: bytes) -> None:
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)

        write(head)
        block = b"x" * _CHUNK
        while fill > 0:
            if closing.is_set():
                self._drop()
                return
            piece = block if fill >= _CHUNK else block[:fill]
            write(piece)
            fill -= len(piece)
        write(tail)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
