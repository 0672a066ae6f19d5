"""Leasing: how a ledger shared through a slow store stays as cheap as the process's.

Meeting the shared store per call (the host's file lock, ~50-100 us; a Redis
round trip) would cost far more than the hold itself. So each process
*leases* an allowance per bucket from the shared :class:`Store` and spends it
in memory, on the process ledger's own code
(:class:`~enforcement._ledger.AccountLedger`). A background thread writes
completed spend and renews or returns leases in batches. Only a reservation
that its allowance cannot cover meets the store on the caller's thread,
which happens near a cap (or once per bucket and payload).

Until the store answers a sync, a process uses no more than the store will
record whatever the answer, so no answer overshoots a cap. A store only has
to apply a batch of :class:`Settlement` atomically: :func:`settle_entry` is
the rule for one bucket, which the file store (``_host_ledger``) runs as it
is and the Redis store (``_redis_ledger``) runs as Lua.
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple, Optional, Protocol, Union

from ._ledger import (
    MAX_BUCKETS,
    MAX_SLOTS,
    MIN_ASK,
    RELATIVE_TOLERANCE,
    Account,
    AccountLedger,
    Bucket,
    Hold,
    LedgerUnavailable,
    ceiling_of,
    fits,
    slot_counts,
)

__all__ = ["Grant", "LeasedLedger", "Settlement", "Store", "lease_size", "settle_entry"]


class Settlement(NamedTuple):
    """One bucket's part of a sync with the shared store."""

    bucket: Bucket
    #: Spend completed here since the last sync, by slot.
    spend: tuple[tuple[int, float], ...]
    #: The allowance this process keeps once ``spend`` is counted (when ``need`` is not granted).
    lease: float
    #: Above zero: lease at least this much (the holds plus a reservation that did not fit).
    need: float


class Grant(NamedTuple):
    """The store's answer for one bucket."""

    granted: bool
    #: This process's allowance now, as the store records it.
    allowance: float
    #: Completed spend since the bucket's ``since``, all processes.
    spent: float
    #: ``spent`` plus the other live processes' allowances.
    base: float


class Store(Protocol):
    """Where leases and spend are shared: a file (per host) or Redis (a fleet)."""

    where: str

    def settle(
        self, holder: str, settlements: Sequence[Settlement], now: float, lease_until: float
    ) -> list[Grant]:
        """Apply every settlement atomically; raise LedgerUnavailable on failure."""
        ...

    def after_fork_in_child(self) -> None: ...

    def close(self) -> None: ...


def lease_size(need: float, remaining: float, live: int) -> float:
    """A lease covers the need plus a share of what is left, so only a cap needs a sync.

    Half of an even split leaves room for processes that have not asked yet,
    and shrinks geometrically towards the cap.
    """
    return need + max(0.0, remaining - need) / (2 * live)


class LeasedAccount(Account):
    __slots__ = ("allowance", "base", "lease_until", "spent_seen")

    def __init__(self, bucket: Bucket) -> None:
        super().__init__(bucket)
        self.since = -math.inf  # never synced: the first reservation leases
        self.allowance = 0.0
        self.base = 0.0
        self.spent_seen = 0.0
        self.lease_until = 0.0

    def adopt(self, bucket: Bucket) -> None:
        """Admit what the allowance leased for this payload covers, and what the figures of
        the last sync leave room for under the rule; before a sync for it, nothing."""
        if bucket.since > self.since:
            self.ceiling = -math.inf  # the store decides: our figures are of an older payload
        else:
            leased = self.allowance * (1 + RELATIVE_TOLERANCE)
            self.ceiling = min(leased, ceiling_of(bucket.limit, bucket.inclusive) - self.base)
        self.bucket = bucket

    def figures(self, bucket: Bucket) -> tuple[float, float]:
        return self.spent_seen + self.spend.total, self.held


