"""The spend ledger's interface, its in-memory core, and the ledger of one process.

Before a call is sent the engine holds its worst-case cost against every
cached rule that covers it, and it prices each completed call (CONTRACT §9).
A ledger keeps those holds and that spend per :class:`Bucket` (one rule's
account for one caller in one window), so concurrent calls cannot together
overshoot a cap by more than the last admitted call. Every scope answers to
:class:`Ledger` and admits holds on one core, :class:`AccountLedger` (a
bounded book of accounts behind one lock):

* :class:`ProcessLedger`, here, is that core alone: a reserve and its commit
  cost about 1.5 us together on a quiet core (``benchmarks/bench_ledger.py``).
* ``HostLedger`` (``_host_ledger``, a cache directory's processes) and
  ``RedisLedger`` (``_redis_ledger``, a fleet) lease allowances from a shared
  store instead of meeting it per call (``_leased_ledger``).

Every scope keeps one invariant: completed spend plus everything held or
leased never breaches a bucket's limit, so the sum of admitted calls fits.
:class:`LedgerUnavailable` is the only error a ledger raises, and only from
``reserve`` on a shared ledger whose store cannot be reached; the engine then
falls back to the next smaller scope.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple, Optional, Protocol, TypeVar, Union

from ._fork import renew_after_fork

__all__ = [
    "Bucket",
    "Hold",
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
