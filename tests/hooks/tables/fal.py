"""fal-client's calls for the conformance suite, against a local fake fal.ai.

The cases call ``SyncClient`` / ``AsyncClient`` methods and the module
functions bound to fal-client's default clients (``fal_client.run``...),
which read ``FAL_KEY``. Each client context points fal-client's URL
constants at the fake and, on the way out, closes the HTTP clients the
default clients cached, so no connection outlives the fake (and no async one
outlives its event loop).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import fal_client
import httpx

from enforcement import _providers

from ..conformance import Case, Table, consume
from ..fake_fal import RESULT, FakeFal, pointed_at

ARGUMENTS = {"prompt": "a cat"}


def _is_result(result: Any) -> bool:
    return bool(result == RESULT)


def _is_handle(result: Any) -> bool:
    return getattr(result, "request_id", None) == "req-1"


def _is_stream(result: Any) -> bool:
    return isinstance(result, list) and len(result) == 2 and result[-1]["partial"] is False


@contextmanager
def _fal_key() -> Iterator[None]:
    saved = os.environ.get("FAL_KEY")
    os.environ["FAL_KEY"] = "x"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["FAL_KEY"]
        else:
            os.environ["FAL_KEY"] = saved


def _cached_http_client(client: Any) -> Any:
    """The HTTP client a fal client made (and cached) for itself, forgotten; None if none."""
    return vars(client).pop("_client", None)


@contextmanager
def client(api: FakeFal) -> Iterator[fal_client.SyncClient]:
    built = fal_client.SyncClient(key="x")
    with pointed_at(api), _fal_key():
        try:
            yield built
        finally:
            for owner in (built, fal_client.sync_client):
                http = _cached_http_client(owner)
                if isinstance(http, httpx.Client):
                    http.close()


@asynccontextmanager
async def aclient(api: FakeFal) -> AsyncIterator[fal_client.AsyncClient]:
    built = fal_client.AsyncClient(key="x")
    with pointed_at(api), _fal_key():
        try:
            yield built
        finally:
            for owner in (built, fal_client.async_client):
                http = _cached_http_client(owner)
                if inspect.isawaitable(http):
                    http = await http
                if isinstance(http, httpx.AsyncClient):
                    await http.aclose()


def subscribe_in_worker(c: fal_client.SyncClient, m: str, **kw: Any) -> Any:
    """``client_timeout`` runs the submit on fal's worker thread."""
    return c.subscribe(m, ARGUMENTS, client_timeout=30, **kw)


async def arun(c: fal_client.AsyncClient, m: str, **kw: Any) -> Any:
    return await c.run(m, ARGUMENTS, **kw)


async def asubmit(c: fal_client.AsyncClient, m: str, **kw: Any) -> Any:
    return await c.submit(m, arguments=ARGUMENTS, **kw)


async def asubscribe(c: fal_client.AsyncClient, m: str, **kw: Any) -> Any:
    return await c.subscribe(m, ARGUMENTS, **kw)


async def asubscribe_timeout(c: fal_client.AsyncClient, m: str, **kw: Any) -> Any:
    return await c.subscribe(m, ARGUMENTS, client_timeout=30, **kw)


async def astream(c: fal_client.AsyncClient, m: str, **kw: Any) -> Any:
    return [event async for event in c.stream(m, ARGUMENTS, **kw)]


async def module_run_async(c: Any, m: str, **kw: Any) -> Any:
    return await fal_client.run_async(m, ARGUMENTS, **kw)


async def module_submit_async(c: Any, m: str, **kw: Any) -> Any:
    return await fal_client.submit_async(m, ARGUMENTS, **kw)


async def module_subscribe_async(c: Any, m: str, **kw: Any) -> Any:
    return await fal_client.subscribe_async(m, ARGUMENTS, **kw)


async def module_stream_async(c: Any, m: str, **kw: Any) -> Any:
    return [event async for event in fal_client.stream_async(m, ARGUMENTS, **kw)]


# subscribe sends three requests: the submission, one status poll, the result.
TABLE = Table(
    provider="fal",
    label=_providers.FAL,
    model="fal-ai/flux/dev",
    fake=FakeFal,
    client=client,
    aclient=aclient,
    cases=[
        Case("SyncClient.run", lambda c, m, **kw: c.run(m, ARGUMENTS, **kw), _is_result),
        Case("SyncClient.submit", lambda c, m, **kw: c.submit(m, ARGUMENTS, **kw), _is_handle),
        Case(
            "SyncClient.subscribe",
            lambda c, m, **kw: c.subscribe(m, arguments=ARGUMENTS, **kw),
            _is_result,
            requests=3,
        ),
        Case(
            "SyncClient.stream",
            lambda c, m, **kw: consume(c.stream(m, ARGUMENTS, **kw)),
            _is_stream,
        ),
        Case("fal_client.run", lambda c, m, **kw: fal_client.run(m, ARGUMENTS, **kw), _is_result),
        Case(
            "fal_client.submit",
            lambda c, m, **kw: fal_client.submit(m, ARGUMENTS, **kw),
            _is_handle,
        ),
        Case(
            "fal_client.subscribe",
            lambda c, m, **kw: fal_client.subscribe(m, ARGUMENTS, **kw),
            _is_result,
            requests=3,
        ),
        Case(
            "fal_client.stream",
            lambda c, m, **kw: consume(fal_client.stream(m, ARGUMENTS, **kw)),
            _is_stream,
        ),
        Case("AsyncClient.run", arun, _is_result, is_async=True),
        Case("AsyncClient.submit", asubmit, _is_handle, is_async=True),
        Case("AsyncClient.subscribe", asubscribe, _is_result, is_async=True, requests=3),
        Case("AsyncClient.stream", astream, _is_stream, is_async=True),
        Case("fal_client.run_async", module_run_async, _is_result, is_async=True),
        Case("fal_client.submit_async", module_submit_async, _is_handle, is_async=True),
        Case(
            "fal_client.subscribe_async",
            module_subscribe_async,
            _is_result,
            is_async=True,
            requests=3,
        ),
        Case("fal_client.stream_async", module_stream_async, _is_stream, is_async=True),
    ],
)
if (
    "client_timeout" in inspect.signature(fal_client.SyncClient.subscribe).parameters
):  # newer releases
    TABLE.cases += [
        Case("SyncClient.subscribe(client_timeout)", subscribe_in_worker, _is_result, requests=3),
        Case(
            "AsyncClient.subscribe(client_timeout)",
            asubscribe_timeout,
            _is_result,
            is_async=True,
            requests=3,
        ),
    ]
