"""What a call uses, in tokens: the estimate before it is sent and the usage after.

These are the values a hook hands the engine around a provider call (see
:meth:`Engine.begin`): plain numbers, no provider types, so that the spend
layer (prices, ledger) never imports an SDK.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Protocol

__all__ = ["Estimate", "Spend", "Usage"]


class Estimate(NamedTuple):
    """A call's worst case, read from the request before it is sent.

    ``max_output_tokens`` is what the request allows (``max_tokens``,
    ``max_output_tokens``...); ``None`` when it sets no limit, and then the
    model's own output limit applies.
    """

    input_tokens: int
    max_output_tokens: Optional[int] = None


class Usage(NamedTuple):
    """What the provider reports a completed call used.

    ``input_tokens`` counts every prompt token, cached ones included;
    ``cache_read_tokens`` and ``cache_write_tokens`` say how many of them were
    read from or written to a prompt cache (priced differently). ``model`` is
    the model the provider says served the call, when it says.
    """

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    model: Optional[str] = None


class Spend(Protocol):
    """A call admitted with money held for it; the hook settles it exactly once."""

    def settle(self, usage: Optional[Usage]) -> None:
        """Replace the hold by what ``usage`` costs; ``None`` (error, cancelled) releases it."""
