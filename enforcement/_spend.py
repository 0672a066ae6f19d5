"""Local spend: what this host has spent since the server's figures (CONTRACT §9).

The server's verdict is at best a poll interval old; a runaway loop spends a
poll interval of traffic past its cap before the next one says "breached".
So every hooked call is accounted for here, between polls:

- before it is sent, :meth:`LocalSpend.hold` holds its worst case (the
  estimated prompt plus the largest output the request allows, at the
  model's price) on every rule that covers it (:meth:`RuleSet.accounts`),
  in the ledger; a hold that does not fit under a blocking rule refuses the
  call with ``source="local"``;
- when it completes, :meth:`Held.settle` replaces the hold with what the
  provider reports it used, priced (:class:`~._prices.PriceTable`); an error
  or a cancelled stream releases it;
- a rule's local view is the server's figure (``currentValue``, the
  caller's entry, the caller's department balance) plus the spend completed
  after the payload's ``compiledAt`` plus the holds in flight, so a new
  payload drops what it already counts.

The ledger is the largest scope that works (``_ledger_chain``): Redis
across hosts, the cache directory across the host's processes, else this
process. What a call holds and uses under each metric is ``_amounts``'.

Where accrual goes: here (when and how much), ``_accounts`` (which rules a
call counts toward), ``_amounts`` (a new metric), ``_ledger`` (where it is
kept).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import weakref
from typing import Any, Callable, Optional

from ._accounts import Account
from ._amounts import held_amount, local_refusal, used_amount
from ._callfacts import CallFacts
from ._ledger import Bucket, Hold, Ledger, fits
from ._ledger_chain import LedgerChain
from ._mirror import snapshot_scope
from ._prices import PriceTable
from ._ruleset import Notice, RuleSet, Verdict
from ._settings import Settings
from ._usage import Estimate, Usage
from ._wire import Payload, coerce_float

__all__ = ["Held", "LocalSpend"]

logger = logging.getLogger("enforcement")

_OPEN_WINDOW = 86_400.0  # a rule with no window end: its buckets are kept a day
_UNLIMITED = math.inf
_RECENT_BUCKETS = 256
_BUCKET_CACHE_SIZE = 4096
_NOTHING: tuple[None, None] = (None, None)  # hold()'s answer when nothing is held or said


def _no_payload() -> None:
    """What a dead weak reference gives: no payload observed yet."""


class _Slot:
    """A pooled rule's account with its bucket and the bucket its holds are admitted on.

    Worked out once per account object and payload, so that a call holds on
    a pooled rule with one dict lookup. ``seen`` is the status view's epoch
    (:meth:`LocalSpend._remember`) at which the bucket was last known to be
    in it: while the view has not changed since, a hold does not write it.
    """

    __slots__ = ("account", "admits", "bucket", "seen")

    def __init__(self, account: Account, bucket: Bucket, admits: Bucket) -> None:
        self.account = account
        self.bucket = bucket
        self.admits = admits
        self.seen = -1


def _digest(entry: str) -> str:
    """A grouped entry (an email, an id) as a short digest: status output holds no email."""
    return hashlib.blake2b(entry.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class Held:
    """One admitted call's hold; :meth:`settle` it exactly once."""

    __slots__ = (
        "_accounts",
        "_amounts",
        "_buckets",
        "_hold",
        "_ledger",
        "_model",
        "_provider",
        "_settled",
        "_spend",
    )

    def __init__(
        self,
        spend: LocalSpend,
        ledger: Ledger,
        hold: Hold,
        accounts: tuple[Account, ...],
        buckets: list[Bucket],
        amounts: list[float],
        model: Optional[str],
        provider: Optional[str],
    ) -> None:
        self._spend = spend
        self._ledger = ledger
        self._hold = hold
        self._accounts = accounts
        self._buckets = buckets
        self._amounts = amounts
        self._model = model
        self._provider = provider
        self._settled = False

    def settle(self, usage: Optional[Usage]) -> None:
        """The call is done: commit what ``usage`` cost, or release the hold (``None``)."""
        if self._settled:
            return
        self._settled = True
        self._spend.settle(self, usage)


