"""Settling a call's :class:`Spend` from what the provider answered, exactly once.

A whole response is read at once. A stream is handed back behind a proxy
that folds each item into a :class:`Tally` as the caller reads it and settles
when the stream ends: with the tally's usage when it is exhausted, with
``None`` when it raises, is closed or exited early, or is dropped unfinished
(a finalizer), so a hold is never left behind. The proxy is what the caller
iterates; it changes no item and no attribute of the stream it wraps.

Reading usage never raises into the caller: a reader that fails settles
``None`` and says so at debug level.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Callable, Optional, Protocol

import wrapt

from .._usage import Estimate, Spend, Usage

__all__ = [
    "GeneratorMeter",
    "LatestUsage",
    "Meter",
    "Tally",
    "count",
    "field",
    "settle",
    "settle_from",
]

logger = logging.getLogger("enforcement.hooks")


class Tally(Protocol):
    """One stream's running account: fed each item, asked for the usage at the end."""

    def add(self, item: Any) -> None: ...

    def usage(self) -> Optional[Usage]: ...


class LatestUsage:
    """A tally for streams whose items report usage as they go: the last report wins.

    ``read`` turns one item into a :class:`Usage`, or None when it reports none.
    """

    def __init__(self, read: Callable[[Any], Optional[Usage]]) -> None:
        self._read = read
        self._usage: Optional[Usage] = None

    def add(self, item: Any) -> None:
        reported = self._read(item)
        if reported is not None:
            self._usage = reported

    def usage(self) -> Optional[Usage]:
        return self._usage


class Meter:
    """How a hook reads a call's cost; a provider subclasses it for its shapes.

    ``estimate`` reads the request (called only when the engine holds money);
    ``usage`` a whole response; ``tally`` says whether a result is a stream
    by returning the :class:`Tally` to fold its items into. The defaults read
    nothing, so a hook without a meter releases its hold when the call ends.
    """

    def estimate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Estimate:
        return Estimate(0)

    def usage(self, result: Any) -> Optional[Usage]:
        return None

    def tally(self, result: Any, estimate: Callable[[], Estimate]) -> Optional[Tally]:
        return None

    def stream_key(self, result: Any) -> Optional[str]:
        """Where in ``result`` its stream is (boto3 answers a dict); None: ``result`` is it."""
        return None


class GeneratorMeter(Meter):
    """A meter for SDKs that stream a generator of chunks shaped like their whole response.

    ``read`` (a staticmethod) turns a response or a chunk into its :class:`Usage`.
    """

    read: Callable[[Any], Optional[Usage]] = staticmethod(lambda response: None)

    def usage(self, result: Any) -> Optional[Usage]:
        return self.read(result)

    def tally(self, result: Any, estimate: Callable[[], Estimate]) -> Optional[Tally]:
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            return LatestUsage(self.read)
        return None


def field(value: Any, *path: str) -> Any:
    """``value.a.b`` or ``value["a"]["b"]``, whichever the object is; None when absent."""
    for name in path:
        if value is None:
            return None
        value = value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)
    return value


def count(value: Any) -> int:
    """A token count as reported: an int, else 0 (None, missing, garbage)."""
    return value if type(value) is int and value > 0 else 0


def settle(spend: Spend, usage: Optional[Usage]) -> None:
    """``spend.settle(usage)``, never raising into the caller's call."""
    try:
        spend.settle(usage)
    except Exception:
        logger.debug("Settling a call's spend failed", exc_info=True)


def _read(reader: Callable[[], Optional[Usage]]) -> Optional[Usage]:
    try:
        return reader()
    except Exception:
        logger.debug("Could not read a call's usage; releasing its hold", exc_info=True)
        return None


def settle_from(
    result: Any,
    spend: Spend,
    meter: Optional[Meter],
    estimate: Callable[[], Estimate],
    *,
    asynchronous: bool = False,
) -> Any:
    """Settle ``spend`` from ``result`` now, or hand back a stream that settles when it ends.

    ``asynchronous``: the call was awaited, so a stream it returns is iterated
    with ``async for`` (LiteLLM's streams can be iterated either way).
    """
    if meter is None:
        settle(spend, None)
        return result
    tally: Optional[Tally] = None
    try:
        tally = meter.tally(result, estimate)
    except Exception:
        logger.debug("Could not tell whether a result streams", exc_info=True)
    if tally is None:
        settle(spend, _read(lambda: meter.usage(result)))
        return result
    once = _Once(spend)
    key = meter.stream_key(result)
    stream = result if key is None else result[key]
    metered = _AsyncMetered(stream, once, tally) if asynchronous else _Metered(stream, once, tally)
    if key is None:
        return metered
    result[key] = metered
    return result


class _Once:
    """Settles its spend the first time it is called; later calls do nothing."""

    __slots__ = ("_lock", "_spend")

    def __init__(self, spend: Spend) -> None:
        self._spend: Optional[Spend] = spend
        self._lock = threading.Lock()

    def __call__(self, usage: Optional[Usage]) -> None:
        with self._lock:
            spend, self._spend = self._spend, None
        if spend is not None:
            settle(spend, usage)

    def tallied(self, tally: Tally) -> None:
        self(_read(tally.usage))


class _Proxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """What both stream proxies hold: the settlement, the tally, the iterator being read."""

    def __init__(self, wrapped: Any, once: _Once, tally: Tally) -> None:
        super().__init__(wrapped)
        self._self_once = once
        self._self_tally = tally
        self._self_items: Any = None
        weakref.finalize(self, once, None)  # dropped unfinished: release the hold


class _Metered(_Proxy):
    """A stream that tallies what the caller reads and settles when it ends."""

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        try:
            if self._self_items is None:
                self._self_items = iter(self.__wrapped__)
            item = next(self._self_items)
        except StopIteration:
            self._self_once.tallied(self._self_tally)
            raise
        except BaseException:
            self._self_once(None)
            raise
        _add(self._self_tally, item)
        return item

    def __enter__(self) -> Any:
        entered = self.__wrapped__.__enter__()
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, *exc_info: Any) -> Any:
        self._self_once(None)
        return self.__wrapped__.__exit__(*exc_info)

    def close(self) -> Any:
        close = self.__wrapped__.close  # a stream without one raises before anything is settled
        self._self_once(None)
        return close()


class _AsyncMetered(_Proxy):
    """:class:`_Metered` for async streams."""

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        try:
            if self._self_items is None:
                self._self_items = self.__wrapped__.__aiter__()
            item = await self._self_items.__anext__()
        except StopAsyncIteration:
            self._self_once.tallied(self._self_tally)
            raise
        except BaseException:
            self._self_once(None)
            raise
        _add(self._self_tally, item)
        return item

    async def __aenter__(self) -> Any:
        entered = await self.__wrapped__.__aenter__()
        return self if entered is self.__wrapped__ else entered

    async def __aexit__(self, *exc_info: Any) -> Any:
        self._self_once(None)
        return await self.__wrapped__.__aexit__(*exc_info)

    async def close(self) -> Any:
        close = self.__wrapped__.close
        self._self_once(None)
        return await close()

    async def aclose(self) -> Any:
        aclose = self.__wrapped__.aclose
        self._self_once(None)
        return await aclose()


def _add(tally: Tally, item: Any) -> None:
    try:
        tally.add(item)
    except Exception:
        logger.debug("Could not read a streamed item's usage", exc_info=True)
