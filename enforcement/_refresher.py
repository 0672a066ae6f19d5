"""Keeping one team's rules fresh: the snapshot, the feed, the poller, the host's share.

The :class:`Refresher` owns everything between the control plane and the
engine's current rule set, and hands payloads up through three callables the
engine gives it (``install``, ``current``, ``freshen``); the engine never
reaches down into the feed, and nothing here judges a call.

- the first enabled call loads the disk snapshot (once, under the start
  lock every racing call waits for: CONTRACT §7) and starts the poller;
- each refresh runs on the poller thread: with a host mirror it first asks,
  under the host's fetch lock, whether another process fetched within the
  interval (then its rules are adopted from disk) or is fetching now (then
  this one reads its result shortly); otherwise it reads the feed and
  mirrors what it got;
- with ``REVENIUM_CB_RULES_FILE`` the rules come from that file instead, and
  are re-read when it changes;
- a rule set the engine replaced is retired here (:mod:`._retire`): freed
  in slices by the installing thread or the poller, never in one decref
  cascade on whichever thread dropped it last;
- every outcome is recorded (last attempt, success, error, consecutive
  failures) for :meth:`Engine.status`; *when* the next refresh runs is the
  :class:`~._schedule.RetryPolicy`'s answer, never a constant here.

A new fault rule goes in the schedule (``_schedule``) or the feed
(``_feed``); a new rule source goes here.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional, Union

import httpx

from ._feed import Feed, FeedResult
from ._host_share import CACHE_TTL, SELF_FETCH_EVERY, HostShare
from ._mirror import Mirror
from ._poller import Poller
from ._retire import Retirer
from ._rule import keep_out_of_collections
from ._rules_file import RulesFile
from ._ruleset import RuleSet
from ._schedule import RetryPolicy
from ._settings import Settings, Warn, configuration_problem
from ._sidecar import SnapshotMeta
from ._status import RefreshRecord
from ._wire import Payload

__all__ = ["CACHE_TTL", "SELF_FETCH_EVERY", "Refresher"]

logger = logging.getLogger("enforcement")

# How often a rules file is looked at for changes (at most; the poll interval if shorter).
RULES_FILE_CHECK = 2.0
_NEVER = float("-inf")


Install = Callable[[Payload, str], RuleSet]


class Refresher:
    """Loads, fetches, adopts and mirrors one team's rules; the engine holds the result."""

    def __init__(
        self,
        settings: Settings,
        *,
        install: Install,
        current: Callable[[], Optional[RuleSet]],
        freshen: Callable[[float], None],
        warn: Warn,
        schedule: RetryPolicy,
        prepare: Optional[Callable[[RuleSet], None]] = None,
        offline: bool = False,
        transport: Optional[httpx.BaseTransport],
        timeout: float,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.schedule = schedule
        self._install = install
        self._current = current
        self._freshen = freshen
        self._prepare = prepare
        self._warn = warn
        self._transport = transport
        self._timeout = timeout
        self._clock = clock
        self._wall_clock = wall_clock
        self.started = False
        self.closed = False
        # Held only while the first call reads the disk snapshot, which every
        # call racing it waits for (CONTRACT §7). Tests hold it to fork mid-load.
        self.start_lock = threading.Lock()
        self._feed: Optional[Feed] = None
        self._feed_lock = threading.Lock()
        self.poller = Poller(self.refresh, name=f"enforcement-poller-{settings.team_id}")
        self._retirer = Retirer()
        self.cooldown_until = _NEVER
        self._failures = 0
        self._last_attempt_at: Optional[float] = None
        self._last_success_at: Optional[float] = None
        self._last_error: Optional[str] = None
        self._etag: Optional[str] = None
        self.mirror = self._make_mirror()
        self._rules_file = RulesFile(settings.rules_file) if settings.rules_file else None
        self._host = (
            HostShare(self.mirror, schedule, clock=clock, wall_clock=wall_clock)
            if self.mirror is not None
            else None
        )
        # (size, mtime) of the rules file (snapshot or REVENIUM_CB_RULES_FILE) our rules came from.
        self._snapshot_file: Optional[tuple[int, int]] = None
        self.offline = offline
        self.configured = not offline and self.check_configuration(warn=False)

    # -- configuration ------------------------------------------------------------

    def _make_mirror(self) -> Optional[Mirror]:
        settings = self.settings
        if settings.rules_file or not settings.cache_dir or not settings.team_id:
            return None
        return Mirror(
            settings.cache_dir,
            settings.base_url,
            settings.team_id,
            secret=settings.api_key,
            warn=self._warn,
        )

    def check_configuration(self, warn: bool = True) -> bool:
        """Whether rules can be had; with ``warn``, each missing piece is warned about once.

        Warned on the first enabled call, not when the engine is built: a
        process that never enabled enforcement hears nothing.
        """
        settings = self.settings
        if settings.rules_file:
            return True
        if not warn:
            return bool(settings.api_key and settings.team_id and set(settings.team_id) - {"."})
        problem = configuration_problem(settings)
        if problem is not None:
            self._warn(f"config:{problem[0]}", *problem[1:])
            return False
        if not settings.api_key.startswith(("hak_", "rev_")):
            self._warn(
                "config:key_prefix",
                "REVENIUM_METERING_API_KEY does not start with hak_ or rev_; using it anyway.",
            )
        return True

    # -- the callers' side ---------------------------------------------------------

    def start(self) -> Optional[RuleSet]:
        """Load the snapshot once, make sure the poller runs; the rules held before it did.

        The start lock covers the snapshot read alone, which the calls racing
        the first one must wait for; the configuration warnings are logged
        and the poller thread started with it released, so those calls wait
        for nothing else.
        """
        if self.closed:
            return self._current()
        if not self.started:
            if not self.offline:
                self.check_configuration()
            with self.start_lock:
                if not self.started:
                    try:
                        self._load_snapshot()
                    except Exception:  # nothing on disk may make a check raise, now or later
                        logger.warning(
                            "Could not load the enforcement rules snapshot; waiting for the feed",
                            exc_info=True,
                        )
                    self.started = True
        held = self._current()  # before the poller runs: it may replace them at once
        if self.configured:
            self.poller.ensure_running()
        return held

    def load_snapshot_only(self) -> None:
        """:meth:`start`'s snapshot read without the poller, for tools; ``started`` stays False."""
        if self.closed:
            return
        with self.start_lock:
            try:
                self._load_snapshot()  # a no-op when rules are held
            except Exception:
                logger.warning("Could not load the enforcement rules snapshot", exc_info=True)

    def nudge(self) -> Optional[RuleSet]:
        """A call found the rules missing or stale: start what must run, wake the poller.

        Returns the rules to judge this call by: those held before the poller
        was started or woken, so the first call is judged by the snapshot
        however fast the poller's first fetch lands (CONTRACT §7).
        """
        if not self.started or (self.configured and not self.poller.alive):
            held = self.start()
        else:
            held = self._current()
        if self.configured and not self.closed and self._clock() >= self.cooldown_until:
            self.poller.wake()
        return held

    def record(self) -> RefreshRecord:
        return RefreshRecord(
            last_attempt_at=self._last_attempt_at,
            last_success_at=self._last_success_at,
            last_error=self._last_error,
            consecutive_failures=self._failures,
            etag=self._etag,
            poller_alive=self.poller.alive,
            snapshot_path=self.settings.rules_file
            or (self.mirror.rules_path if self.mirror else None),
        )

    # -- the snapshot ----------------------------------------------------------------

    def _load_snapshot(self) -> None:
        if self.settings.rules_file:
            self._read_rules_file()
            return
        if self.mirror is None or self._current() is not None:
            return  # rules already arrived (a manual refresh or load): they are newer
        rules_file = self.mirror.rules_file()
        payload = self.mirror.load()
        if payload is None:
            return
        ruleset = self._install(payload, "disk")
        del payload
        self.settle(prepare=False)  # the decoded rules, now held encoded: not kept till a fetch
        self._snapshot_file = rules_file
        meta = self.mirror.load_meta()
        if meta is not None and meta.rules_file == rules_file:
            self._etag = meta.etag
            age = meta.age(self._wall_clock())
            if age is not None and age < CACHE_TTL:
                # Another process of this host fetched it moments ago: fresh, not stale.
                self._freshen(self._clock() + CACHE_TTL - age)
        logger.debug("Loaded %d enforcement rule(s) from the snapshot", len(ruleset))

    # -- the poller's side -------------------------------------------------------------

    def feed(self) -> Feed:
        with self._feed_lock:
            if self._feed is None:  # a forked child starts without one (after_fork_in_child)
                self._feed = Feed(
                    self.settings,
                    transport=self._transport,
                    wall_clock=self._wall_clock,
                    stop=self.poller.stop_event,
                    timeout=self._timeout,
                    policy=self.schedule,
                )
            return self._feed

    def refresh(self) -> float:
        """One refresh; returns the seconds until the next. Runs on the poller thread.

        Whatever goes wrong is a failed refresh, recorded and retried on the
        schedule, like a failed read of the feed.
        """
        interval = self.settings.poll_interval
        try:
            if self.settings.rules_file:
                self._read_rules_file()
                return min(interval, RULES_FILE_CHECK)
            now = self._clock()
            if now < self.cooldown_until:
                return self.cooldown_until - now
            if self._host is not None:
                delay = self._share_with_host(self._host, interval)
                if delay is not None:
                    return delay
            return self._fetch_and_install(interval)
        except Exception as problem:
            return self._record_unexpected(problem, interval)
        finally:
            self.settle()  # what the install could not take apart yet, then the accrual index

    def _prepare_current(self) -> None:
        """Build what local spend needs of the rules held, here rather than on a caller's thread."""
        ruleset = self._current()
        if ruleset is not None and self._prepare is not None:
            try:
                self._prepare(ruleset)
            except Exception:
                logger.debug("Preparing the rules for local spend failed", exc_info=True)

    def retire(self, replaced: Union[RuleSet, Payload, None]) -> None:
        """Free a replaced (or not taken) rule set, or a payload done with, in slices.

        A payload is done with once its rule set keeps the rules encoded, or
        when it was the same as the rules held.

        Called by the engine's install, on the installing thread (the poller,
        or whoever loads rules by hand), never by a check. What the installer
        still holds is taken apart by the poller's next refresh, or the next
        install. With ``REVENIUM_CB_GC_FREEZE`` the rules now held are moved
        out of the collector's reach.
        """
        self._retirer.retire(replaced)
        self._retirer.collect()
        if self.settings.gc_freeze:
            keep_out_of_collections()

    def settle(self, prepare: bool = True) -> None:
        """After a take-in: free what it left, then (``prepare``) build what local spend needs.

        In that order, so that the index is allocated where the decoded rules
        were (see :meth:`RuleSet.prepare_accounts`).
        """
        self._retirer.collect()
        if prepare:
            self._prepare_current()

    def refresh_now(self) -> bool:
        """Fetch now on this thread (for tools and tests); True when rules were loaded."""
        if not self.configured or self.closed:
            return False
        self.cooldown_until = _NEVER
        interval = self.settings.poll_interval
        try:
            if self.settings.rules_file:
                self._read_rules_file()
            else:
                self._fetch_and_install(interval)
        except Exception as problem:
            self._record_unexpected(problem, interval)
        self._retirer.collect()
        return self._last_error is None

    def _read_rules_file(self) -> None:
        """Install ``REVENIUM_CB_RULES_FILE`` when it changed; a bad one keeps the rules held."""
        assert self._rules_file is not None
        read = self._rules_file.read(force=self._current() is None)
        if read is None:
            return
        self._last_attempt_at = self._wall_clock()
        if isinstance(read, str):
            self._rules_file_failed(read)
            return
        try:
            self._install(read, "file")
        except Exception as problem:  # a payload no rule set can be built from
            self._rules_file_failed(f"{self._rules_file.path} is not usable: {problem}")
            return
        self._freshen(float("inf"))
        self._record_success()

    def _rules_file_failed(self, reason: str) -> None:
        self._failures += 1
        if self._last_error != reason:
            logger.warning("Enforcement rules file not used (%s); keeping the rules held", reason)
        self._last_error = reason

    def _share_with_host(self, host: HostShare, interval: float) -> Optional[float]:
        """The delay before the next refresh when the host's share says not to fetch now.

        ``None``: fetch (this process holds the lease). Rules another process
        fetched are adopted from disk; rules that cannot be taken from disk
        (unreadable, untrusted, replaced meanwhile) are fetched instead:
        adoption only ever saves a request.
        """
        decision = host.decide(interval)
        if decision is None or isinstance(decision, float):
            return decision
        return self.schedule.next_poll(interval) if self._adopt(decision) else None

    def _adopt(self, meta: SnapshotMeta) -> bool:
        """Take the rules another process of this host fetched within the interval.

        Read with the lock released; a rules file replaced meanwhile is not
        taken (False: this process fetches for itself instead).
        """
        assert self.mirror is not None and meta.fetched_at is not None
        rules_file = meta.rules_file
        if self._current() is None or self._snapshot_file != rules_file:
            payload = self.mirror.load()
            if payload is None or self.mirror.rules_file() != rules_file:
                return False
            self._install(payload, "disk")
            self._snapshot_file = rules_file
        self._etag = meta.etag
        age = max(0.0, self._wall_clock() - meta.fetched_at)
        self._freshen(self._clock() + max(0.0, CACHE_TTL - age))
        self._record_success()
        return True

    def _fetch_and_install(self, interval: float) -> float:
        self._last_attempt_at = self._wall_clock()
        if self._host is not None:
            self._host.fetching(interval)
        before = self._current()
        etag = self._etag if before is not None else None
        result = self.feed().fetch_rules(
            etag=etag, attempts=self.schedule.attempts_for(self._failures)
        )
        if not result.ok:
            return self._record_failure(result, interval)
        fetched_at = self._wall_clock()
        if not result.not_modified:
            assert result.payload is not None
            try:
                self._install(result.payload, "network")
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
        ruleset = self._current()
        assert ruleset is not None
        self._freshen(self._clock() + CACHE_TTL)
        self._record_success()
        if self.mirror is not None:
            self._mirror_fetch(ruleset, changed=ruleset is not before, fetched_at=fetched_at)
        return self.schedule.next_poll(interval)

    def _mirror_fetch(self, ruleset: RuleSet, *, changed: bool, fetched_at: float) -> None:
        """Write what was fetched for the host; unchanged rules only move the sidecar's time.

        Under the lock so that a process adopting never reads half a pair;
        written anyway when the lock's holder is stuck (each file is atomic).
        """
        mirror = self.mirror
        assert mirror is not None
        with mirror.locked(timeout=0.5):
            if changed or self._snapshot_file is None:
                mirror.save(ruleset.payload, etag=self._etag, fetched_at=fetched_at)
                self._snapshot_file = mirror.rules_file()
            else:
                mirror.touch(etag=self._etag, fetched_at=fetched_at)

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
        delay = self.schedule.after_failure(
            self._failures, interval, loaded=self._current() is not None, cooldown=result.cooldown
        )
        self.cooldown_until = self._clock() + delay
        logger.warning(
            "Enforcement rules for team %s could not be refreshed (%s); keeping "
            "the rules already held and retrying in %.0f s",
            self.settings.team_id,
            result.error,
            delay,
        )
        return delay

    # -- inspection reads ------------------------------------------------------------

    def inspect(self, suffix: str, params: dict[str, Any]) -> Any:
        """One uncached read below the team's rules URL; ``None`` when it cannot be had."""
        if not self.configured or self.closed or self.settings.rules_file:
            return None
        feed = self.feed()
        return feed.fetch_json(feed.team_url + suffix, params)

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the poller (joins within 5 s); the next enabled call starts it again."""
        self.poller.stop()

    def close(self) -> None:
        """Stop for good: the poller is not restarted and the HTTP client is released."""
        self.closed = True
        self.poller.stop()
        self._retirer.clear()
        with self._feed_lock:
            if self._feed is not None:
                self._feed.close()
                self._feed = None

    def after_fork_in_child(self) -> None:
        """Fresh locks, no parent poller or connection pool (``Engine._after_fork_in_child``)."""
        self.start_lock = threading.Lock()
        self._feed_lock = threading.Lock()
        self._feed = None  # the parent's connection pool: neither ours to use nor to close
        self.poller.after_fork_in_child()
        self._retirer.after_fork_in_child()
        if self._host is not None:
            self._host.after_fork_in_child()