class LocalSpend:
    """One engine's local spend: the prices, the ledgers, holds and settlements."""

    def __init__(
        self,
        settings: Settings,
        *,
        prices: PriceTable,
        ledgers: LedgerChain,
        wall_clock: Callable[[], float],
    ) -> None:
        self.prices = prices
        self._scope = snapshot_scope(settings.base_url, settings.team_id)
        self._ledgers = ledgers
        self._wall_clock = wall_clock
        self._since = 0.0
        self._lock = threading.Lock()
        # Buckets by (rule, entry, server figure, unlimited): emptied by each new cut-off.
        self._bucket_cache: dict[tuple[Any, str, float, bool], Bucket] = {}
        # The payload last observed, by weak reference: its decoded rules are
        # freed once compiled, and holding them here would keep them all alive.
        self._payload: Callable[[], Optional[Payload]] = _no_payload
        # The buckets calls were held on lately, for status(): bounded, oldest forgotten.
        self._recent: dict[str, tuple[Account, Bucket]] = {}
        # Counts the changes to _recent: a slot whose ``seen`` is current needs no write.
        self._epoch = 0
        # Slots by id(account) (the slot keeps the account alive): emptied with the buckets.
        self._slots: dict[int, _Slot] = {}
        self.holds = 0
        self.open_holds = 0
        self.settled = 0
        self.unpriced = 0
        self.refused = 0
        # True once a settled call may have breached a rule locally (see _note_overrun):
        # until then a plain check has nothing local to consult.
        self.active = False

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        wall_clock: Callable[[], float],
        prices: Optional[PriceTable] = None,
    ) -> LocalSpend:
        """Local spend as the settings configure it: the ledgers, the price table."""
        scope = snapshot_scope(settings.base_url, settings.team_id)
        if prices is None:
            prices = (
                PriceTable.from_file(settings.prices_file) if settings.prices_file else PriceTable()
            )
        chain = LedgerChain.for_settings(settings, scope, wall_clock)
        return cls(settings, prices=prices, ledgers=chain, wall_clock=wall_clock)

    # -- rule sets -------------------------------------------------------------------

    def observe(self, payload: Payload) -> None:
        """A payload arrived (new or the same): spend before its ``compiledAt`` stops counting."""
        compiled_at = payload.compiled_at
        since = compiled_at if compiled_at is not None else self._wall_clock()
        if since != self._since:
            self._since = since
            self.active = False
        if payload is not self._payload():  # new rules or a later cut-off: new buckets
            self._payload = weakref.ref(payload)
            self._bucket_cache = {}
            self._slots = {}

    def prepare(self, ruleset: RuleSet) -> None:
        """On the poller thread: index the rules for accrual and import the price table."""
        ruleset.prepare_accounts()
        self.prices.preload()

    # -- before the call ---------------------------------------------------------------

    def over(self, ruleset: RuleSet, facts: CallFacts, now: float) -> Optional[Verdict]:
        """The refusal local spend alone gives a call (nothing held): for a plain check.

        Never raises: a failure here lets the call through, as the server's verdict would.
        """
        try:
            for account in ruleset.accounts(facts, now):
                if not account.blocks or account.shadow:
                    continue
                bucket = self._bucket(account, now)
                local = self._ledgers.spent(bucket, now)
                if local is not None and not fits(local, bucket.limit, bucket.inclusive):
                    return Verdict(local_refusal(account, local), ())
        except Exception:
            logger.debug("Local spend check failed unexpectedly; letting it through", exc_info=True)
        return None

    def hold(
        self,
        ruleset: RuleSet,
        facts: CallFacts,
        estimate: Optional[Callable[[], Estimate]],
        now: float,
    ) -> tuple[Optional[Held], Optional[Verdict]]:
        """Hold the call's worst case on every rule that covers it.

        Returns the :class:`Held` to settle (``None`` when no rule accrues the
        call) and what the hold noticed: the refusal when a blocking rule has
        no room for it, what non-blocking and shadow rules would say. Never
        raises: a failure here lets the call through unheld.
        """
        try:
            return self._hold(ruleset, facts, estimate, now)
        except Exception:
            logger.debug("Holding a call's spend failed; letting it through", exc_info=True)
            return _NOTHING

    def _hold(
        self,
        ruleset: RuleSet,
        facts: CallFacts,
        estimate: Optional[Callable[[], Estimate]],
        now: float,
    ) -> tuple[Optional[Held], Optional[Verdict]]:
        """:meth:`hold`, written for the call that one or two pooled rules cover."""
        accounts = ruleset.accounts(facts, now)
        if not accounts:
            return _NOTHING
        model = facts.model if isinstance(facts.model, str) else None
        provider = facts.provider if isinstance(facts.provider, str) else None
        worst = self._estimate(estimate)
        amounts, buckets, admitting, stale = self._plan(accounts, worst, model, provider, now)
        reserved = self._ledgers.reserve(admitting, amounts, now)
        if reserved is None:
            return _NOTHING
        ledger, result = reserved
        if isinstance(result, Bucket):
            return None, self._refusal(accounts, admitting, amounts, result, now)
        verdict = None
        if admitting is not buckets:  # a shadow or warn-only rule among them
            notices = self._notice_non_blocking(accounts, buckets, ledger, now)
            verdict = Verdict(None, tuple(notices)) if notices else None
        with self._lock:
            self.holds += 1
            self.open_holds += 1
            if stale is not None:
                self._remember(stale)
        return Held(self, ledger, result, accounts, buckets, amounts, model, provider), verdict

    def _plan(
        self,
        accounts: tuple[Account, ...],
        worst: Estimate,
        model: Optional[str],
        provider: Optional[str],
        now: float,
    ) -> tuple[list[float], list[Bucket], list[Bucket], Optional[list[_Slot]]]:
        """What to hold on which bucket, the buckets to admit it on, the slots to remember.

        A pooled rule's buckets come from its cached slot (:meth:`_slot`); the
        buckets admitted on are the held ones themselves, the same list, unless
        a rule only reports; a cost is priced once however many rules add it
        up; a slot is remembered for status only when the view changed since.
        """
        prices = self.prices
        amounts: list[float] = []
        buckets: list[Bucket] = []
        admitting = buckets
        stale: Optional[list[_Slot]] = None
        cost: Optional[float] = None
        slots, epoch = self._slots, self._epoch
        for account in accounts:
            slot = slots.get(id(account))
            if slot is None or slot.account is not account:
                slot = self._slot(account, now)
            if slot.seen != epoch:
                stale = [slot] if stale is None else [*stale, slot]
            metric = account.metric
            if metric != "cost":
                amounts.append(held_amount(metric, worst, prices, model, provider))
            else:
                if cost is None:
                    cost = held_amount(metric, worst, prices, model, provider)
                amounts.append(cost)
            bucket, admits = slot.bucket, slot.admits
            buckets.append(bucket)
            if admits is not bucket and admitting is buckets:
                admitting = buckets[:-1]  # from here on, a list of its own
            if admitting is not buckets:
                admitting.append(admits)
        return amounts, buckets, admitting, stale

    def _refusal(
        self,
        accounts: tuple[Account, ...],
        admitting: list[Bucket],
        amounts: list[float],
        refused: Bucket,
        now: float,
    ) -> Verdict:
        index = admitting.index(refused)
        local = self._ledgers.spent(refused, now) or 0.0
        self.refused += 1
        return Verdict(local_refusal(accounts[index], local + amounts[index]), ())

    def _notice_non_blocking(
        self,
        accounts: tuple[Account, ...],
        buckets: list[Bucket],
        ledger: Ledger,
        now: float,
    ) -> list[Notice]:
        """Shadow rules that would refuse and warn-only rules over, counting local spend."""
        notices: list[Notice] = []
        for account, bucket in zip(accounts, buckets):
            if account.blocks != account.shadow:
                continue  # blocking: judged by the hold; a non-blocking shadow: says nothing
            if not fits(0.0, bucket.limit, bucket.inclusive):
                continue  # over on the server's figures alone: the server's verdict said so
            used, held = ledger.spent(bucket, now)
            if not fits(used + held, bucket.limit, bucket.inclusive):
                kind = "shadow" if account.shadow else "warn_only"
                value = account.base + used + held
                rule = account.rule
                notices.append(Notice(kind, rule, rule.identifier, value, source="local"))
        return notices

    # -- after the call ----------------------------------------------------------------

    def settle(self, held: Held, usage: Optional[Usage]) -> None:
        """Commit ``usage``'s cost in place of the hold, or release it. Never raises."""
        committed = False
        try:
            if usage is None:
                held._ledger.release(held._hold)
            else:
                actual = self._actual(held, usage)
                now = self._wall_clock()
                held._ledger.commit(held._hold, actual, now)
                committed = True
                if not self.active:
                    self._note_overrun(held, actual, now)
        except Exception:
            logger.debug("Could not settle a call's spend", exc_info=True)
        with self._lock:
            self.open_holds -= 1
            if committed:
                self.settled += 1

    def _actual(self, held: Held, usage: Usage) -> list[float]:
        """What the call used under each account's metric; a cost is priced once."""
        prices, model, provider = self.prices, held._model, held._provider
        actual: list[float] = []
        cost: Optional[float] = None
        priced = False
        for account in held._accounts:
            metric = account.metric
            if metric != "cost":
                used = used_amount(metric, usage, prices, model, provider)
            else:
                if not priced:
                    cost, priced = used_amount(metric, usage, prices, model, provider), True
                used = cost
            if used is None:
                self.unpriced += 1
                used = 0.0
            actual.append(used)
        return actual

    def _note_overrun(self, held: Held, actual: list[float], now: float) -> None:
        """A call that cost more than its hold may have breached a rule: plain checks look again.

        A call that cost no more than it held cannot: its hold fitted. So a
        plain :meth:`Engine.check` consults local spend only after such an
        overrun, until the next payload.
        """
        for bucket, amount, cost in zip(held._buckets, held._amounts, actual):
            if cost > amount:
                used, holding = held._ledger.spent(bucket, now)
                if not fits(used + holding, bucket.limit, bucket.inclusive):
                    self.active = True
                    return

    # -- amounts -----------------------------------------------------------------------

    def _estimate(self, estimate: Optional[Callable[[], Estimate]]) -> Estimate:
        if estimate is None:
            return Estimate(0, None)
        try:
            return estimate()
        except Exception:
            logger.debug("Could not estimate a call; holding its output only", exc_info=True)
            return Estimate(0, None)

    # -- buckets -----------------------------------------------------------------------

    def _slot(self, account: Account, now: float) -> _Slot:
        """``account``'s buckets; kept for a pooled rule, whose account is one object."""
        bucket = self._bucket(account, now)
        blocks = account.blocks and not account.shadow
        slot = _Slot(account, bucket, bucket if blocks else self._bucket(account, now, True))
        if account.entry == "":  # grouped and department accounts are built per call
            if len(self._slots) >= _BUCKET_CACHE_SIZE:
                self._slots.clear()
            self._slots[id(account)] = slot
        return slot

    def _bucket(self, account: Account, now: float, unlimited: bool = False) -> Bucket:
        """The ledger's account for ``account``, built once per rule, entry and server figure.

        ``unlimited``: the same account with no limit, which a rule that only
        reports holds on. It is cached too, because the ledger works out a
        bucket's ceiling once per bucket object, not per call.
        """
        cache_key = (account.rule, account.entry, account.base, unlimited)
        bucket = self._bucket_cache.get(cache_key)
        if bucket is None:
            if len(self._bucket_cache) >= _BUCKET_CACHE_SIZE:
                self._bucket_cache.clear()
            if unlimited:  # the limited one's fields exactly, so both name one account
                bucket = self._bucket(account, now)._replace(limit=_UNLIMITED)
            else:
                bucket = self._new_bucket(account, now)
            self._bucket_cache[cache_key] = bucket
        return bucket

    def _new_bucket(self, account: Account, now: float) -> Bucket:
        rule = account.rule
        since = coerce_float(rule.raw.get("compiledAt"))
        if since is None or not math.isfinite(since):
            since = self._since
        end = account.window_end
        return Bucket(
            key=f"{self._scope}|{rule.identifier}|{rule.window_end_raw}|{account.entry}",
            limit=account.headroom,
            inclusive=account.inclusive,
            since=since,
            expires_at=end if end is not None else now + _OPEN_WINDOW,
        )

    # -- status ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {
            "holds": self.holds,
            "holds_open": self.open_holds,
            "holds_refused": self.refused,
            "settled": self.settled,
            "unpriced": self.unpriced,
        }

    def describe(self) -> dict[str, Any]:
        """For ``status()``: the ledger in use, the ones failing, the counts."""
        return {
            "ledger": self._ledgers.in_use(),
            "ledgers": self._ledgers.describe(),
            **self.counts(),
            "rules": self.by_rule(),
            "prices": self.prices.describe(),
        }

    def _remember(self, slots: list[_Slot]) -> None:
        """Keep the buckets held on lately for :meth:`by_rule` (under the lock).

        Every change bumps the epoch, and a slot is marked seen only while its
        bucket is there, so a slot marked current is in the view.
        """
        recent = self._recent
        for slot in slots:
            bucket = slot.bucket
            known = recent.get(bucket.key)
            if known is None or known[1] is not bucket:  # new, or a new figure for it
                recent[bucket.key] = (slot.account, bucket)
                self._epoch += 1
                if len(recent) > _RECENT_BUCKETS:
                    recent.pop(next(iter(recent)), None)
        for slot in slots:
            known = recent.get(slot.bucket.key)
            slot.seen = self._epoch if known is not None and known[1] is slot.bucket else -1

    def by_rule(self) -> list[dict[str, Any]]:
        """Local spend on the buckets held on lately: rule, entry, server figure, local, limit."""
        now = self._wall_clock()
        with self._lock:
            recent = list(self._recent.values())
        rows = []
        for account, bucket in recent:
            if bucket.expires_at < now:
                continue
            rows.append(
                {
                    "rule_id": account.rule.identifier,
                    "rule_name": account.rule.name,
                    "entry_digest": _digest(account.entry) if account.entry else "",
                    "metric": account.metric,
                    "server": account.base,
                    "local": self._ledgers.spent(bucket, now),
                    "threshold": account.threshold,
                }
            )
        return rows

    def close(self) -> None:
        self._ledgers.close()
