"""Which ledger holds a call's spend: the largest scope that works.

Redis across hosts (``REVENIUM_CB_LEDGER_URL``), the cache directory across
the host's processes, else this process. A shared ledger that fails (Redis
down, the directory unwritable) is skipped for a few seconds and tried
again; the process ledger never fails, so a failing ledger never refuses a
call (CONTRACT §9). ``describe()`` says which is in use and why the others
are not.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Union

from ._host_ledger import HostLedger
from ._ledger import Bucket, Hold, Ledger, LedgerUnavailable, ProcessLedger
from ._settings import Settings

__all__ = ["LedgerChain"]

logger = logging.getLogger("enforcement")

RETRY_AFTER = 5.0  # seconds a failed shared ledger is skipped before it is tried again


class LedgerChain:
    """Ledgers, largest scope first, the process's last."""

    def __init__(self, ledgers: list[Ledger], wall_clock: Callable[[], float]) -> None:
        self.ledgers = ledgers
        self._wall_clock = wall_clock
        self._skip_until = [0.0] * len(ledgers)
        self._errors: list[Optional[str]] = [None] * len(ledgers)

    @classmethod
    def for_settings(
        cls, settings: Settings, scope: str, wall_clock: Callable[[], float]
    ) -> LedgerChain:
        """The ledgers the settings name: Redis, then the host's, then this process's."""
        ledgers: list[Ledger] = []
        if settings.ledger_url:
            try:
                from ._redis_ledger import RedisLedger

                ledgers.append(RedisLedger(settings.ledger_url))
            except Exception as problem:  # redis-py not installed, a bad URL
                logger.warning("REVENIUM_CB_LEDGER_URL not used: %s", problem)
        if settings.cache_dir:
            try:
                ledgers.append(HostLedger(settings.cache_dir, scope))
            except Exception as problem:
                logger.warning("The host's spend ledger is not used: %s", problem)
        ledgers.append(ProcessLedger())
        return cls(ledgers, wall_clock)

    def _usable(self, index: int, now: float) -> bool:
        return now >= self._skip_until[index] and getattr(self.ledgers[index], "healthy", True)

    def reserve(
        self, buckets: list[Bucket], amounts: list[float], now: float
    ) -> Optional[tuple[Ledger, Union[Hold, Bucket]]]:
        """The first usable ledger's answer, and that ledger (commits go back to it)."""
        skip_until = self._skip_until
        for index, ledger in enumerate(self.ledgers):
            if now < skip_until[index] or not getattr(ledger, "healthy", True):  # _usable()
                continue
            try:
                result = ledger.reserve(buckets, amounts, now)
            except LedgerUnavailable as problem:
                self._failed(index, str(problem))
                continue
            except Exception as problem:  # a ledger bug must not cost the call
                logger.debug("Spend ledger %s failed", ledger.scope, exc_info=True)
                self._failed(index, f"{type(problem).__name__}: {problem}")
                continue
            if self._errors[index] is not None:
                self._errors[index] = None
            return ledger, result
        return None

    def spent(self, bucket: Bucket, now: float) -> Optional[float]:
        """Completed plus held spend on ``bucket``, from the ledger :meth:`reserve` would use."""
        for index, ledger in enumerate(self.ledgers):
            if not self._usable(index, now):
                continue
            try:
                used, held = ledger.spent(bucket, now)
            except Exception:
                continue
            return used + held
        return None

    def _failed(self, index: int, reason: str) -> None:
        if self._errors[index] is None:
            logger.warning(
                "The %s spend ledger failed (%s); using the next one",
                self.ledgers[index].scope,
                reason,
            )
        self._errors[index] = reason
        self._skip_until[index] = self._wall_clock() + RETRY_AFTER

    def in_use(self) -> str:
        for index, ledger in enumerate(self.ledgers):
            if self._errors[index] is None and getattr(ledger, "healthy", True):
                return ledger.scope
        return "process"

    def describe(self) -> list[dict[str, Any]]:
        rows = []
        for index, ledger in enumerate(self.ledgers):
            info: dict[str, Any] = dict(ledger.describe())
            info["error"] = self._errors[index] or info.get("last_error") or info.get("error")
            rows.append(info)
        return rows

    def close(self) -> None:
        for ledger in self.ledgers:
            try:
                ledger.close()
            except Exception:
                logger.debug("Closing the %s ledger failed", ledger.scope, exc_info=True)
