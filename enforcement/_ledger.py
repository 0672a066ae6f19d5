"""The spend ledger: completed spend and in-flight holds per rule, at three scopes.

The engine prices each completed call and, before a call is sent, holds its
worst-case cost against every cached rule that covers it (CONTRACT §9). The
ledger keeps those holds and that spend, per :class:`Bucket` (one rule's
account for one caller in one window), so concurrent calls cannot together
overshoot a cap by more than the last admitted call.

Three scopes, one interface (:class:`Ledger`):

* :class:`ProcessLedger`: a dict behind one lock; a reserve and its commit
  cost about a microsecond and a half together on a quiet core, each taking
  the lock once (``benchmarks/bench_ledger.py``).
* :class:`HostLedger`: the processes sharing a cache directory. Taking a file
  lock per call would cost ~50-100 us, so each process *leases* an allowance
  per bucket from a shared file and spends it in memory; a background thread
  writes completed spend and renews or returns leases in batches. Only a
  reservation that its allowance cannot cover takes the file lock on the
  caller's thread, which happens near a cap (or once per bucket and payload);
  every other one costs what the process ledger's does, on the same code.
* ``RedisLedger`` (``_redis_ledger``): the same leasing against Redis, for a
  fleet.

The invariant every scope keeps: completed spend plus everything held or
leased never breaches a bucket's limit, so the sum of admitted calls fits.

Exceptions: :class:`LedgerUnavailable` is the only error a ledger raises, and
only from ``reserve`` on a shared ledger whose store cannot be reached; the
engine then falls back to the next smaller scope.
"""

from __future__ import annotations

import atexit
import heapq
import json
import math
import os
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple, Optional, Protocol, TypeVar, Union

import filelock

from ._fork import renew_after_fork

__all__ = [
    "Bucket",
    "Hold",
    "HostLedger",
    "Ledger",
    "LedgerUnavailable",
    "ProcessLedger",
    "bucket_key",
    "fits",
]

#: Spend is kept in slots this long; "since" is exact to a slot (the slot
#: holding ``since`` still counts, which errs towards refusing).
SLOT_SECONDS = 0.1
#: At most this many slots per bucket; older ones merge (again erring towards refusing).
MAX_SLOTS = 64
#: Hostile metadata could mint a bucket per call: beyond this many, the soonest to expire go.
MAX_BUCKETS = 100_000
#: The least a reservation asks the store for, so a hold of nothing is granted while unbreached.
MIN_ASK = 1e-9
#: Float sums of cents are not exact (100 x 0.01 != 1.0); a breach needs more than noise.
RELATIVE_TOLERANCE = 1e-9


class Bucket(NamedTuple):
    """One rule's account for one caller in one window."""

    #: Stable across processes and hosts: build it with :func:`bucket_key`.
    key: str
    #: The headroom the server's figure leaves: ``threshold - currentValue`` (may be <= 0).
    limit: float
    #: True when reaching ``limit`` exactly breaches (operator ``>=``), False for ``>``.
    inclusive: bool
    #: Epoch seconds, the payload's ``compiledAt``: spend completed before it is in the server's
    #: figure already, so it stops counting.
    since: float
    #: Epoch seconds: the rule's window end (or a day from now when open); forgotten after it.
    expires_at: float


def bucket_key(scope: str, rule_id: object, window_end: object, entry: str = "") -> str:
    """A key that names the same account in every process and host.

    >>> bucket_key("team-1", 7, "2026-12-01T23:59:59Z", "user-42")
    'team-1|7|2026-12-01T23:59:59Z|user-42'
    """
    return f"{scope}|{rule_id}|{window_end}|{entry}"


def fits(total: float, limit: float, inclusive: bool) -> bool:
    """Whether local usage ``total`` leaves the rule unbreached.

    A rule is breached when ``currentValue + local OP threshold``; with ``limit =
    threshold - currentValue`` that is ``local >= limit`` (inclusive) or ``local >
    limit``. A difference within float noise of ``limit`` counts as equal.
    """
    if limit == math.inf:
        return True  # a rule that only reports (shadow, warn-only) never refuses a hold
    slack = RELATIVE_TOLERANCE * max(1.0, abs(limit))
    if inclusive:
        return total < limit - slack
    return total <= limit + slack


