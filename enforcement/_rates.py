"""Prices as plain numbers: one model's rates, and the user's overrides parsed and checked.

A :class:`Rates` is what the price table resolves a (model, provider) pair
to, once: dollars per million tokens for input, output and cached input,
dollars per request, the output limit, and long-prompt tiers. Overrides (a
mapping or a JSON file of the same shape) are checked here, so a typo is an
:class:`InvalidPrices` naming the model and the field, never a wrong price.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import NamedTuple, Optional

from ._model_names import output_limit
from ._usage import Estimate, Usage

__all__ = ["PER_MILLION", "InvalidPrices", "Rates", "load_overrides", "parse_overrides"]


PER_MILLION = 1_000_000.0


class InvalidPrices(ValueError):
    """Prices that cannot be used: which source, which model, and why.

    ``source`` is ``"overrides"`` or the file's path; ``model`` is ``None``
    when the whole source is at fault (unreadable, not a JSON object).
    """

    def __init__(self, source: str, reason: str, model: Optional[str] = None) -> None:
        where = f"{source}: {model}: " if model is not None else f"{source}: "
        super().__init__(where + reason)
        self.source = source
        self.model = model
        self.reason = reason


class Rates(NamedTuple):
    """One model's prices in dollars per million tokens, resolved once.

    ``cache_read`` / ``cache_write`` are ``None`` when the model bills cached
    prompt tokens as ordinary input. ``per_request`` is dollars per call.
    ``tiers`` holds the prices for long prompts, ``((start, rates), ...)``
    ascending: as providers bill it (and genai-prices models it), a prompt
    over ``start`` tokens pays the tier's rates on every token, not only on
    those past it.
    """

    input: float
    output: float
    cache_read: Optional[float]
    cache_write: Optional[float]
    per_request: float
    max_output_tokens: int
    source: str
    tiers: tuple[tuple[int, Rates], ...] = ()

    def at(self, prompt_tokens: int) -> Rates:
        """The rates a prompt of this size pays."""
        chosen = self
        for start, rates in self.tiers:
            if prompt_tokens > start:
                chosen = rates
        return chosen

    def cost(self, usage: Usage) -> float:
        rates = self.at(usage.input_tokens) if self.tiers else self
        plain = usage.input_tokens
        total = usage.output_tokens * rates.output
        cached, written = usage.cache_read_tokens, usage.cache_write_tokens
        if cached and rates.cache_read is not None:
            cached = min(cached, plain)
            plain -= cached
            total += cached * rates.cache_read
        if written and rates.cache_write is not None:
            written = min(written, plain)
            plain -= written
            total += written * rates.cache_write
        return (total + plain * rates.input) / PER_MILLION + rates.per_request

    def worst_case(self, estimate: Estimate) -> float:
        rates = self.at(estimate.input_tokens) if self.tiers else self
        limit = estimate.max_output_tokens
        output = rates.max_output_tokens if limit is None else limit
        total = estimate.input_tokens * rates.input + output * rates.output
        return total / PER_MILLION + rates.per_request


_OVERRIDE_FIELDS = frozenset({"input", "output", "cache_read", "cache_write", "max_output_tokens"})


def _number(source: str, model: str, field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidPrices(source, f"{field} must be a number, not {value!r}", model)
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InvalidPrices(source, f"{field} must be finite and >= 0, not {value!r}", model)
    return number


def _override_rates(source: str, model: str, entry: object) -> Rates:
    if not isinstance(entry, Mapping):
        raise InvalidPrices(
            source, "prices must be an object like {'input': 2.5, 'output': 10}", model
        )
    unknown = set(entry) - _OVERRIDE_FIELDS
    if unknown:
        raise InvalidPrices(source, f"unknown fields {sorted(unknown)}", model)
    missing = {"input", "output"} - set(entry)
    if missing:
        raise InvalidPrices(source, f"missing {sorted(missing)}", model)
    cache_read, cache_write = entry.get("cache_read"), entry.get("cache_write")
    limit = entry.get("max_output_tokens")
    return Rates(
        input=_number(source, model, "input", entry["input"]),
        output=_number(source, model, "output", entry["output"]),
        cache_read=None if cache_read is None else _number(source, model, "cache_read", cache_read),
        cache_write=None
        if cache_write is None
        else _number(source, model, "cache_write", cache_write),
        per_request=0.0,
        max_output_tokens=(
            output_limit(model)
            if limit is None
            else int(_number(source, model, "max_output_tokens", limit))
        ),
        source=source,
    )


def parse_overrides(source: str, overrides: object) -> dict[str, Rates]:
    if not isinstance(overrides, Mapping):
        raise InvalidPrices(source, "overrides must be an object of model name to prices")
    parsed: dict[str, Rates] = {}
    for model, entry in overrides.items():
        if not isinstance(model, str) or not model.strip():
            raise InvalidPrices(source, f"model names must be non-empty strings, not {model!r}")
        parsed[model.strip().lower()] = _override_rates(source, model, entry)
    return parsed


def load_overrides(path: str) -> dict[str, Rates]:
    """Read a prices file (the shape of ``overrides``); raise :class:`InvalidPrices` if unusable."""
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidPrices(path, f"unreadable: {error}") from error
    return parse_overrides(path, data)
