"""The engine: one team's rules, kept fresh, and the verdict for each call.

All mutable state lives here, so several teams can share a process and each
test builds its own engine. The hot path (:meth:`Engine.check`) reads the
switches, one attribute holding the current :class:`RuleSet` and the clock;
when the rule set says nobody is over a limit it returns without looking at
the call at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import httpx

from ._callfacts import CallFacts
from ._errors import BudgetExceededError, EnforcementUnavailableError
from ._events import Decision, Listener
from ._feed import Feed, FeedResult, RetryPolicy
from ._fork import renew_after_fork
from ._mirror import Mirror, SnapshotMeta
from ._poller import Poller
from ._ruleset import CompiledRule, Notice, RuleSet, RuleVerdict
from ._settings import Settings, Switches, warn_once
from ._usage import Estimate, Spend
from ._wire import Payload

__all__ = ["Engine", "EngineStatus", "Explanation"]

logger = logging.getLogger("enforcement")

CACHE_TTL = 120.0
# Rules another process of the host fetched are adopted for at most this many
# poll intervals in a row; then this process asks the feed itself. It bounds
# how long a forged but well-sealed sidecar (its author holds the API key) can
# keep a process off the feed, and is large enough that a host of up to ten
# processes still sends about one request per interval between them.
SELF_FETCH_EVERY = 10
UNINITIALIZED_MESSAGE = (
    "Request blocked: enforcement cache is uninitialized and REVENIUM_CB_FAIL_MODE=closed."
)
_NEVER = float("-inf")


@dataclass(frozen=True)
class EngineStatus:
    """What the engine knows about its rules, as a value (for the CLI, health checks)."""

    team_id: str
    base_url: str
    configured: bool
    enabled: bool
    bypass: bool
    fail_closed: bool
    loaded: bool
    stale: bool
    source: Optional[str]
    generation: int
    rule_count: int
    tripped_count: int
    last_attempt_at: Optional[float]
    last_success_at: Optional[float]
    last_error: Optional[str]
    consecutive_failures: int
    etag: Optional[str]
    poller_alive: bool
    snapshot_path: Optional[str]
    counters: Mapping[str, int]


@dataclass(frozen=True)
class Explanation:
    """Why a call would pass or be refused, rule by rule."""

    enabled: bool
    bypass: bool
    loaded: bool
    error: Optional[BudgetExceededError]
    rules: list[RuleVerdict] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return self.error is not None


class Engine:
    """Holds one team's rules and judges calls against them.

    >>> engine = Engine(environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true"})
    >>> engine.check({"subscriber": {"email": "dev@example.com"}}, model="gpt-4o")
    >>> engine.close()

    ``environ`` is where the settings and the live switches are read (the
    process environment by default); ``settings`` overrides what is fetched
    and where it is mirrored. ``retry_policy`` and ``timeout`` shape each
    read of the feed; ``transport``, ``clock`` and ``wall_clock`` are for tests.
    """

    def __init__(
        self,
        settings: Optional[Settings] = None,
        *,
        environ: Optional[Mapping[str, str]] = None,
        transport: Optional[httpx.BaseTransport] = None,
        retry_policy: Optional[RetryPolicy] = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self.settings = settings if settings is not None else Settings.from_env(self._environ)
        switches = Switches(self._environ)
        self._off = switches.off
        self._bypass = switches.bypass
        self._enabled = switches.enabled
        self._fail_closed = switches.fail_closed
        self._transport = transport
        self._retry_policy = retry_policy or RetryPolicy()
        self._timeout = timeout
        self._clock = clock
        self._wall_clock = wall_clock
        self._ruleset: Optional[RuleSet] = None
        self._fresh_until = _NEVER
        self._source: Optional[str] = None
        self._etag: Optional[str] = None
        self._generation = 0
        self._started = False
        # Held only while the first call reads the disk snapshot, which every
        # call racing it waits for (CONTRACT §7). Tests hold it to fork mid-load.
        self._start_lock = threading.Lock()
        self._feed: Optional[Feed] = None
        self._feed_lock = threading.Lock()
        self._poller = Poller(self._refresh, name=f"enforcement-poller-{self.settings.team_id}")
        self._cooldown_until = _NEVER
        # When adopting other processes' fetches stops and this one fetches itself.
        self._self_fetch_due: Optional[float] = None
        # Since when the host lock could not be taken (its holder may be stopped).
        self._lock_missed_since: Optional[float] = None
        self._failures = 0
        self._last_attempt_at: Optional[float] = None
        self._last_success_at: Optional[float] = None
        self._last_error: Optional[str] = None
        self._listeners: list[Listener] = []
        self._warned_lock = threading.Lock()
        self._warned_rules: dict[str, Any] = {}
        self._warned_callers: set[tuple[int, str, int]] = set()
        self._counters = {
            "blocked": 0,
            "shadow": 0,
            "warn_only": 0,
            "warn_tier": 0,
            "fail_closed": 0,
        }
        self._mirror = self._make_mirror()
        # (size, mtime) of the snapshot's rules file our current rules came from or went to.
        self._snapshot_file: Optional[tuple[int, int]] = None
        self._fetch_ready = self._validate_configuration(warn=False)
        renew_after_fork(self)

    # -- configuration -----------------------------------------------------

    def _make_mirror(self) -> Optional[Mirror]:
        settings = self.settings
        if not settings.cache_dir or not settings.team_id:
            return None
        return Mirror(
            settings.cache_dir, settings.base_url, settings.team_id, secret=settings.api_key
        )

    def _validate_configuration(self, warn: bool = True) -> bool:
        """Whether rules can be fetched; with ``warn``, each missing piece is warned about once.

        Warned on the first enabled call, not when the engine is built: a
        process that never enabled enforcement hears nothing.
        """
        settings = self.settings
        if not warn:
            return bool(settings.api_key and settings.team_id and set(settings.team_id) - {"."})
        if not settings.api_key:
            warn_once(
                "config:api_key",
                "Spending caps are not fetched: REVENIUM_METERING_API_KEY is not set.",
            )
            return False
        if not settings.team_id:
            warn_once(
                "config:team_id", "Spending caps are not fetched: REVENIUM_TEAM_ID is not set."
            )
            return False
        if set(settings.team_id) <= {"."}:
            warn_once(
                "config:team_dots",
                "REVENIUM_TEAM_ID=%r is not a team id; nothing is fetched.",
                settings.team_id,
            )
            return False
        if not settings.api_key.startswith(("hak_", "rev_")):
            warn_once(
                "config:key_prefix",
                "REVENIUM_METERING_API_KEY does not start with hak_ or rev_; using it anyway.",
            )
        return True

    # -- the hot path --------------------------------------------------------

    def check(
        self,
        usage_metadata: Optional[Mapping[str, Any]] = None,
        *,
        model: Optional[str] = None,
        provider: Optional[str] = None,
    ) -> None:
        """Raise :class:`BudgetExceededError` when a tripped rule covers this call.

        Never waits on the network and never raises anything else.
        """
        if self._off():
            return
        ruleset = self._ruleset
        if ruleset is None or self._clock() > self._fresh_until:
            ruleset = self._cold_or_stale()
            if ruleset is None:
                if self._fail_closed():
                    self._counters["fail_closed"] += 1
                    raise EnforcementUnavailableError(UNINITIALIZED_MESSAGE)
                return
        if ruleset.quiet or not ruleset.may_cover(model, provider):
            return
        # Evaluated here rather than in a helper: every frame a raised error
        # passes through costs as much as a whole allowed check.
        try:
            facts = CallFacts(usage_metadata, model, provider, self._environ)
            verdict = ruleset.evaluate(facts, self._wall_clock())
            if verdict is None:
                return
            if verdict.notices:
                self._hear(ruleset, verdict.notices)
            error = verdict.error
        except Exception:
            logger.debug(
                "Enforcement check failed unexpectedly; letting the call through", exc_info=True
            )
            return
        if error is not None:
            self._counters["blocked"] += 1
            if self._listeners:
                self._emit_block(error)
            raise error

    def begin(
        self,
        usage_metadata: Optional[Mapping[str, Any]] = None,
        *,
        model: Optional[str] = None,
        provider: Optional[str] = None,
        estimate: Optional[Callable[[], Estimate]] = None,
    ) -> Optional[Spend]:
        """:meth:`check`, then hold the call's worst-case cost against the rules that cover it.

        What a hook calls before sending: it raises :class:`BudgetExceededError`
        like :meth:`check` (also when the hold does not fit, ``source="local"``),
        and otherwise returns the :class:`Spend` to settle once the call is
        done, or ``None`` when there is nothing to hold (local accrual off, no
        rule covers the call). ``estimate`` is called only when a hold is made.
        """
        self.check(usage_metadata, model=model, provider=provider)
        return None

    def _emit_block(self, error: BudgetExceededError) -> None:
        self._emit(
            Decision(
                "block",
                error.rule_id,
                error.rule_name,
                error.current_value,
                error.threshold,
                error.message,
            )
        )

    async def acheck(
        self,
        usage_metadata: Optional[Mapping[str, Any]] = None,
        *,
        model: Optional[str] = None,
        provider: Optional[str] = None,
    ) -> None:
        """:meth:`check` for coroutines: the one-time snapshot read runs off the event loop."""
        if not self._started and not self._off():
            await asyncio.get_running_loop().run_in_executor(None, self._start)
        self.check(usage_metadata, model=model, provider=provider)

    def _cold_or_stale(self) -> Optional[RuleSet]:
        """The first call loads the snapshot and starts the poller; a stale cache wakes it."""
        if not self._started or (self._fetch_ready and not self._poller.alive):
            self._start()
        if self._fetch_ready and self._clock() >= self._cooldown_until:
            self._poller.wake()
        return self._ruleset

    def _start(self) -> None:
        """Load the snapshot once, then make sure the poller runs.

        The start lock covers the snapshot read alone, which the calls racing
        the first one must wait for; the configuration warnings are logged
        and the poller thread started with it released, so those calls wait
        for nothing else.
        """
        if not self._started:
            self._validate_configuration()
            with self._start_lock:
                if not self._started:
                    try:
                        self._load_snapshot()
                    except Exception:  # nothing on disk may make a check raise, now or later
                        logger.warning(
                            "Could not load the enforcement rules snapshot; waiting for the feed",
                            exc_info=True,
                        )
                    self._started = True
        if self._fetch_ready:
            self._poller.ensure_running()

    def _after_fork_in_child(self) -> None:
        """In a forked child (see ``_fork``): fresh locks, no parent poller, a refresh due.

        Any lock may have been held at the fork by a thread of the parent
        that does not exist here (the first call's snapshot load under the
        start lock, the poller building its HTTP client), and would then be
        held for ever. The inherited rules stay, as the last good verdict,
        but unless they were loaded by hand they count as stale: the child's
        next check starts the child's own poller and wakes it, however fresh
        the parent's cache was.
        """
        self._start_lock = threading.Lock()
        self._feed_lock = threading.Lock()
        self._warned_lock = threading.Lock()
        self._feed = None  # the parent's connection pool: neither ours to use nor to close
        self._poller.after_fork_in_child()
        self._self_fetch_due = None
        self._lock_missed_since = None
        if self._fetch_ready and self._fresh_until != float("inf"):
            self._fresh_until = _NEVER

    # -- installing rule sets -------------------------------------------------

    def _load_snapshot(self) -> None:
        if self._mirror is None or self._ruleset is not None:
            return  # rules already arrived (a manual refresh or load): they are newer
        rules_file = self._mirror.rules_file()
        payload = self._mirror.load()
        if payload is None:
            return
        ruleset = self._install(payload, source="disk")
        self._snapshot_file = rules_file
        meta = self._mirror.load_meta()
        if meta is not None and meta.rules_file == rules_file:
            self._etag = meta.etag
            age = meta.age(self._wall_clock())
            if age is not None and age < CACHE_TTL:
                # Another process of this host fetched it moments ago: fresh, not stale.
                self._fresh_until = self._clock() + CACHE_TTL - age
        logger.debug("Loaded %d enforcement rule(s) from the snapshot", len(ruleset))

    def _install(self, payload: Payload, *, source: str, etag: Optional[str] = None) -> RuleSet:
        """Compile and swap in ``payload``; a new generation only when it changed."""
        current = self._ruleset
        candidate = RuleSet(payload, self._generation + 1)
        if current is not None and _same_payload(current, candidate):
            return current
        self._generation += 1
        self._ruleset = candidate
        self._source = source
        self._forget_warnings(candidate)
        return candidate

    def load_payload(self, payload: Any) -> None:
        """Install a payload by hand (an offline rules file, a test), as if fetched.

        Raises :class:`ValueError` for a body that is not a rules payload.
        """
        from ._wire import parse_payload

        self._install(parse_payload(payload), source="local")
        self._fresh_until = float("inf")
        self._started = True

    # -- the poller's side ----------------------------------------------------

    def _get_feed(self) -> Feed:
        with self._feed_lock:
            if self._feed is None:  # a forked child starts without one (_after_fork_in_child)
                self._feed = Feed(
                    self.settings,
                    transport=self._transport,
                    wall_clock=self._wall_clock,
                    stop=self._poller.stop_event,
                    timeout=self._timeout,
                    refresh_policy=self._retry_policy,
                    inspection_policy=dataclasses.replace(
                        self._retry_policy,
                        retry_after_budget=min(self._retry_policy.retry_after_budget, 20.0),
                        deadline=min(self._retry_policy.deadline, 30.0),
                    ),
                )
            return self._feed

    def _refresh(self) -> float:
        """One refresh; returns the seconds until the next. Runs on the poller thread.

        Whatever goes wrong is a failed refresh, recorded in :meth:`status`
        and retried on the schedule, like a failed read of the feed.
        """
        interval = self.settings.poll_interval
        try:
            now = self._clock()
            if now < self._cooldown_until:
                return self._cooldown_until - now
            if self._mirror is not None:
                delay = self._share_with_host(interval)
                if delay is not None:
                    return delay
            return self._fetch_and_install(interval)
        except Exception as problem:
            return self._record_unexpected(problem, interval)

    def _share_with_host(self, interval: float) -> Optional[float]:
        """Decide, under the host lock, whether this process fetches now.

        Returns the delay before the next refresh when it does not (another
        process fetched within the interval, or holds the lease to fetch),
        ``None`` when it should fetch: it then holds the lease. Only this
        decision is under the lock, never the network read, and a lease lasts
        one interval, so a holder that stops or dies delays the host by at
        most that. A lock that stays taken for a whole interval (its holder
        stopped inside this short section) is fetched around.
        """
        mirror = self._mirror
        assert mirror is not None
        now = self._clock()
        if self._self_fetch_due is None:
            self._self_fetch_due = now + SELF_FETCH_EVERY * interval
        meta: Optional[SnapshotMeta] = None
        with mirror.locked(timeout=0.5) as held:
            if held:
                self._lock_missed_since = None
                meta = mirror.load_meta()
                wall = self._wall_clock()
                if not self._recent_elsewhere(meta, interval, wall, now):
                    if meta is not None and meta.lease_holder_alive(wall, interval):
                        return min(1.0, interval)  # another process is fetching: read its result
                    mirror.claim(meta, now=wall)
                    return None
        if held is None:
            return None  # no lock can be had here (an unwritable directory): fetch alone
        if not held:
            if self._lock_missed_since is None:
                self._lock_missed_since = now
            if now - self._lock_missed_since < interval:
                return min(1.0, interval)
            logger.debug("The host's fetch lock has been held for an interval; fetching anyway")
            return None
        assert meta is not None
        # Rules that cannot be taken from disk (unreadable, untrusted, replaced
        # meanwhile) are fetched instead: adoption only ever saves a request.
        return self._jittered(interval) if self._adopt(meta) else None

    def _recent_elsewhere(
        self, meta: Optional[SnapshotMeta], interval: float, wall: float, now: float
    ) -> bool:
        """Whether ``meta`` records another process's fetch within the interval, still on disk."""
        if meta is None or meta.pid == os.getpid():
            return False
        if self._self_fetch_due is not None and now >= self._self_fetch_due:
            return False  # adopted long enough: this process asks the feed itself
        age = meta.age(wall)
        if age is None or age >= min(interval, CACHE_TTL):
            return False
        assert self._mirror is not None
        return meta.rules_file is not None and meta.rules_file == self._mirror.rules_file()

    def _adopt(self, meta: SnapshotMeta) -> bool:
        """Take the rules another process of this host fetched within the interval.

        Read with the lock released; a rules file replaced meanwhile is not
        taken (False: this process fetches for itself instead).
        """
        assert self._mirror is not None and meta.fetched_at is not None
        rules_file = meta.rules_file
        if self._ruleset is None or self._snapshot_file != rules_file:
            payload = self._mirror.load()
            if payload is None or self._mirror.rules_file() != rules_file:
                return False
            self._install(payload, source="disk")
            self._snapshot_file = rules_file
        self._etag = meta.etag
        age = max(0.0, self._wall_clock() - meta.fetched_at)
        self._fresh_until = self._clock() + max(0.0, CACHE_TTL - age)
        self._record_success()
        return True

    def _fetch_and_install(self, interval: float) -> float:
        self._last_attempt_at = self._wall_clock()
        self._self_fetch_due = self._clock() + SELF_FETCH_EVERY * interval
        etag = self._etag if self._ruleset is not None else None
        result = self._get_feed().fetch_rules(
            etag=etag, attempts=None if self._failures == 0 else 1
        )
        if not result.ok:
            return self._record_failure(result, interval)
        fetched_at = self._wall_clock()
        generation = self._generation
        if not result.not_modified:
            assert result.payload is not None
            try:
                self._install(result.payload, source="network", etag=result.etag)
            except Exception as problem:  # a payload no rule set can be built from
                logger.debug("Could not compile the rules payload", exc_info=True)
                return self._record_failure(
                    FeedResult(
                        status=result.status,
                        error=f"payload not usable: {type(problem).__name__}: {problem}",
                    ),
                    interval,
                )
            self._etag = result.etag
        ruleset = self._ruleset
        assert ruleset is not None
        self._fresh_until = self._clock() + CACHE_TTL
        self._record_success()
        if self._mirror is not None:
            # Under the lock so that a process adopting never reads half a pair;
            # written anyway when the lock's holder is stuck (each file is atomic).
            with self._mirror.locked(timeout=0.5):
                if self._generation != generation or self._snapshot_file is None:
                    self._mirror.save(ruleset.payload, etag=self._etag, fetched_at=fetched_at)
                    self._snapshot_file = self._mirror.rules_file()
                else:  # unchanged: only the sidecar's fetch time moves
                    self._mirror.touch(etag=self._etag, fetched_at=fetched_at)
        return self._jittered(interval)

    def _record_unexpected(self, problem: Exception, interval: float) -> float:
        logger.debug("Enforcement rules refresh failed unexpectedly", exc_info=True)
        return self._record_failure(
            FeedResult(error=f"refresh failed: {type(problem).__name__}: {problem}"), interval
        )

    def _record_success(self) -> None:
        self._failures = 0
        self._last_error = None
        self._last_success_at = self._wall_clock()

    def _record_failure(self, result: FeedResult, interval: float) -> float:
        self._failures += 1
        self._last_error = result.error
        if result.cooldown:
            delay = result.cooldown
        elif self._ruleset is None:
            # Never loaded: come back soon, so fail-closed traffic resumes in seconds.
            delay = min(interval, 2.0 ** min(self._failures - 1, 10))
        else:
            delay = interval
        self._cooldown_until = self._clock() + delay
        logger.warning(
            "Enforcement rules for team %s could not be refreshed (%s); keeping "
            "the rules already held and retrying in %.0f s",
            self.settings.team_id,
            result.error,
            delay,
        )
        return delay

    def _jittered(self, interval: float) -> float:
        return interval * (0.9 + 0.2 * random.random())

    # -- what verdicts notice ------------------------------------------------------

    def _hear(self, ruleset: RuleSet, notices: tuple[Notice, ...]) -> None:
        for notice in notices:
            rule = notice.rule
            if notice.kind == "warn_tier":
                assert notice.email is not None
                self.warn_tier(ruleset, notice.email, notice.rule_id, notice.value)
            elif rule is None:
                continue
            elif notice.kind == "warn_only":
                self.warn_only(rule, notice.value)
            elif notice.kind == "shadow":
                self.shadow_would_block(rule, notice.value)
            else:
                self.department_not_blocking(rule, "action does not block")

    def warn_only(self, rule: CompiledRule, current_value: Optional[float]) -> None:
        self._counters["warn_only"] += 1
        key = str(rule.identifier)
        with self._warned_lock:
            first = self._warned_rules.get(key, _NEVER) != rule.window_end_raw
            self._warned_rules[key] = rule.window_end_raw
        if first:
            logger.warning(
                "Enforcement rule %s (id %s) is over its threshold (action=%s); not blocking",
                rule.name,
                rule.identifier,
                rule.action,
            )
        self._emit(
            Decision("warn_only", rule.identifier, rule.name, current_value, rule.threshold, None)
        )

    def shadow_would_block(self, rule: CompiledRule, current_value: Optional[float]) -> None:
        self._counters["shadow"] += 1
        self._emit(
            Decision("shadow", rule.identifier, rule.name, current_value, rule.threshold, None)
        )

    def department_not_blocking(self, rule: CompiledRule, reason: str) -> None:
        logger.warning(
            "Department budget threshold crossed for rule %s (action=%s); not blocking",
            rule.identifier,
            rule.action,
        )

    def warn_tier(
        self, ruleset: RuleSet, email: str, rule_id: int, balance: Optional[float]
    ) -> None:
        self._counters["warn_tier"] += 1
        key = (ruleset.generation, email, rule_id)
        with self._warned_lock:
            first = key not in self._warned_callers
            self._warned_callers.add(key)
        rule = ruleset.rule_by_id(rule_id)
        if first:
            name = (rule.raw.get("name") if rule else None) or str(rule_id)
            logger.warning(
                "Approaching the department budget enforced by rule %s%s; calls are "
                "blocked once the threshold is crossed",
                name,
                _spend_clause(balance, rule.threshold if rule else None),
            )
        self._emit(
            Decision(
                "warn_tier",
                rule_id,
                rule.name if rule else None,
                balance,
                rule.threshold if rule else None,
                None,
            )
        )

    def _forget_warnings(self, ruleset: RuleSet) -> None:
        with self._warned_lock:
            self._warned_callers.clear()
            if not self._warned_rules:
                return  # the usual case: no need to list every rule the new set serves
            warned = list(self._warned_rules)
        served = {str(raw.get("ruleId") or raw.get("id")) for _, raw in ruleset.raw_rules()}
        with self._warned_lock:
            for key in warned:
                if key not in served:
                    self._warned_rules.pop(key, None)

    # -- listeners -------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(decision)`` for every block, shadow would-block and warning."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def _emit(self, decision: Decision) -> None:
        if not self._listeners:
            return
        for listener in tuple(self._listeners):
            try:
                listener(decision)
            except Exception:
                logger.debug("Enforcement listener failed", exc_info=True)

    # -- inspection ------------------------------------------------------------

    def explain(
        self,
        usage_metadata: Optional[Mapping[str, Any]] = None,
        *,
        model: Optional[str] = None,
        provider: Optional[str] = None,
    ) -> Explanation:
        """Every rule's view of this call, and the verdict :meth:`check` would give.

        A dry run: it reports, logs and counts nothing.
        """
        enabled, bypass = self._enabled(), self._bypass()
        if enabled and not bypass and not self._started:
            self._start()
        ruleset = self._ruleset
        error: Optional[BudgetExceededError] = None
        rules: list[RuleVerdict] = []
        facts = CallFacts(usage_metadata, model, provider, self._environ)
        if enabled and not bypass:
            if ruleset is None:
                if self._fail_closed():
                    error = EnforcementUnavailableError(UNINITIALIZED_MESSAGE)
            else:
                verdict = ruleset.evaluate(facts, self._wall_clock())
                error = verdict.error if verdict is not None else None
        if ruleset is not None:
            rules = ruleset.explain(facts, self._wall_clock())
        return Explanation(enabled, bypass, ruleset is not None, error, rules)

    def rules(self) -> list[dict[str, Any]]:
        """The rules held now, as the feed served them (copies, for tools); empty before a load."""
        ruleset = self._ruleset
        if ruleset is None:
            return []
        return [dict(raw) for _, raw in ruleset.raw_rules()]

    def status(self) -> EngineStatus:
        """A snapshot of the engine's state; cheap, never touches the network."""
        ruleset = self._ruleset
        return EngineStatus(
            team_id=self.settings.team_id,
            base_url=self.settings.base_url,
            configured=self._fetch_ready,
            enabled=self._enabled(),
            bypass=self._bypass(),
            fail_closed=self._fail_closed(),
            loaded=ruleset is not None,
            stale=self._clock() > self._fresh_until,
            source=self._source,
            generation=self._generation,
            rule_count=len(ruleset) if ruleset else 0,
            tripped_count=len(ruleset.active) if ruleset else 0,
            last_attempt_at=self._last_attempt_at,
            last_success_at=self._last_success_at,
            last_error=self._last_error,
            consecutive_failures=self._failures,
            etag=self._etag,
            poller_alive=self._poller.alive,
            snapshot_path=self._mirror.rules_path if self._mirror else None,
            counters=dict(self._counters),
        )

    def refresh(self) -> bool:
        """Fetch now on this thread (for tools and tests); True when rules were loaded."""
        if not self._fetch_ready:
            return False
        self._cooldown_until = _NEVER
        interval = self.settings.poll_interval
        try:
            self._fetch_and_install(interval)
        except Exception as problem:
            self._record_unexpected(problem, interval)
        return self._last_error is None

    def fetch_enforcement_rule(self, rule_id: str) -> Optional[dict[str, Any]]:
        """One rule as the server compiled it now, uncached; ``None`` if absent or unreachable."""
        if not rule_id:
            raise ValueError("rule_id is required to read a single enforcement rule")
        rules = self._inspect_rules({"ruleId": rule_id})
        return rules[0] if rules and isinstance(rules[0], dict) else None

    def fetch_advisory_budgets(self) -> Optional[list[dict[str, Any]]]:
        """The team's notify-only budgets (``source`` ANOMALY), uncached; never enforced."""
        rules = self._inspect_rules({"include": "advisory"})
        if rules is None:
            return None
        return [r for r in rules if isinstance(r, dict) and r.get("source") == "ANOMALY"]

    def fetch_enforcement_rule_roster(
        self,
        rule_id: str,
        page: int = 0,
        size: int = 25,
        search: Optional[str] = None,
        band: Optional[str] = None,
    ) -> Optional[dict[str, Any]]:
        """Who one rule covers now, with their spend and band; uncached."""
        if not rule_id:
            raise ValueError("rule_id is required to read an enforcement rule roster")
        if not self._fetch_ready:
            return None
        params: dict[str, Any] = {"ruleId": rule_id, "page": page, "size": size}
        if search:
            params["search"] = search
        if band:
            params["band"] = band
        feed = self._get_feed()
        body = feed.fetch_json(f"{feed.team_url}/roster", params)
        return body if isinstance(body, dict) else None

    def _inspect_rules(self, params: dict[str, Any]) -> Optional[list[Any]]:
        if not self._fetch_ready:
            return None
        feed = self._get_feed()
        body = feed.fetch_json(feed.team_url, params)
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            rules = body.get("rules", [])
            return rules if isinstance(rules, list) else None
        return None

    # -- lifecycle ---------------------------------------------------------------

    def stop_polling(self) -> None:
        """Stop the poller (joins within 5 s); the next enabled call starts it again."""
        self._poller.stop()
        self._fresh_until = min(self._fresh_until, _NEVER)

    def close(self) -> None:
        """Stop polling and release the HTTP client."""
        self._poller.stop()
        with self._feed_lock:
            if self._feed is not None:
                self._feed.close()
                self._feed = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _spend_clause(balance: Optional[float], threshold: Optional[float]) -> str:
    """`` (812.50 of 1000.00 spent)``: the caller's own balance, when the server published it.

    The rule's ``currentValue`` is not quoted in its place: for a department
    cap it is the department's largest single balance, somebody else's spend.
    """
    if balance is None:
        return ""
    if threshold is None:
        return f" ({balance:.2f} spent)"
    return f" ({balance:.2f} of {threshold:.2f} spent)"


def _same_payload(current: RuleSet, candidate: RuleSet) -> bool:
    a, b = current.payload, candidate.payload
    return (
        a.rules == b.rules
        and a.blocks == b.blocks
        and a.balances == b.balances
        and a.warnings == b.warnings
        and a.candidates == b.candidates
    )