class LeasedLedger(AccountLedger):
    """Holds drawn on allowances leased from a shared :class:`Store`.

    ``flush_seconds``: how often completed spend is written and leases renewed;
    ``lease_seconds``: how long a dead process's allowance stays out;
    ``idle_seconds``: a bucket unused this long returns its allowance.
    """

    def __init__(
        self,
        store: Store,
        *,
        flush_seconds: float = 0.1,
        lease_seconds: float = 10.0,
        idle_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        capacity: int = MAX_BUCKETS,
    ) -> None:
        super().__init__(LeasedAccount, capacity)
        self._store = store
        self._flush_seconds = flush_seconds
        self._lease_seconds = lease_seconds
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._fresh_process_state()
        atexit.register(_close_at_exit, weakref.ref(self))

    def _fresh_process_state(self) -> None:
        self._holder = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._sync_lock = threading.Lock()
        self._wake = threading.Event()
        self._flusher: Optional[threading.Thread] = None
        self._closed = False
        self._last_error: Optional[str] = None
        self._healthy = True
        self._retry_at = 0.0

    def _after_fork_in_child(self) -> None:
        """A child must not spend the parent's allowances: empty state, its own identity."""
        super()._after_fork_in_child()
        self._fresh_process_state()
        self._store.after_fork_in_child()

    @property
    def healthy(self) -> bool:
        """False after the store failed, until a sync succeeds again."""
        return self._healthy

    # ----------------------------------------------------------------- the caller's path

    def reserve(
        self, buckets: Sequence[Bucket], amounts: Sequence[float], now: float
    ) -> Union[Hold, Bucket]:
        outcome = self._admit(buckets, amounts, now)
        if outcome.__class__ is Hold:
            return outcome
        return self._lease_and_admit(buckets, amounts, now)

    def _lease_and_admit(
        self, buckets: Sequence[Bucket], amounts: Sequence[float], now: float
    ) -> Union[Hold, Bucket]:
        """What the allowances could not cover: each pass leases it or refuses, then admits."""
        for _ in range(3):
            refused = self._lease(buckets, amounts, now)
            if refused is not None:
                return refused
            outcome = self._admit(buckets, amounts, now)
            if isinstance(outcome, Hold):
                return outcome
        return buckets[0]  # contended beyond reason: refusing errs safe

    # ----------------------------------------------------------------- syncing

    def _lease(
        self, buckets: Sequence[Bucket], amounts: Sequence[float], now: float
    ) -> Optional[Bucket]:
        """Lease what the allowances lack, on the caller's thread; the first bucket refused.

        Every account's first reservation comes here (it has no allowance yet),
        so this is where the background flush starts, in a forked child too.
        """
        if self._flusher is None:
            self._start_flusher()
        if not self._healthy and self._clock() < self._retry_at:
            raise LedgerUnavailable(self.scope, self._last_error or "store failed")
        with self._sync_lock:
            with self._lock:
                plan = []
                for bucket, amount in zip(buckets, amounts):
                    account = self._book.open(bucket)
                    if not account.admits(amount):  # no other thread leased meanwhile
                        # A hold of nothing (an unpriced call) still asks: granted while unbreached.
                        ask = max(amount, MIN_ASK)
                        plan.append((account, self._settlement(account, bucket, ask, now)))
            grants = self._settle(plan, now) if plan else []
        if grants is None:
            raise LedgerUnavailable(self.scope, self._last_error or "store failed")
        for (_, settlement), grant in zip(plan, grants):
            if not grant.granted:
                return settlement.bucket
        return None

    def _settlement(
        self, account: LeasedAccount, bucket: Bucket, wanted: float, now: float
    ) -> Settlement:
        """Take the pending spend and shrink the allowance to what the store will record.

        Called under the lock: until the store answers, this process may use no
        more than it will record whatever the answer, so no answer overshoots.
        ``wanted`` (a reservation that did not fit) asks for the holds plus it; a
        refused ask hands back all but the holds, so the last process refused
        sees every other process's true figure.
        """
        spend = account.spend.take()
        consumed = math.fsum(amount for _, amount in spend)
        keep = max(0.0, account.allowance - consumed)
        need = account.held + wanted if wanted > 0 else 0.0
        if need > 0 or (account.held <= 0 and now - account.used_at >= self._idle_seconds):
            keep = min(keep, max(account.held, 0.0))
        account.allowance = keep
        account.bucket = None  # its ceiling counted the old allowance
        return Settlement(bucket, spend, keep, need)

    def _settle(
        self, plan: Sequence[tuple[LeasedAccount, Settlement]], now: float
    ) -> Optional[list[Grant]]:
        wall = self._clock()
        lease_until = wall + self._lease_seconds
        try:
            grants = self._store.settle(self._holder, [s for _, s in plan], wall, lease_until)
        except LedgerUnavailable as failure:
            self._fail(failure.reason, wall, plan)
            return None
        self._healthy = True
        with self._lock:
            for (account, settlement), grant in zip(plan, grants):
                account.allowance = grant.allowance
                account.base = grant.base
                account.spent_seen = grant.spent
                account.since = max(account.since, settlement.bucket.since)
                account.lease_until = lease_until
                account.bucket = None  # its ceiling counted the old figures
        return grants

    def _fail(
        self, reason: str, wall: float, plan: Sequence[tuple[LeasedAccount, Settlement]]
    ) -> None:
        """The store kept its old figures: keep the spend for the next sync."""
        self._healthy = False
        self._last_error = reason
        self._retry_at = wall + self._flush_seconds
        with self._lock:
            for account, settlement in plan:
                account.spend.put_back(settlement.spend)

    def flush(self) -> bool:
        """Write completed spend, renew leases due, return idle allowances; False on failure."""
        now = self._clock()
        with self._sync_lock:
            with self._lock:
                plan = [
                    (account, self._settlement(account, _bucket_of(key, account), 0.0, now))
                    for key, account in self._book.items()
                    if self._due(account, now)
                ]
            if not plan and self._healthy:
                return True
            return self._settle(plan, now) is not None  # when unhealthy, an empty one probes

    def _due(self, account: LeasedAccount, now: float) -> bool:
        if account.spend.entries:
            return True
        if account.allowance <= 0:
            return False
        idle = account.held <= 0 and now - account.used_at >= self._idle_seconds
        return idle or account.lease_until - now < self._lease_seconds / 2

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None or self._closed:
                return
            self._flusher = threading.Thread(
                target=_flush_forever,
                args=(weakref.ref(self), self._wake, self._flush_seconds),
                name=f"enforcement-{self.scope}-ledger",
                daemon=True,
            )
            self._flusher.start()

    def close(self) -> None:
        """Flush, and hand every allowance back so other processes may use it at once."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        with self._lock:
            for account in self._book.values():
                account.used_at = -math.inf
                account.held, account.holds = 0.0, 0
        try:
            self.flush()
        finally:
            super().close()
            self._store.close()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            leased = math.fsum(account.allowance for account in self._book.values())
        return self._describe(
            where=self._store.where,
            healthy=self._healthy,
            last_error=self._last_error,
            leased=leased,
            holder=self._holder,
            **getattr(self._store, "problems", {}),
        )


def _bucket_of(key: str, account: LeasedAccount) -> Bucket:
    """A bucket for a flush: the store needs key, since and expiry; limit is not consulted."""
    return Bucket(key, math.inf, False, max(account.since, 0.0), account.expires_at)


def _flush_forever(
    ledger_ref: weakref.ref[LeasedLedger], wake: threading.Event, seconds: float
) -> None:
    """The background flush; it ends when its ledger closes or is collected."""
    while not wake.wait(seconds):
        ledger = ledger_ref()
        if ledger is None or ledger._closed:
            return
        try:
            ledger.flush()
        except Exception as error:  # a flush must never kill the thread
            ledger._last_error = f"flush failed: {error!r}"
        del ledger


def _close_at_exit(ledger_ref: weakref.ref[LeasedLedger]) -> None:
    ledger = ledger_ref()
    if ledger is not None:
        try:
            ledger.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- the shared rules


def settle_entry(
    entry: dict[str, Any], settlement: Settlement, holder: str, now: float, lease_until: float
) -> Grant:
    """Apply one settlement to a store's entry for its bucket (the file's; Redis has it in Lua).

    ``entry``: ``since``, ``expires_at``, ``spend`` (slot -> amount) and
    ``leases`` (holder -> [allowance, until]).
    """
    bucket = settlement.bucket
    since = max(float(entry.get("since", bucket.since)), bucket.since)
    entry["since"] = since
    entry["expires_at"] = max(float(entry.get("expires_at", 0.0)), bucket.expires_at)
    spend: dict[str, float] = entry.setdefault("spend", {})
    for slot, amount in settlement.spend:
        spend[str(slot)] = spend.get(str(slot), 0.0) + amount
    for stale in [s for s in spend if not slot_counts(int(s), since)]:
        del spend[stale]
    _merge_oldest(spend)
    spent = math.fsum(spend.values())
    leases: dict[str, list[float]] = entry.setdefault("leases", {})
    for name in [n for n, (_, until) in leases.items() if until <= now or n == holder]:
        del leases[name]
    others = math.fsum(allowance for allowance, _ in leases.values())
    allowance, granted, need = settlement.lease, False, settlement.need
    if need > 0 and fits(spent + others + need, bucket.limit, bucket.inclusive):
        remaining = bucket.limit - spent - others
        allowance, granted = lease_size(need, remaining, len(leases) + 1), True
    if allowance > 0:
        leases[holder] = [allowance, lease_until]
    return Grant(granted, allowance, spent, spent + others)


def _merge_oldest(spend: dict[str, float]) -> None:
    if len(spend) <= MAX_SLOTS:
        return
    ordered = sorted(spend, key=int)
    for oldest, newer in zip(ordered, ordered[1 : len(ordered) - MAX_SLOTS + 1]):
        spend[newer] += spend.pop(oldest)