class LedgerUnavailable(Exception):
    """A shared ledger's store (the file, Redis) cannot be reached; nothing was held.

    Raised only by ``reserve`` when it needed the store; the engine catches it
    and uses the next smaller scope. ``scope`` names the ledger, ``reason`` the
    failure.
    """

    def __init__(self, scope: str, reason: str) -> None:
        super().__init__(f"{scope} ledger unavailable: {reason}")
        self.scope = scope
        self.reason = reason


class Ledger(Protocol):
    """What the engine needs of a ledger, whatever its scope."""

    scope: str

    def reserve(
        self, buckets: Sequence[Bucket], amounts: Sequence[float], now: float
    ) -> Union[Hold, Bucket]:
        """Hold ``amounts[i]`` on ``buckets[i]`` if every one fits, else hold nothing and
        return the first bucket that does not fit."""
        ...

    def commit(self, hold: Hold, actual: Sequence[float], now: float) -> None:
        """Replace the hold by the actual spend, completed at ``now``."""
        ...

    def release(self, hold: Hold) -> None:
        """Drop the hold: the call failed or was cancelled."""
        ...

    def spent(self, bucket: Bucket, now: float) -> tuple[float, float]:
        """(completed spend since ``bucket.since`` known here, amount held here)."""
        ...

    def describe(self) -> dict[str, Any]:
        """For ``status()``: scope, where, healthy, last error, buckets tracked."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- slots


def slot_counts(slot: int, since: float) -> bool:
    """Whether spend in ``slot`` counts after ``since``: slot ``n`` holds the moments just
    below ``n * SLOT_SECONDS``, the index a commit works out as ``int(now // SLOT_SECONDS) + 1``."""
    return slot * SLOT_SECONDS > since


class Slots:
    """Completed spend by time slot, oldest first, with its running total."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: list[list[Any]] = []  # [slot, amount]
        self.total = 0.0

    def add(self, slot: int, amount: float) -> None:
        entries = self.entries
        self.total += amount
        if entries and entries[-1][0] >= slot:  # same slot, or late: the newer slot errs safe
            entries[-1][1] += amount
            return
        entries.append([slot, amount])
        if len(entries) > MAX_SLOTS:
            oldest = entries.pop(0)
            entries[0][1] += oldest[1]

    def drop_before(self, since: float) -> None:
        entries = self.entries
        keep = 0
        while keep < len(entries) and not slot_counts(entries[keep][0], since):
            keep += 1
        if keep:
            del entries[:keep]
            self.total = math.fsum(amount for _, amount in entries)

    def take(self) -> tuple[tuple[int, float], ...]:
        """Empty the slots, returning what they held."""
        taken = tuple((slot, amount) for slot, amount in self.entries)
        self.entries = []
        self.total = 0.0
        return taken

    def put_back(self, taken: Sequence[tuple[int, float]]) -> None:
        """Return what :meth:`take` took (a failed write), keeping the order."""
        merged = Slots()
        for slot, amount in sorted([*taken, *((s, a) for s, a in self.entries)]):
            merged.add(slot, amount)
        self.entries, self.total = merged.entries, merged.total


# --------------------------------------------------------------------------- accounts


def ceiling_of(limit: float, inclusive: bool) -> float:
    """The most local usage a rule admits: ``fits(t, limit, inclusive)`` is ``t <= ceiling``.

    Worked out once per bucket rather than per call, so that admitting a hold
    is one comparison.
    """
    if limit == math.inf:
        return math.inf
    slack = RELATIVE_TOLERANCE * max(1.0, abs(limit))
    if inclusive:
        return math.nextafter(limit - slack, -math.inf)  # "<" is "<=" the float just below
    return limit + slack


class Account:
    """One bucket's state in this process; subclasses add what their scope tracks.

    A reservation admits ``amount`` when ``spend.total + held + amount <=
    ceiling``. ``ceiling`` is worked out by :meth:`adopt` for the bucket object
    in ``bucket``; the engine reuses a bucket until the rule's figures change,
    so the per-call path only checks that it is the same object.
    """

    __slots__ = ("bucket", "ceiling", "expires_at", "held", "holds", "since", "spend", "used_at")

    def __init__(self, bucket: Bucket) -> None:
        self.since = bucket.since
        self.expires_at = bucket.expires_at
        self.held = 0.0
        #: Open holds: when the last settles, ``held`` is exactly 0.0 again, not float residue.
        self.holds = 0
        #: Completed spend recorded here (a leased account: not yet written to the store).
        self.spend = Slots()
        self.used_at = 0.0
        #: The bucket ``ceiling`` was worked out for; None until then, or once it is stale.
        self.bucket: Optional[Bucket] = None
        self.ceiling = -math.inf

    def adopt(self, bucket: Bucket) -> None:
        """Work out ``ceiling`` for ``bucket`` (and catch up with its ``since``)."""
        raise NotImplementedError

    def admits(self, amount: float) -> bool:
        """Inlined as ``not ... <= ceiling`` on the per-call path: refuses a NaN, as fits() does."""
        return self.spend.total + self.held + amount <= self.ceiling

    def unhold(self, amount: float) -> None:
        self.holds -= 1
        self.held = self.held - amount if self.holds else 0.0

    def figures(self, bucket: Bucket) -> tuple[float, float]:
        """(completed spend since ``bucket.since`` known here, held here)."""
        raise NotImplementedError


AccountT = TypeVar("AccountT", bound=Account)


class Book(dict[str, AccountT]):
    """Accounts by key, bounded: expired ones are swept, the soonest-expiring evicted."""

    def __init__(self, make: Callable[[Bucket], AccountT], capacity: int = MAX_BUCKETS) -> None:
        super().__init__()
        self._make = make
        self._capacity = capacity
        self._expiries: list[tuple[float, int, str, AccountT]] = []
        self._serial = 0
        #: Sweeping is due when a call's ``now`` reaches this: at most once a second.
        self.next_sweep = 0.0

    def open(self, bucket: Bucket) -> AccountT:
        """The bucket's account, made if new, its ceiling worked out for ``bucket``."""
        account = self.get(bucket.key)
        if account is None:
            account = self._add(bucket)
        account.adopt(bucket)
        return account

    def _add(self, bucket: Bucket) -> AccountT:
        account = self._make(bucket)
        self[bucket.key] = account
        self._serial += 1
        heapq.heappush(self._expiries, (bucket.expires_at, self._serial, bucket.key, account))
        while len(self) > self._capacity:
            self._pop_soonest()
        return account

    def sweep(self, now: float) -> None:
        """Forget accounts whose window has ended (a hold on one still settles harmlessly)."""
        self.next_sweep = now + 1.0
        while self._expiries and self._expiries[0][0] < now:
            self._pop_soonest()

    def _pop_soonest(self) -> None:
        _, _, key, account = heapq.heappop(self._expiries)
        if self.get(key) is account:
            del self[key]


class Hold(list[Any]):
    """An admitted reservation: the accounts it holds on, and how much on each.

    Opaque to the engine. It is the list of its accounts, so that admitting a
    call allocates one object; settling empties it, and settling it again (a
    commit after a release) does nothing. ``amounts`` is the caller's
    sequence, kept rather than copied: the engine builds one per call.
    """

    __slots__ = ("amounts",)

    amounts: Sequence[float]

    def __repr__(self) -> str:
        state = "settled" if not self else f"{sum(self.amounts):g} held"
        return f"Hold({len(self.amounts)} buckets, {state})"


class AccountLedger:
    """What every scope shares: a book behind one lock, holds and their settling.

    The per-call methods take the lock once, call nothing on an account whose
    ceiling they know, and avoid ``zip`` and ``with`` (each costs more here
    than the arithmetic): a reserve and its commit cost about 1.5 us on a
    quiet core (``benchmarks/bench_ledger.py``).
    """

    scope = "process"

    def __init__(self, make: Callable[[Bucket], Any], capacity: int = MAX_BUCKETS) -> None:
        self._make = make
        self._capacity = capacity
        self._lock = threading.Lock()
        self._book: Book[Any] = Book(make, capacity)
        #: (start, end, index) of the slot commits go to lately, so most commits skip the division.
        self._slot = (0.0, 0.0, 0)
        renew_after_fork(self)

    def _after_fork_in_child(self) -> None:
        """A child starts empty: the parent's holds will never settle here."""
        self._lock = threading.Lock()
        self._book = Book(self._make, self._capacity)

    def _admit(
        self, buckets: Sequence[Bucket], amounts: Sequence[float], now: float
    ) -> Union[Hold, Bucket]:
        """Hold every amount if each fits this process's figures, else the first that does not."""
        hold = Hold()
        lock = self._lock
        lock.acquire()
        try:
            book = self._book
            if now >= book.next_sweep:
                book.sweep(now)
            index = 0
            for bucket in buckets:
                amount = amounts[index]
                account = book.get(bucket[0])
                if account is None or account.bucket is not bucket:
                    account = book.open(bucket)
                if not account.spend.total + account.held + amount <= account.ceiling:  # admits()
                    _unhold(hold, amounts)
                    return bucket
                account.held += amount
                account.holds += 1
                account.used_at = now
                hold.append(account)
                index += 1  # noqa: SIM113 (enumerate costs more than the loop body)
        finally:
            lock.release()
        hold.amounts = amounts
        return hold

    def release(self, hold: Hold) -> None:
        with self._lock:
            _unhold(hold, hold.amounts)
            hold.clear()

    def commit(self, hold: Hold, actual: Sequence[float], now: float) -> None:
        start, end, slot = self._slot
        if not start <= now < end:
            slot = self._slot_of(now)
        lock = self._lock
        lock.acquire()
        try:
            amounts, index = hold.amounts, 0
            for account in hold:
                spent = actual[index]
                account.holds -= 1
                account.held = account.held - amounts[index] if account.holds else 0.0
                spend = account.spend
                entries = spend.entries
                if entries and entries[-1][0] >= slot:  # Slots.add(), the usual case inlined
                    entries[-1][1] += spent
                    spend.total += spent
                else:
                    spend.add(slot, spent)
                index += 1  # noqa: SIM113 (enumerate costs more than the loop body)
            hold.clear()
        finally:
            lock.release()

    def _slot_of(self, now: float) -> int:
        """The slot ``now`` is in, remembered with its bounds; it ends after ``now``, so the
        spend counts under every ``since`` up to ``now`` (see :func:`slot_counts`)."""
        slot = int(now // SLOT_SECONDS) + 1
        self._slot = ((slot - 1) * SLOT_SECONDS, slot * SLOT_SECONDS, slot)
        return slot

    def spent(self, bucket: Bucket, now: float) -> tuple[float, float]:
        with self._lock:
            account = self._book.get(bucket.key)
            if account is None or now > account.expires_at:
                return 0.0, 0.0
            figures: tuple[float, float] = account.figures(bucket)
            return figures

    def close(self) -> None:
        with self._lock:
            self._book.clear()

    def _describe(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            tracked = len(self._book)
            held = math.fsum(account.held for account in self._book.values())
        return {"scope": self.scope, "buckets": tracked, "held": held, **extra}


def _unhold(accounts: Sequence[Account], amounts: Sequence[float]) -> None:
    """Give back what ``accounts`` hold (a settled hold has none left)."""
    for account, amount in zip(accounts, amounts):
        account.unhold(amount)


# --------------------------------------------------------------------------- process


class ProcessAccount(Account):
    __slots__ = ()

    def adopt(self, bucket: Bucket) -> None:
        self._catch_up(bucket.since)
        self.ceiling = ceiling_of(bucket.limit, bucket.inclusive)
        self.bucket = bucket

    def figures(self, bucket: Bucket) -> tuple[float, float]:
        self._catch_up(bucket.since)
        return self.spend.total, self.held

    def _catch_up(self, since: float) -> None:
        if since > self.since:
            self.since = since
            self.spend.drop_before(since)


class ProcessLedger(AccountLedger):
    """Spend and holds of this process only: the default scope."""

    scope = "process"

    def __init__(self, capacity: int = MAX_BUCKETS) -> None:
        super().__init__(ProcessAccount, capacity)

    #: This process's figures are the whole truth here: what fits them is admitted.
    reserve = AccountLedger._admit

    def describe(self) -> dict[str, Any]:
        return self._describe(healthy=True, last_error=None)


# --------------------------------------------------------------------------- leasing


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


# --------------------------------------------------------------------------- per host


LEDGER_FILE = "revenium_enforcement_ledger.{scope}.json"
#: A bigger file is not ours: it is dropped, not parsed.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Entries kept in the file; every sync rewrites it, so it stays small.
MAX_FILE_BUCKETS = 10_000
_FILE_VERSION = 1


class FileStore:
    """The host's shared ledger: one JSON file, rewritten atomically under a file lock.

    A corrupt or hostile file is read as empty (its spend is the server's to
    count by the next payload) and said so in ``problems``; the next write
    replaces it.
    """

    def __init__(self, directory: str, scope: str, lock_timeout: float = 2.0) -> None:
        self.where = os.path.join(directory, LEDGER_FILE.format(scope=_safe(scope)))
        self._directory = directory
        self._lock_timeout = lock_timeout
        self.problems: dict[str, Any] = {"file_problem": None}
        self._file_lock = self._make_lock()

    def _make_lock(self) -> filelock.FileLock:
        return filelock.FileLock(
            self.where + ".lock", timeout=self._lock_timeout, mode=0o600, poll_interval=0.001
        )

    def after_fork_in_child(self) -> None:
        self._file_lock = self._make_lock()

    def close(self) -> None:
        pass

    def settle(
        self, holder: str, settlements: Sequence[Settlement], now: float, lease_until: float
    ) -> list[Grant]:
        try:
            os.makedirs(self._directory, mode=0o700, exist_ok=True)
            with self._file_lock:
                buckets = self._read()
                grants = [
                    settle_entry(buckets.setdefault(s.bucket.key, {}), s, holder, now, lease_until)
                    for s in settlements
                ]
                self._write(_bounded(buckets, now))
        except (OSError, filelock.Timeout, ValueError, TypeError) as error:
            raise LedgerUnavailable("host", f"{type(error).__name__}: {error}") from error
        return grants

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self.where, "rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return {}
        if len(raw) > MAX_FILE_BYTES:
            return self._reject(f"larger than {MAX_FILE_BYTES} bytes")
        try:
            document = json.loads(raw)
        except ValueError as error:
            return self._reject(f"not JSON: {error}")
        if not isinstance(document, dict) or document.get("version") != _FILE_VERSION:
            return self._reject("not a ledger of this version")
        buckets = document.get("buckets")
        if not isinstance(buckets, dict):
            return self._reject("no buckets")
        return {key: entry for key, entry in buckets.items() if _valid_entry(key, entry)}

    def _reject(self, reason: str) -> dict[str, dict[str, Any]]:
        self.problems["file_problem"] = f"{self.where} ignored ({reason}); started empty"
        return {}

    def _write(self, buckets: dict[str, dict[str, Any]]) -> None:
        body = json.dumps({"version": _FILE_VERSION, "buckets": buckets}, separators=(",", ":"))
        fd, temporary = tempfile.mkstemp(dir=self._directory, prefix=".ledger-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
            os.replace(temporary, self.where)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise


def _safe(scope: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in scope)[:64] or "default"


def _finite(value: object, low: float = 0.0) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= low
    )


def _valid_entry(key: object, entry: object) -> bool:
    """Every field a number where numbers go: a hostile file cannot make us raise."""
    if not isinstance(key, str) or not isinstance(entry, dict):
        return False
    spend, leases = entry.get("spend", {}), entry.get("leases", {})
    return (
        _finite(entry.get("since", 0.0), -math.inf)
        and _finite(entry.get("expires_at", 0.0), -math.inf)
        and isinstance(spend, dict)
        and all(s.isascii() and s.isdigit() and _finite(a) for s, a in spend.items())
        and isinstance(leases, dict)
        and all(
            isinstance(lease, list) and len(lease) == 2 and all(_finite(x) for x in lease)
            for lease in leases.values()
        )
    )


def _bounded(buckets: dict[str, dict[str, Any]], now: float) -> dict[str, dict[str, Any]]:
    live = {k: e for k, e in buckets.items() if float(e.get("expires_at", 0.0)) >= now}
    if len(live) <= MAX_FILE_BUCKETS:
        return live
    latest = sorted(live, key=lambda k: float(live[k].get("expires_at", 0.0)), reverse=True)
    return {key: live[key] for key in latest[:MAX_FILE_BUCKETS]}


class HostLedger(LeasedLedger):
    """Shared by the processes whose cache directory is ``directory`` (gunicorn's workers).

    >>> ledger = HostLedger("/tmp/cache", "team-1")  # doctest: +SKIP
    """

    scope = "host"

    def __init__(self, directory: str, scope: str, **options: Any) -> None:
        lock_timeout = options.pop("lock_timeout", 2.0)
        super().__init__(FileStore(directory, scope, lock_timeout), **options)
