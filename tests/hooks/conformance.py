"""What every provider hook must do, written once; each provider supplies a :class:`Table`.

A table names the provider, the label its calls are checked under, a model,
a fake provider server (a :class:`~tests.hooks._fake_server.FakeServer`) and
its calls: one :class:`Case` per SDK method, sync or async, streamed or not.
``test_conformance.py`` runs every case of every table through the same
checks:

- the check happens before sending: a blocked call sends 0 requests;
- ``usage_metadata=`` is used for the verdict and stripped before sending;
- bypass, other-model and other-provider rules let the call through;
- a call inside an outer hooked layer is checked once;
- ``uninstrument()`` restores every original by identity.

A new provider adds one ``tables/<provider>.py`` module and lists it in
:data:`TABLES`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from ._fake_server import FakeServer

__all__ = ["TABLES", "Case", "Table", "load_table"]

#: ``table module`` under ``tests/hooks/tables``, one per provider.
TABLES: tuple[str, ...] = (
    "ollama",
    "openai",
    "anthropic",
    "google_genai",
    "litellm",
    "bedrock",
    "vertexai",
    "perplexity",
    "fal",
)

#: ``call(client, model, **kwargs)`` for a sync case; a coroutine function for an async one.
CallFunction = Callable[..., Any]


@dataclass(frozen=True)
class Case:
    """One SDK call: how to make it, and what an allowed call returns.

    ``call(client, model, **kwargs)`` makes the call and consumes any stream
    it returns (so a streamed request is really sent); ``kwargs`` carries
    ``usage_metadata=``. ``returns`` judges the result (the SDK's own objects).
    ``requests`` is how many requests one allowed call sends.
    """

    name: str
    call: CallFunction
    returns: Callable[[Any], bool] = lambda result: result is not None
    is_async: bool = False
    requests: int = 1


@dataclass
class Table:
    """A provider's part of the conformance suite.

    ``fake()`` builds the fake provider server (entered by the suite);
    ``client(fake)`` and ``aclient(fake)`` build the SDK's sync and async
    clients against it, as context managers that close them.
    """

    provider: str  # the name given to instrument()
    label: str  # the provider label its calls are checked under
    model: str
    fake: Callable[[], FakeServer]
    client: Callable[[Any], AbstractContextManager[Any]]
    cases: list[Case]
    aclient: Optional[Callable[[Any], AbstractAsyncContextManager[Any]]] = None
    #: the request body's field that must not carry our metadata (checked in every request).
    leaks: tuple[str, ...] = field(default=("usage_metadata",))

    def case(self, name: str) -> Case:
        return next(case for case in self.cases if case.name == name)


def load_table(name: str) -> Table:
    """The provider's table; raises ImportError when its SDK is not installed."""
    module = importlib.import_module(f"tests.hooks.tables.{name}")
    table: Table = module.TABLE
    return table


def consume(result: Any) -> Any:
    """A sync result as a list when it is a stream (so it is really read), else itself."""
    if isinstance(result, Iterator):
        return list(result)
    return result


async def aconsume(result: Union[Any, Awaitable[Any]]) -> Any:
    """An async result awaited, and read to the end when it is a stream."""
    if isinstance(result, Awaitable):
        result = await result
    if isinstance(result, AsyncIterator):
        return [item async for item in result]
    return result
