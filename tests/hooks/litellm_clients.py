"""LiteLLM for the tests: imported quietly, set up to leak nothing, its cached SDK clients closed.

LiteLLM and its Router cache the SDK clients they build, and nothing closes
them: a test that leaves one open leaks its socket, which pytest reports as a
``ResourceWarning`` error. ``test_litellm.py`` and ``tables/litellm.py`` close
them with the context managers here: :func:`sync_calls` around sync calls,
:func:`async_calls` around async ones, each inside :func:`settings`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import warnings
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

# Importing litellm fetches a price list from GitHub unless told to use its own copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@contextmanager
def quiet() -> Iterator[None]:
    """LiteLLM's warnings about itself ignored: its models trip pydantic's ReadOnly warning, and
    older releases warn about their own use of Python and pydantic (at import, or on first use
    of a module LiteLLM imports late, such as the Router's). A deprecation warning LiteLLM blames
    on its caller is still an error.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=UserWarning, module=r"pydantic\._internal\._generate_schema$"
        )
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"litellm(\..*)?$")
        yield


with quiet():
    import litellm

__all__ = [
    "async_calls",
    "close_clients",
    "litellm",
    "quiet",
    "router_cache",
    "settings",
    "sync_calls",
]

# The clients LiteLLM made at import are its own; every one made after is closed.
_IMPORT_TIME_CLIENTS = frozenset(litellm.in_memory_llm_clients_cache.cache_dict)


@contextmanager
def settings() -> Iterator[None]:
    """Plain httpx clients (no aiohttp sessions left open) and no retries, restored after.

    Releases before LiteLLM's aiohttp transport have no switch for it, and use httpx anyway.
    """
    aiohttp = hasattr(litellm, "disable_aiohttp_transport")
    saved: tuple[Any, Any] = (
        getattr(litellm, "disable_aiohttp_transport", None),
        litellm.num_retries,
    )
    if aiohttp:
        litellm.disable_aiohttp_transport = True
    litellm.num_retries = 0
    try:
        yield
    finally:
        if aiohttp:
            litellm.disable_aiohttp_transport = saved[0]
        litellm.num_retries = saved[1]


def router_cache(router: Any) -> Any:
    """The in-memory cache a Router keeps its state in, the SDK clients among it.

    Under ``health().store`` from LiteLLM 1.110, where ``Router.cache`` is deprecated; ``cache``
    before. (1.110 keeps a Router's SDK clients in LiteLLM's own cache.)
    """
    if callable(getattr(type(router), "health", None)):
        return router.health().store.in_memory_cache
    return router.cache.in_memory_cache


def _clients_made(routers: Iterable[Any]) -> list[tuple[Any, str, Any]]:
    own = litellm.in_memory_llm_clients_cache
    found = [
        (own, key, client)
        for key, client in list(own.cache_dict.items())
        if key not in _IMPORT_TIME_CLIENTS
    ]
    for cache in map(router_cache, routers):
        found.extend((cache, key, client) for key, client in list(cache.cache_dict.items()))
    return [(cache, key, client) for cache, key, client in found if callable(_close(client))]


def _close(client: Any) -> Any:
    return getattr(client, "close", None)


def _forget(cache: Any, key: str) -> None:
    cache.cache_dict.pop(key, None)
    cache.ttl_dict.pop(key, None)


async def close_clients(routers: Iterable[Any] = ()) -> None:
    """Close every client LiteLLM and ``routers`` cached since LiteLLM's import, on this loop."""
    for cache, key, client in _clients_made(routers):
        _forget(cache, key)
        closing = _close(client)()
        if inspect.isawaitable(closing):
            await closing


def _close_sync_clients(routers: Iterable[Any]) -> None:
    """The same, where a loop is running and nothing can be awaited: sync calls made sync
    clients only, and an async one left here would be a leak, so it fails the test."""
    for cache, key, client in _clients_made(routers):
        _forget(cache, key)
        closing = _close(client)()
        if inspect.isawaitable(closing):
            closing.close()  # type: ignore[attr-defined]
            raise AssertionError(f"a sync call left an async client to close: {key}")


@contextmanager
def sync_calls(routers: Iterable[Any] = ()) -> Iterator[None]:
    """Around sync LiteLLM calls: the clients they cache (``routers``' too) closed after.

    Outside a running loop, an event loop of its own is set too: LiteLLM's sync
    path asks for the current loop, and one it made itself would be left open.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # inside an async test, whose loop LiteLLM finds
        try:
            yield
        finally:
            _close_sync_clients(routers)
        return
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        try:
            loop.run_until_complete(close_clients(routers))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


@asynccontextmanager
async def async_calls(routers: Iterable[Any] = ()) -> AsyncIterator[None]:
    """Around async LiteLLM calls: the clients they cache closed after, on this loop.

    LiteLLM's async text completion builds a fresh client per call and never
    closes it, so every call shares one ``aclient_session`` instead.
    """
    saved = litellm.aclient_session
    async with httpx.AsyncClient() as session:
        litellm.aclient_session = session
        try:
            yield
        finally:
            try:
                await close_clients(routers)
            finally:
                litellm.aclient_session = saved
