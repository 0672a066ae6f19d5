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
- instrumenting twice wraps nothing twice, and ``uninstrument()`` restores
  every original by identity.

A new provider adds one ``tables/<provider>.py`` module and lists it in
:data:`TABLES`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from enforcement.hooks._relay import _Carrier

from ._fake_server import FakeServer

__all__ = ["TABLES", "Case", "Table", "aconsume", "consume", "load_table", "of", "pair", "spans"]

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


#: a ``returns`` judge.
Judge = Callable[[Any], bool]


def of(*kinds: type) -> Judge:
    """A judge: the result, or every item of a stream read to a list, is one of the SDK's ``kinds``.

    Judged by its real type: a subclass passes, a proxy standing in for it does
    not, but for the kit's own carrier, which a call given ``usage_metadata=``
    returns around an object that sends its requests later (a stream, a
    stream manager).
    """

    def judge(result: Any) -> bool:
        items = result if isinstance(result, list) else [result]
        return bool(items) and all(issubclass(type(_bare(item)), kinds) for item in items)

    return judge


def _bare(result: Any) -> Any:
    return result.__wrapped__ if type(result) is _Carrier else result


def spans(first: type, last: type) -> Judge:
    """A judge: a stream read to a list, from a ``first`` event to a ``last`` one."""
    return lambda read: (
        isinstance(read, list) and bool(read) and of(first)(read[0]) and of(last)(read[-1])
    )


def pair(outer: Judge, inner: Judge) -> Judge:
    """A judge for a call that returns the SDK's object and what was read from it, each judged.

    A stream and its items, a stream manager's stream and its final message, a
    raw response and its parsed body.
    """
    return lambda result: isinstance(result, tuple) and outer(result[0]) and inner(result[1])
