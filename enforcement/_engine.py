"""The engine: one team's rules, and the verdict for each call.

The hot path (:meth:`Engine.check`) reads the switches, one attribute holding
the current :class:`RuleSet` and the clock; when the rule set says nobody is
over a limit it returns without looking at the call at all. The engine is
the one owner of everything a check depends on, and delegates the rest:

- keeping the rules fresh (snapshot, feed, poller, the host's share, a rules
  file) is the :class:`~._refresher.Refresher`'s, which hands payloads up
  through :meth:`Engine._install`;
- what a verdict noticed (warnings, shadow would-blocks, counters,
  listeners) is the :class:`~._reporter.Reporter`'s;
- when to ask the control plane is the :class:`~._schedule.RetryPolicy`'s;
- the verdict itself is the :class:`~._ruleset.RuleSet`'s, which returns
  values and never calls back up here.

Local spend (accrual and reservations, CONTRACT §9) enters at
:meth:`Engine.begin`, the hooks' door: the hold before the call and the
settlement after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

import httpx

from . import _inspection as inspection
from . import _json as json_pieces
from ._callfacts import CallFacts
from ._errors import UNINITIALIZED_MESSAGE, EnforcementUnavailableError
from ._events import Listener
from ._fork import renew_after_fork
from ._pace import sharing
from ._prices import PriceTable
from ._refresher import Refresher
from ._reporter import Reporter
from ._ruleset import JUDGE, PASSES, RuleSet
from ._schedule import RetryPolicy
from ._settings import Settings, Switches
from ._spend import LocalSpend
from ._status import EngineStatus, Explanation
from ._usage import Estimate, Spend
from ._wire import Payload, parse_payload

__all__ = ["Engine", "EngineStatus", "Explanation"]

logger = logging.getLogger("enforcement")

_NEVER = float("-inf")


class Engine:
    """Holds one team's rules and judges calls against them.

    >>> engine = Engine(environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true"})
    >>> engine.check({"subscriber": {"email": "dev@example.com"}}, model="gpt-4o")
    >>> engine.close()

    ``environ`` is where the settings and the live switches are read (the
    process environment by default); ``settings`` overrides what is fetched
    and where it is mirrored. ``retry_policy`` is the refresh schedule and
    ``timeout`` bounds each socket read; ``prices`` prices local spend
    (:class:`PriceTable` overrides); ``offline`` never fetches (no poller,
    no refresh, no inspection reads: the snapshot is read and its sidecar
    trusted with the key); ``transport``, ``clock`` and ``wall_clock`` are
    for tests.
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
        prices: Optional[PriceTable] = None,
        offline: bool = False,
    ) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        reporter = Reporter(settings.team_id if settings is not None else "", wall_clock)
        self.settings = settings or Settings.from_env(self._environ, warn=reporter.warn_once)
        reporter.team_id = self.settings.team_id
        self._reporter = reporter
        switches = Switches(self._environ, warn=reporter.warn_once)
        self._off = switches.off
        self._bypass = switches.bypass
        self._enabled = switches.enabled
        self._fail_closed = switches.fail_closed
        self._clock = clock
        self._wall_clock = wall_clock
        self._ruleset: Optional[RuleSet] = None
        self._fresh_until = _NEVER
        self._source: Optional[str] = None
        self._installed_at: Optional[float] = None
        self._generation = 0
        self._counters = reporter.counters
        self._spend = (
            LocalSpend.for_settings(self.settings, wall_clock, prices)
            if self.settings.local_accrual
            else None
        )
        self._refresher = Refresher(
            self.settings,
            install=self._install,
            current=lambda: self._ruleset,
            freshen=self._freshen,
            warn=reporter.warn_once,
            schedule=retry_policy or RetryPolicy(),
            prepare=self._spend.prepare if self._spend is not None else None,
            offline=offline,
            transport=transport,
            timeout=timeout,
            clock=clock,
            wall_clock=wall_clock,
        )
        reporter.log_decisions_to(self.settings.decision_log)
        renew_after_fork(self)

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
            ruleset = self._refresher.nudge()
            if ruleset is None:
                if self._fail_closed():
                    self._counters["fail_closed"] += 1
                    raise EnforcementUnavailableError(UNINITIALIZED_MESSAGE)
                return
        if not ruleset.quiet:
            # Evaluated here rather than in a helper: every frame a raised error
            # passes through costs as much as a whole allowed check.
            error = None
            try:
                screened = ruleset.screen(usage_metadata, model, provider)
                if screened is JUDGE:
                    now = self._wall_clock()
                    facts = CallFacts(usage_metadata, model, provider, self._environ)
                    verdict = ruleset.judge(facts, now)
                    if verdict is not None:
                        error = verdict.error
                        report = self._reporter.report
                        report(verdict, usage_metadata, model, provider, now)
                elif screened is not PASSES:  # a warn tier's remembered verdict: nothing to raise
                    self._reporter.remembered(screened, usage_metadata, model, provider)
            except Exception:
                logger.debug(
                    "Enforcement check failed unexpectedly; letting the call through",
                    exc_info=True,
                )
                error = None
            if error is not None:
                raise error
        spend = self._spend
        if spend is not None and spend.active:
            facts = CallFacts(usage_metadata, model, provider, self._environ)
            now = self._wall_clock()
            local = spend.over(ruleset, facts, now)
            if local is not None and local.error is not None:
                self._reporter.report(local, usage_metadata, model, provider, now)
                raise local.error

    async def acheck(
        self,
        usage_metadata: Optional[Mapping[str, Any]] = None,
        *,
        model: Optional[str] = None,
        provider: Optional[str] = None,
    ) -> None:
        """:meth:`check` for coroutines: the one-time snapshot read runs off the event loop."""
        await self._start_off_the_loop()
        self.check(usage_metadata, model=model, provider=provider)

    async def _start_off_the_loop(self) -> None:
        if not self._refresher.started and not self._off():
            await asyncio.get_running_loop().run_in_executor(None, self._refresher.start)

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

        A call no rule can accrue (:meth:`RuleSet.may_accrue`, from the model,
        the provider and the raw metadata) is answered before any
        :class:`CallFacts` is built for the hold; a call to a pair the rule
        set leaves alone (:meth:`RuleSet.leaves_alone`), or one the check
        would pass unread, does not ask :meth:`check` at all.
        """
        if self._off():
            return None
        ruleset, spend = self._ruleset, self._spend
        # Rules held and fresh, no local overspend to consult, and no timed (or
        # wrapped) check that must hear every call: what the rule set says decides.
        settled = (
            "check" not in self.__dict__
            and self._clock() <= self._fresh_until
            and (spend is None or not spend.active)
        )
        asks_check = True
        if settled and ruleset is not None:
            if ruleset.leaves_alone(model, provider, spend is not None):
                return None  # neither the check nor local spend would look at this call
            asks_check = not ruleset.quiet  # a quiet set's check would pass without reading it
        if asks_check:
            self.check(usage_metadata, model=model, provider=provider)
            ruleset = self._ruleset
        if spend is None or ruleset is None:
            return None
        try:
            accrues = ruleset.may_accrue(usage_metadata, model, provider)
        except Exception:
            logger.debug("The accrual gate failed; asking the rules in full", exc_info=True)
            accrues = True
        if not accrues:
            return None
        facts = CallFacts(usage_metadata, model, provider, self._environ)
        now = self._wall_clock()
        held, verdict = spend.hold(ruleset, facts, estimate, now)
        if verdict is not None:
            self._reporter.report(verdict, usage_metadata, model, provider, now)
            if verdict.error is not None:
                raise verdict.error
        return held

    async def abegin(
        self,
        usage_metadata: Optional[Mapping[str, Any]] = None,
        *,
        model: Optional[str] = None,
        provider: Optional[str] = None,
        estimate: Optional[Callable[[], Estimate]] = None,
    ) -> Optional[Spend]:
        """:meth:`begin` for coroutines: the one-time snapshot read runs off the event loop."""
        await self._start_off_the_loop()
        return self.begin(usage_metadata, model=model, provider=provider, estimate=estimate)

    # -- installing rule sets -------------------------------------------------

    def _install(self, payload: Payload, source: str) -> RuleSet:
        """Compile and swap in ``payload``; a new generation only when it changed.

        The work (compile, compare, retire) shares the interpreter with the
        callers' threads as it goes (:func:`._pace.sharing`).
        """
        with sharing():
            if self._spend is not None:
                self._spend.observe(payload)  # the same rules compiled later are a later cut-off
            current = self._ruleset
            held = current.payload if current is not None else None
            # Encoded first (the same text reuses the held rules): two packed
            # rule sets compare at memory speed, and the new one is kept so.
            kept = payload.packed(held)
            if current is not None and current.payload == kept:
                self._refresher.retire(payload)
                return current
            candidate = RuleSet(payload, self._generation + 1, kept=kept)
            if kept is not payload:  # kept encoded: the decoded rules are freed in slices
                self._refresher.retire(payload)
            self._generation += 1
            self._ruleset = candidate
            self._source = source
            self._installed_at = self._wall_clock()
            self._reporter.forget_warnings(candidate)
            self._refresher.retire(current)  # freed in slices, never by a check dropping it
            return candidate

    def _freshen(self, until: float) -> None:
        self._fresh_until = until

    def load_payload(self, payload: Any) -> None:
        """Install a payload by hand (an offline rules file, a test), as if fetched.

        ``payload`` is the decoded body, or the body itself (``bytes`` or
        ``str``), which is then taken in as a fetched one is: decoded a piece
        at a time, and freed in slices once compiled.
        Raises :class:`ValueError` for a body that is not a rules payload.
        """
        with sharing():
            if isinstance(payload, (bytes, bytearray, str)):
                body = payload.encode() if isinstance(payload, str) else bytes(payload)
                parsed = parse_payload(*json_pieces.decode_keeping_rules(body))
            else:
                parsed = parse_payload(payload)
            self._install(parsed, "local")
            del parsed
            self._refresher.settle(prepare=not self._off())  # a switched off engine never pays
        self._fresh_until = float("inf")
        self._refresher.started = True

    def _after_fork_in_child(self) -> None:
        """In a forked child (``_fork``): inherited rules stay, as stale unless loaded by hand."""
        self._refresher.after_fork_in_child()
        self._reporter.after_fork_in_child()
        if self._refresher.configured and self._fresh_until != float("inf"):
            self._fresh_until = _NEVER

    # -- listeners -------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(decision)`` for every block, would-block and warning, off-thread.

        A slow listener never delays a call, a failing one never breaks it;
        past 10,000 queued decisions new ones are dropped and counted.
        """
        self._reporter.add_listener(listener)
        if self._reporter.check_timers and "check" not in self.__dict__:
            # A latency-recording listener (OpenTelemetry): time a sample of checks.
            self.check = self._reporter.sampled(Engine.check.__get__(self))  # type: ignore[method-assign]

    def remove_listener(self, listener: Listener) -> None:
        self._reporter.remove_listener(listener)

    def flush_listeners(self, timeout: float = 5.0) -> bool:
        """Wait until the listeners heard every decision made so far; False on timeout."""
        return self._reporter.dispatcher.flush(timeout)

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
        if enabled and not bypass and not self._refresher.started:
            self._refresher.start()
        facts = CallFacts(usage_metadata, model, provider, self._environ)
        switches = (enabled, bypass, self._fail_closed())
        return inspection.explain(self._ruleset, facts, self._wall_clock(), switches, self._spend)

    def rules(self) -> list[dict[str, Any]]:
        """The rules held now, as the feed served them (copies, for tools); empty before a load."""
        ruleset = self._ruleset
        if ruleset is None:
            return []
        return [dict(raw) for _, raw in ruleset.raw_rules()]

    def status(self) -> EngineStatus:
        """A snapshot of the engine's state; cheap, never touches the network."""
        ruleset = self._ruleset
        record = self._refresher.record()
        return EngineStatus(
            team_id=self.settings.team_id,
            base_url=self.settings.base_url,
            configured=self._refresher.configured,
            enabled=self._enabled(),
            bypass=self._bypass(),
            fail_closed=self._fail_closed(),
            loaded=ruleset is not None,
            stale=self._clock() > self._fresh_until,
            source=self._source,
            generation=self._generation,
            rule_count=len(ruleset) if ruleset else 0,
            tripped_count=len(ruleset.active) if ruleset else 0,
            **dataclasses.asdict(record),
            counters=self.stats(),
            local_spend=self._spend.describe() if self._spend is not None else None,
            installed_at=self._installed_at,
            closed=self._refresher.closed,
        )

    def stats(self) -> dict[str, int]:
        """Counters: blocks (server, local), would-blocks, warnings, listener drops, holds."""
        counters = self._reporter.all_counters()
        if self._spend is not None:
            counters.update(self._spend.counts())
        return counters

    def load_snapshot(self) -> bool:
        """Read the disk snapshot (or the rules file) now, for tools; True when rules are held.

        Judges nothing, starts no poller, sends nothing; rules already held are kept.
        """
        self._refresher.load_snapshot_only()
        return self._ruleset is not None

    def refresh(self) -> bool:
        """Fetch now on this thread (for tools and tests); True when rules were loaded."""
        return self._refresher.refresh_now()

    def fetch_enforcement_rule(self, rule_id: str) -> Optional[dict[str, Any]]:
        """One rule as the server compiled it now, uncached; ``None`` if absent or unreachable."""
        return inspection.one_rule(self._refresher, rule_id)

    def fetch_advisory_budgets(self) -> Optional[list[dict[str, Any]]]:
        """The team's notify-only budgets (``source`` ANOMALY), uncached; never enforced."""
        return inspection.advisory_budgets(self._refresher)

    def fetch_enforcement_rule_roster(
        self,
        rule_id: str,
        page: int = 0,
        size: int = 25,
        search: Optional[str] = None,
        band: Optional[str] = None,
    ) -> Optional[dict[str, Any]]:
        """Who one rule covers now, with their spend and band; uncached."""
        return inspection.roster(self._refresher, rule_id, page, size, search, band)

    # -- lifecycle ---------------------------------------------------------------

    def stop_polling(self) -> None:
        """Stop the poller (joins within 5 s); the next enabled call starts it again."""
        self._refresher.stop()
        self._fresh_until = min(self._fresh_until, _NEVER)

    def close(self) -> None:
        """Stop for good: the poller never restarts, the HTTP client is released.

        Checks still answer from the rules held, the last known verdict; a
        hook that kept this engine builds nothing new.
        """
        self._refresher.close()
        self._reporter.close()
        if self._spend is not None:
            self._spend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
