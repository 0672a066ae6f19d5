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
from ._mirror import Mirror
from ._poller import Poller
from ._ruleset import CompiledRule, RuleSet, RuleVerdict
from ._settings import Settings, Switches, warn_once
from ._wire import Payload

__all__ = ["Engine", "EngineStatus", "Explanation"]

logger = logging.getLogger("enforcement")

CACHE_TTL = 120.0
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
        self._start_lock = threading.Lock()
        self._feed: Optional[Feed] = None
        self._feed_pid = 0
        self._feed_lock = threading.Lock()
        self._poller = Poller(self._refresh, name=f"enforcement-poller-{self.settings.team_id}")
        self._cooldown_until = _NEVER
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

    # -- configuration -----------------------------------------------------

    def _make_mirror(self) -> Optional[Mirror]:
        settings = self.settings
        if not settings.cache_dir or not settings.team_id:
            return None
        return Mirror(settings.cache_dir, settings.base_url, settings.team_id)

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
            error = ruleset.evaluate(facts, self._wall_clock(), self)
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
        with self._start_lock:
            if not self._started:
                self._validate_configuration()
                self._load_snapshot()
                self._started = True
            if self._fetch_ready:
                self._poller.ensure_running()

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
            age = self._wall_clock() - meta.fetched_at
            if 0 <= age < CACHE_TTL:
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
            if self._feed is None or self._feed_pid != os.getpid():
                # A forked child must not share the parent's connection pool.
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
                    ),
                )
                self._feed_pid = os.getpid()
            return self._feed

    def _refresh(self) -> float:
        """One refresh; returns the seconds until the next. Runs on the poller thread."""
        interval = self.settings.poll_interval
        now = self._clock()
        if now < self._cooldown_until:
            return self._cooldown_until - now
        if self._mirror is not None:
            with self._mirror.locked(timeout=0.5) as held:
                if not held:
                    return 1.0  # another process of this host is fetching: read its result
                if self._adopt_recent_snapshot(interval):
                    return self._jittered(interval)
                return self._fetch_and_install(interval)
        return self._fetch_and_install(interval)

    def _adopt_recent_snapshot(self, interval: float) -> bool:
        """Take the rules another process of this host fetched within the interval."""
        assert self._mirror is not None
        meta = self._mirror.load_meta()
        if meta is None or meta.pid == os.getpid():
            return False
        age = self._wall_clock() - meta.fetched_at
        rules_file = self._mirror.rules_file()
        if not 0 <= age < min(interval, CACHE_TTL) or meta.rules_file != rules_file:
            return False
        if self._ruleset is None or self._snapshot_file != rules_file:
            payload = self._mirror.load()
            if payload is None:
                return False
            self._install(payload, source="disk")
            self._snapshot_file = rules_file
        self._etag = meta.etag
        self._fresh_until = self._clock() + CACHE_TTL - age
        self._record_success()
        return True

    def _fetch_and_install(self, interval: float) -> float:
        self._last_attempt_at = self._wall_clock()
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
            self._install(result.payload, source="network", etag=result.etag)
            self._etag = result.etag
        ruleset = self._ruleset
        assert ruleset is not None
        self._fresh_until = self._clock() + CACHE_TTL
        self._record_success()
        if self._mirror is not None:
            if self._generation != generation or self._snapshot_file is None:
                self._mirror.save(ruleset.payload, etag=self._etag, fetched_at=fetched_at)
                self._snapshot_file = self._mirror.rules_file()
            else:  # unchanged: only the sidecar's fetch time moves
                self._mirror.touch(etag=self._etag, fetched_at=fetched_at)
        return self._jittered(interval)

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

    # -- observer (called by RuleSet.evaluate) ---------------------------------

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
                "Approaching the department budget enforced by rule %s; calls are "
                "blocked once the threshold is crossed",
                name,
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
                error = ruleset.evaluate(facts, self._wall_clock(), _SILENT)
        if ruleset is not None:
            rules = ruleset.explain(facts, self._wall_clock())
        return Explanation(enabled, bypass, ruleset is not None, error, rules)

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
        self._fetch_and_install(self.settings.poll_interval)
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


class _Silent:
    """An observer that hears nothing: for dry runs."""

    def warn_only(self, rule: CompiledRule, current_value: Optional[float]) -> None:
        pass

    def shadow_would_block(self, rule: CompiledRule, current_value: Optional[float]) -> None:
        pass

    def department_not_blocking(self, rule: CompiledRule, reason: str) -> None:
        pass

    def warn_tier(
        self, ruleset: RuleSet, email: str, rule_id: int, balance: Optional[float]
    ) -> None:
        pass


_SILENT = _Silent()


def _same_payload(current: RuleSet, candidate: RuleSet) -> bool:
    a, b = current.payload, candidate.payload
    return (
        a.rules == b.rules
        and a.blocks == b.blocks
        and a.balances == b.balances
        and a.warnings == b.warnings
        and a.candidates == b.candidates
    )
