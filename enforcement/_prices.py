"""What a call costs in dollars: a maintained price table plus the user's own prices.

Local spend (CONTRACT §9) is only as good as its prices, and prices move every
month, so the table is not ours to keep: it is `genai-prices
<https://github.com/pydantic/genai-prices>`_ (MIT, by the Pydantic team),
whose releases track the providers' price pages. Its data ships inside the
package and is read from disk; nothing here fetches prices over the network
(genai-prices' ``UpdatePrices``, started by the user, is the only way to do
that, and then its snapshot is used). Users add or correct prices with
overrides in dollars per million tokens::

    PriceTable(overrides={"gpt-4o": {"input": 2.50, "output": 10.00, "cache_read": 1.25}})

A model neither knows is not priced: :meth:`PriceTable.cost` returns ``None``,
never a guess, and the engine adds no cost for it.

Pricing runs on the call's path after it completes, so every (model, provider)
pair is resolved once into plain floats (:class:`Rates`) and kept in a bounded
dict on the instance; a later call costs a dict hit and a few multiplications.
The table itself (about 130 ms and 13 MiB to import) is loaded on the first
miss, or earlier by :meth:`PriceTable.preload` from a background thread.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from ._fork import renew_after_fork
from ._model_names import DEFAULT_OUTPUT_LIMIT, candidate_names, output_limit, split_route
from ._rates import InvalidPrices, Rates, load_overrides, parse_overrides
from ._usage import Estimate, Usage

__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "InvalidPrices",
    "PriceTable",
    "PriceTableStatus",
    "Rates",
    "load_overrides",
]

logger = logging.getLogger("enforcement.prices")

DEFAULT_CACHE_SIZE = 1024
_UNPRICED_KEPT = 16
_LOAD_WAIT = 5.0  # seconds a lookup waits for another thread's import of the table

_TABLE_PROVIDERS: Mapping[str, Optional[str]] = {
    "openai": "openai",
    "azure": "azure",
    "xai": "x-ai",
    "anthropic": "anthropic",
    "foundry": "anthropic",
    "aws": "aws",
    "google": "google",
    "perplexity": "perplexity",
    "mistral": "mistral",
    "cohere": "cohere",
    "litellm": None,
    "huggingface": None,
}
#: Route prefixes (LiteLLM's ``openai/gpt-4o``) that name the provider.
_TABLE_FIELDS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")


@dataclass(frozen=True)
class PriceTableStatus:
    """What a :class:`PriceTable` prices from, for ``Engine.status()`` and the CLI."""

    table: Optional[str]
    table_error: Optional[str]
    overrides: int
    overrides_file: Optional[str]
    overrides_error: Optional[str]
    cached: int
    unpriced: tuple[str, ...]


# --------------------------------------------------------------------------- overrides


# --------------------------------------------------------------------------- names


def _table_provider(model: str, provider: Optional[str]) -> tuple[bool, Optional[str]]:
    """(may the table price it, which genai-prices provider): the route wins over the label."""
    route, _ = split_route(model.strip().lower())
    if route is not None:
        return True, route
    if provider is None:
        return True, None
    label = provider.strip().lower()
    if label not in _TABLE_PROVIDERS:
        return False, None
    return True, _TABLE_PROVIDERS[label]


# --------------------------------------------------------------------------- the table


def _base(value: Any) -> Optional[float]:
    """A genai-prices price (a ``Decimal`` or ``TieredPrices``) below its first tier."""
    if value is None:
        return None
    return float(getattr(value, "base", value))


def _tier_starts(prices: Any) -> list[int]:
    starts = {
        int(tier.start)
        for field in _TABLE_FIELDS
        for tier in getattr(getattr(prices, field), "tiers", None) or ()
    }
    return sorted(starts)


def _price_at(value: Any, start: int) -> Optional[float]:
    """The price of a prompt just over ``start`` tokens."""
    price = _base(value)
    for tier in getattr(value, "tiers", None) or ():
        if start >= int(tier.start):
            price = float(tier.price)
    return price


def _table_rates(snapshot: Any, model: str, provider_id: Optional[str]) -> Optional[Rates]:
    try:
        _, info = snapshot.find_provider_model(model, None, provider_id, None)
        prices = info.get_prices(datetime.datetime.now(datetime.timezone.utc))
        if all(getattr(prices, field) is None for field in _TABLE_FIELDS):
            return None  # priced by images or seconds, not tokens: not ours to guess
        base = _rates_from(prices, None, output_limit(info.id), f"genai-prices:{info.id}")
        tiers = tuple(
            (start, _rates_from(prices, start, base.max_output_tokens, base.source))
            for start in _tier_starts(prices)
        )
    except LookupError:
        return None
    return base._replace(tiers=tiers)


def _rates_from(prices: Any, start: Optional[int], limit: int, source: str) -> Rates:
    def read(field: str) -> Optional[float]:
        value = getattr(prices, field)
        return _base(value) if start is None else _price_at(value, start)

    return Rates(
        input=read("input_mtok") or 0.0,
        output=read("output_mtok") or 0.0,
        cache_read=read("cache_read_mtok"),
        cache_write=read("cache_write_mtok"),
        per_request=float(prices.requests_kcount or 0) / 1000.0,
        max_output_tokens=limit,
        source=source,
    )


class _Table:
    """genai-prices' bundled snapshot, imported on first use (it is 130 ms and 13 MiB).

    Fork-safe: a child forked while another thread of the parent was
    importing it (the poller preloads it) would wait for ever on a lock or a
    half-imported module that no thread of its own will release. So the child
    gets a fresh lock, and a table interrupted mid-import is imported again
    on a daemon thread of the child's own (if that import hangs on the dead
    thread's module lock, only that thread waits; calls go on unpriced by the
    table meanwhile). No load waits more than a few seconds for the lock.
    """

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._lock = threading.Lock()
        self._loading = False
        self._retry_aside = False  # set in a child forked mid-import: import on a thread aside
        self._snapshot: Any = None
        self.name: Optional[str] = None
        self.error: Optional[str] = None if enabled else "disabled"
        renew_after_fork(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        if self._loading:
            self._loading = False
            self._retry_aside = True

    def load(self) -> Any:
        if self._snapshot is not None or self.error is not None:
            return self._snapshot
        if self._retry_aside:
            self._retry_aside = False
            threading.Thread(target=self.load, name="enforcement-prices", daemon=True).start()
            return None
        if not self._lock.acquire(timeout=_LOAD_WAIT):
            return None  # another thread is importing it: this call goes unpriced, unblocked
        try:
            if self._snapshot is None and self.error is None:
                self._loading = True
                try:
                    self._import()
                finally:
                    self._loading = False
        finally:
            self._lock.release()
        return self._snapshot

    def _import(self) -> None:
        try:
            from importlib.metadata import version

            from genai_prices import data_snapshot

            snapshot = data_snapshot.get_snapshot()
            self.name = f"genai-prices {version('genai-prices')}"
            self._snapshot = snapshot
        except Exception as error:  # an absent or broken table prices nothing; never raise
            self.error = f"{type(error).__name__}: {error}"
            logger.warning("price table unavailable (%s); only price overrides apply", self.error)

    def rates(self, model: str, provider: Optional[str]) -> Optional[Rates]:
        allowed, provider_id = _table_provider(model, provider)
        snapshot = self.load() if allowed else None
        if snapshot is None:
            return None
        for name in candidate_names(model):
            try:
                found = _table_rates(snapshot, name, provider_id)
            except Exception:  # the table's own bug is an unpriced call, not the user's error
                logger.debug("price lookup failed for %r", name, exc_info=True)
                found = None
            if found is not None:
                return found
        return None


class PriceTable:
    """Dollars for a call's :class:`Usage` or :class:`Estimate`, by model and provider.

    >>> prices = PriceTable(overrides={"gpt-4o-mini": {"input": 0.15, "output": 0.60}})
    >>> round(prices.cost(Usage(20_000, 11_667), "gpt-4o-mini", "OPENAI"), 6)
    0.01

    Overrides (dollars per million tokens: ``input``, ``output``, optional
    ``cache_read``, ``cache_write``, ``max_output_tokens``) win over the
    table. A key may name the provider too (``"azure/gpt-4o"``) to price one
    provider's calls apart. ``use_table=False`` prices from overrides alone.
    """

    def __init__(
        self,
        overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
        *,
        use_table: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
        file_overrides: Optional[Mapping[str, Rates]] = None,
        overrides_file: Optional[str] = None,
        overrides_error: Optional[str] = None,
    ) -> None:
        self._overrides: dict[str, Rates] = dict(file_overrides or {})
        self._overrides.update(parse_overrides("overrides", overrides or {}))
        self._table = _Table(use_table)
        self._cache: dict[tuple[Optional[str], Optional[str]], Optional[Rates]] = {}
        self._cache_size = max(1, cache_size)
        self._unpriced: list[str] = []
        self._overrides_file = overrides_file
        self._overrides_error = overrides_error

    @classmethod
    def from_file(
        cls,
        path: str,
        overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
        **options: Any,
    ) -> PriceTable:
        """Prices from a JSON file plus ``overrides`` (which win); a bad file is warned, ignored."""
        try:
            from_disk: dict[str, Rates] = load_overrides(path)
            error = None
        except InvalidPrices as invalid:
            from_disk, error = {}, str(invalid)
            logger.warning("price overrides file ignored: %s", error)
        return cls(
            overrides,
            file_overrides=from_disk,
            overrides_file=path,
            overrides_error=error,
            **options,
        )

    def preload(self) -> None:
        """Import the table now (from a background thread) so no call pays for it."""
        self._table.load()

    def rates(self, model: Optional[str], provider: Optional[str] = None) -> Optional[Rates]:
        """The model's :class:`Rates`, or ``None`` when it cannot be priced."""
        key = (model, provider)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._resolve(model, provider)
        self._remember(key, found)
        return found

    def cost(
        self, usage: Usage, model: Optional[str], provider: Optional[str] = None
    ) -> Optional[float]:
        """Dollars a completed call cost; ``None`` when its model cannot be priced.

        The model the provider says served the call (``usage.model``, often a
        dated snapshot) is priced first, then the model the call asked for.
        """
        rates = self.rates(usage.model, provider) if usage.model else None
        if rates is None:
            rates = self.rates(model, provider)
        return None if rates is None else rates.cost(usage)

    def worst_case(
        self, estimate: Estimate, model: Optional[str], provider: Optional[str] = None
    ) -> Optional[float]:
        """Dollars a call may cost at most: its prompt plus the largest output it allows."""
        rates = self.rates(model, provider)
        return None if rates is None else rates.worst_case(estimate)

    def describe(self) -> PriceTableStatus:
        """Where prices come from, what failed, and which models went unpriced lately."""
        return PriceTableStatus(
            table=self._table.name,
            table_error=self._table.error,
            overrides=len(self._overrides),
            overrides_file=self._overrides_file,
            overrides_error=self._overrides_error,
            cached=len(self._cache),
            unpriced=tuple(self._unpriced),
        )

    def _resolve(self, model: Optional[str], provider: Optional[str]) -> Optional[Rates]:
        if not model or not model.strip():
            return None
        found = self._override(model, provider) or self._table.rates(model, provider)
        if found is None:
            self._note_unpriced(model, provider)
        return found

    def _override(self, model: str, provider: Optional[str]) -> Optional[Rates]:
        if not self._overrides:
            return None
        names = candidate_names(model)
        if provider:
            label = provider.strip().lower()
            names = [f"{label}/{name}" for name in names] + names
        for name in names:
            if name in self._overrides:
                return self._overrides[name]
        return None

    def _remember(self, key: tuple[Optional[str], Optional[str]], rates: Optional[Rates]) -> None:
        if len(self._cache) >= self._cache_size:
            try:  # the oldest entry; another thread may have taken it first
                del self._cache[next(iter(self._cache))]
            except (KeyError, RuntimeError, StopIteration):
                pass
        self._cache[key] = rates

    def _note_unpriced(self, model: str, provider: Optional[str]) -> None:
        label = f"{provider}:{model}" if provider else model
        logger.debug("no price for %s", label)
        self._unpriced = [*self._unpriced[-(_UNPRICED_KEPT - 1) :], label]
