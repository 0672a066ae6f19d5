"""The rules feed: one HTTP client, a printable retry policy, a size cap.

Every read of the control plane goes through :meth:`Feed.get`, so the
``Retry-After`` budget and the cooldown it starts apply to the poller and to
the inspection reads alike: a second, unguarded GET against an origin that
asked us to back off would undo the point of backing off.

One read, retries and all, ends by its policy's ``deadline``: httpx's timeouts
bound each socket read, so a body trickling a byte every few seconds would
otherwise hold the poller for ever. The deadline is checked as the body
streams in.

The poller builds the HTTP client, never a caller, and the slow parts of
building one are kept off the callers' way: httpcore (and h11, h2 when
installed), which httpx imports when its first client is built, is imported
with this module instead (about 40 ms of Python holding the GIL, which the
calls racing the first one would otherwise wait through), and the TLS
context is built once per process (:func:`verified_context`), shared by
every client and inherited by forked children.

The roster read's ``search=`` is a person's email address, and httpx logs
every request's URL at INFO. A filter on the ``httpx`` logger masks that
parameter in the lines about our endpoint (only those), whichever transport,
proxy or mount carried the request.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import logging
import os
import re
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import quote

import certifi
import httpcore  # noqa: F401  (imported now rather than on the poller's first fetch)
import httpx

from . import _json as json_pieces
from ._schedule import RetryPolicy
from ._settings import Settings
from ._wire import Payload, parse_payload

__all__ = ["Feed", "FeedResult", "verified_context"]

logger = logging.getLogger("enforcement.feed")

MAX_BODY_BYTES = 16 * 1024 * 1024
_RETRYABLE = frozenset({408, 429})


class _MaskSearch(logging.Filter):
    """Masks ``search=`` in httpx's request lines about the enforcement endpoint."""

    _search = re.compile(r"([?&]search=)[^&\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if "/enforcement-rules/" in message and "search=" in message:
            record.msg = self._search.sub(r"\1[redacted]", message)
            record.args = ()
        return True


_MASK_SEARCH = _MaskSearch()


def _mask_search_in_httpx_logs() -> None:
    httpx_logger = logging.getLogger("httpx")
    if _MASK_SEARCH not in httpx_logger.filters:
        httpx_logger.addFilter(_MASK_SEARCH)


@dataclass(frozen=True)
class FeedResult:
    """The outcome of one read: a payload, "not modified", or a failure with its reason."""

    payload: Optional[Payload] = None
    not_modified: bool = False
    etag: Optional[str] = None
    status: Optional[int] = None
    error: Optional[str] = None
    cooldown: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def retry_after_seconds(value: Optional[str], now: Callable[[], float]) -> Optional[float]:
    """``Retry-After`` as delta-seconds or an HTTP-date, unclamped; ``None`` if unusable."""
    if not value:
        return None
    try:
        delay = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        delay = when.timestamp() - now()
    if delay != delay:
        return None
    return max(0.0, delay)


def verified_context() -> ssl.SSLContext:
    """The TLS context httpx builds for ``verify=True``, built once per process.

    The same trust as httpx's default: ``SSL_CERT_FILE``, else
    ``SSL_CERT_DIR``, else certifi's bundle. Loading the bundle releases the
    GIL but takes about 45 ms of a core, which every new client would spend
    again: each engine, each forked child (which inherits this one), each
    change of team. No lock: two threads building at once build two good
    contexts, and a lock held at a fork would stay held in the child.
    """
    environ = os.environ
    return _context_for(environ.get("SSL_CERT_FILE") or None, environ.get("SSL_CERT_DIR") or None)


@functools.lru_cache(maxsize=4)
def _context_for(cert_file: Optional[str], cert_dir: Optional[str]) -> ssl.SSLContext:
    if cert_file is None and cert_dir is None:
        cert_file = certifi.where()
    if cert_file is not None:
        return ssl.create_default_context(cafile=cert_file)
    return ssl.create_default_context(capath=cert_dir)


class _TooLarge(Exception):
    pass


class _PastDeadline(Exception):
    pass


class Feed:
    """Reads the team's rules and the inspection resources from the control plane."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: Optional[httpx.BaseTransport] = None,
        wall_clock: Callable[[], float],
        stop: threading.Event,
        timeout: float = 10.0,
        policy: RetryPolicy,
    ) -> None:
        self.settings = settings
        self.refresh_policy = policy
        self.inspection_policy = policy.for_inspection()
        self._wall_clock = wall_clock
        self._stop = stop
        _mask_search_in_httpx_logs()
        self._client = httpx.Client(
            transport=transport,
            verify=verified_context(),
            timeout=httpx.Timeout(timeout, connect=5.0),
            headers={
                "x-api-key": settings.api_key,
                "accept": "application/json",
                "user-agent": "enforcement-python",
            },
            follow_redirects=False,
        )

    @property
    def team_url(self) -> str:
        team = quote(self.settings.team_id, safe="")
        return f"{self.settings.base_url}/v2/api/ai/enforcement-rules/{team}"

    def close(self) -> None:
        self._client.close()

    def fetch_rules(
        self, *, etag: Optional[str] = None, attempts: Optional[int] = None
    ) -> FeedResult:
        """The team's rules; ``etag`` asks for a 304 when nothing changed."""
        headers = {"if-none-match": etag} if etag else None
        result = self.get(
            self.team_url, headers=headers, policy=self.refresh_policy, attempts=attempts
        )
        if isinstance(result, FeedResult):
            return result
        response, body = result
        if response.status_code == 304:
            return FeedResult(not_modified=True, etag=etag, status=304)
        if response.status_code == 204:
            return FeedResult(
                payload=Payload.empty(), etag=response.headers.get("etag"), status=204
            )
        try:
            payload = parse_payload(*json_pieces.decode_keeping_rules(body))
        except Exception as problem:  # not JSON, too deep, the wrong shape
            return FeedResult(status=response.status_code, error=f"unreadable body: {problem}")
        return FeedResult(
            payload=payload, etag=response.headers.get("etag"), status=response.status_code
        )

    def fetch_json(
        self,
        url: str,
        params: Optional[dict[str, Any]] = None,
    ) -> Any:
        """One inspection read: the decoded body, or ``None`` (204, failure, bad body).

        Never raises.
        """
        try:
            result = self.get(url, params=params, policy=self.inspection_policy)
            if isinstance(result, FeedResult):
                return None
            response, body = result
            if response.status_code == 204:
                return None
            return json_pieces.decode(body)
        except Exception:
            logger.debug("Inspection read failed", exc_info=True)
            return None

    def get(
        self,
        url: str,
        *,
        params: Optional[dict[str, Any]] = None,
        headers: Optional[dict[str, str]] = None,
        policy: RetryPolicy,
        attempts: Optional[int] = None,
    ) -> FeedResult | tuple[httpx.Response, bytes]:
        """GET under ``policy``: the first response not retried (2xx/304), or a failure."""
        budget = policy.retry_after_budget
        total = policy.attempts if attempts is None else max(1, attempts)
        clock = policy.clock
        deadline = clock() + policy.deadline
        last_error = "no attempt made"
        for attempt in range(total):
            wait = policy.backoff(attempt)
            try:
                response, body = self._send(url, params, headers, deadline, clock)
            except _TooLarge:
                return FeedResult(status=200, error=f"body over {MAX_BODY_BYTES} bytes")
            except _PastDeadline:
                return FeedResult(
                    error=f"no complete answer within the {policy.deadline:g} s deadline"
                )
            except (httpx.TimeoutException, httpx.TransportError) as problem:
                last_error = f"{type(problem).__name__}: {problem}"
            except Exception as problem:  # an httpx bug or a bad URL: not worth retrying
                return FeedResult(error=f"{type(problem).__name__}: {problem}")
            else:
                status = response.status_code
                if 200 <= status < 300 or status == 304:
                    return response, body
                if status not in _RETRYABLE and status < 500:
                    return FeedResult(status=status, error=f"HTTP {status}")
                last_error = f"HTTP {status}"
                asked = retry_after_seconds(response.headers.get("retry-after"), self._wall_clock)
                if asked is not None:
                    if asked > budget:
                        cooldown = min(asked, policy.cooldown_ceiling)
                        return FeedResult(
                            status=status,
                            cooldown=cooldown,
                            error=f"HTTP {status}, Retry-After {asked:.0f} s "
                            f"is past the {budget:.0f} s left",
                        )
                    budget -= asked
                    wait = asked
            if attempt == total - 1:
                break
            if wait >= deadline - clock():
                return FeedResult(
                    error=f"{last_error}; no retry fits the {policy.deadline:g} s deadline"
                )
            if self._pause(policy, wait):
                break
        return FeedResult(error=last_error)

    def _pause(self, policy: RetryPolicy, seconds: float) -> bool:
        """Wait between attempts; True when the poller is stopping meanwhile."""
        if policy.sleep is None:
            return self._stop.wait(seconds)
        policy.sleep(seconds)
        return self._stop.is_set()

    def _send(
        self,
        url: str,
        params: Optional[dict[str, Any]],
        headers: Optional[dict[str, str]],
        deadline: float,
        clock: Callable[[], float],
    ) -> tuple[httpx.Response, bytes]:
        if clock() >= deadline:
            raise _PastDeadline
        with self._client.stream("GET", url, params=params, headers=headers) as response:
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
                raise _TooLarge
            chunks = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _TooLarge
                if clock() > deadline:
                    raise _PastDeadline
                chunks.append(chunk)
            return response, b"".join(chunks)
