"""What an engine tells people: warnings once, counters, decision events.

A verdict returns what it noticed (:class:`~._ruleset.Notice`) and the engine
hands it here; nothing in the rule set or the feed logs a decision itself.
One :class:`Reporter` per engine, so a second engine (another team, a test)
warns again about its own configuration, and two engines never share a
count.

- warn-once: one log line per key per engine (a bad switch value, a missing
  team id, an unreadable snapshot file, a warn-only rule per window, a
  warn-tier caller per rule set generation);
- counters: plain integers bumped on the rare paths (blocks, would-blocks,
  warnings, fail-closed refusals), read by :meth:`Engine.status`;
- listeners: each :class:`~._events.Decision`, caller keys hashed, never an
  email, delivered on the :class:`~._dispatch.Dispatcher`'s thread, so a
  slow or failing listener never delays or breaks a call.

A new kind of decision goes in :meth:`Reporter.hear` and :class:`Decision`;
where decisions are shipped (a log file, OpenTelemetry) is a listener.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

from ._callfacts import extract_subscriber, normalize_email
from ._decision_log import DecisionLog
from ._dispatch import Dispatcher
from ._errors import BudgetExceededError
from ._events import Decision, Listener, caller_digests
from ._ruleset import CompiledRule, Notice, RuleSet, Verdict

__all__ = ["COUNTERS", "Reporter"]

logger = logging.getLogger("enforcement")

COUNTERS = ("blocked", "blocked_local", "shadow", "warn_only", "warn_tier", "fail_closed")
# Warn-tier callers remembered per generation: bounded, so a flood of
# distinct emails cannot grow it without end (the oldest are forgotten, and
# warned again at worst).
_MAX_WARNED_CALLERS = 10_000
_NEVER = float("-inf")


class Reporter:
    """One engine's warnings, counters and listeners."""

    def __init__(self, team_id: str, wall_clock: Callable[[], float] = time.time) -> None:
        self.team_id = team_id
        self._wall_clock = wall_clock
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.dispatcher = Dispatcher()
        # Listeners that also want a block on the caller's own thread (an
        # OpenTelemetry span event needs the caller's current span).
        self._inline: tuple[Callable[[Decision], None], ...] = ()
        # Listeners that time checks (``record_check(seconds)``): see :meth:`sampled`.
        self.check_timers: tuple[Callable[[float], None], ...] = ()
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._warned_rules: dict[str, Any] = {}
        # Keyed by the notice itself: its rule is this generation's compiled rule,
        # so a new rule set's notices never equal an old one's.
        self._warned_callers: dict[Notice, None] = {}

    def after_fork_in_child(self) -> None:
        """A child forked while another thread held the lock would wait for ever: a new one."""
        self._lock = threading.Lock()

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return self.dispatcher.listeners

    def add_listener(self, listener: Listener) -> None:
        """Deliver decisions to ``listener`` off the caller's thread.

        A listener with an ``on_caller_thread(decision)`` method also hears
        each decision synchronously there (cheap by contract: a span event).
        """
        self.dispatcher.add(listener)
        inline = getattr(listener, "on_caller_thread", None)
        if callable(inline):
            self._inline = (*self._inline, inline)
        timer = getattr(listener, "record_check", None)
        if callable(timer):
            self.check_timers = (*self.check_timers, timer)

    def sampled(self, check: Callable[..., None], every: int = 64) -> Callable[..., None]:
        """``check``, timing one call in ``every`` for the listeners that record latency.

        Installed only once such a listener is added, so an engine without one
        pays nothing; with one, the untimed calls pay a counter.
        """
        ticks = itertools.count()
        timers = self

        def timed_check(*args: Any, **kwargs: Any) -> None:
            if next(ticks) % every:
                return check(*args, **kwargs)
            start = time.perf_counter()
            try:
                return check(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                for timer in timers.check_timers:
                    try:
                        timer(elapsed)
                    except Exception:
                        logger.debug("A check timer failed", exc_info=True)

        return timed_check

    def log_decisions_to(self, path: Optional[str]) -> None:
        """``REVENIUM_CB_DECISION_LOG``: every decision as a JSON line in ``path`` (none: off)."""
        if path:
            self.add_listener(DecisionLog(path, salt=self.team_id))

    def remove_listener(self, listener: Listener) -> None:
        self.dispatcher.remove(listener)
        inline = getattr(listener, "on_caller_thread", None)
        self._inline = tuple(hook for hook in self._inline if hook != inline)

    def all_counters(self) -> dict[str, int]:
        """The decision counters plus the listeners' thread's (delivered, dropped, failed)."""
        counters = dict(self.counters)
        stats = self.dispatcher.stats()
        counters["listener_delivered"] = stats.delivered
        counters["listener_dropped"] = stats.dropped
        counters["listener_failed"] = stats.failed
        return counters

    def close(self) -> None:
        """Deliver what is queued (briefly) and stop the listeners' thread."""
        self.dispatcher.close(timeout=2.0)

    # -- warn-once -------------------------------------------------------------

    def warn_once(self, key: str, message: str, *args: object) -> None:
        """Log ``message`` the first time this engine sees ``key``."""
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        logger.warning(message, *args)

    # -- what verdicts noticed -------------------------------------------------

    def report(
        self,
        verdict: Verdict,
        metadata: Optional[Mapping[str, Any]],
        model: Any,
        provider: Any,
        now: Optional[float] = None,
    ) -> None:
        """Log, count and tell the listeners what one verdict noticed and refused.

        The caller's keys are digested once per verdict, and (like the time of
        the decision, when ``now`` is not given) only when someone listens.
        """
        listening = bool(self.dispatcher.listeners)
        callers: tuple[tuple[str, str], ...] = ()
        if listening:
            callers = self._callers(metadata)
            if now is None:
                now = self._wall_clock()
        for notice in verdict.notices:
            kind = notice.kind
            if kind == "warn_tier":
                self._warn_tier(notice)
            elif not self._hear(kind, notice):
                continue
            if listening:
                self._emit(self._decision(kind, notice, callers, model, provider, now or 0.0))
        error = verdict.error
        if error is not None:
            self._blocked(
                error, callers, model, provider, self._wall_clock() if now is None else now
            )

    def remembered(
        self, verdict: Verdict, metadata: Optional[Mapping[str, Any]], model: Any, provider: Any
    ) -> None:
        """:meth:`report` for a verdict the rule set remembered: warn tiers only, nothing refused.

        Counted and warned about once without the general walk; with a
        listener, reported in full.
        """
        if self.dispatcher.listeners:
            self.report(verdict, metadata, model, provider)
            return
        for notice in verdict.notices:
            self._warn_tier(notice)

    def _warn_tier(self, notice: Notice) -> None:
        """Count a warn tier's notice; warn the first time this generation sees it."""
        self.counters["warn_tier"] += 1
        if notice not in self._warned_callers:
            self._first_warn_tier(notice)

    def _hear(self, kind: str, notice: Notice) -> bool:
        """Log and count one notice (a warn tier's aside); False when it is no decision."""
        rule = notice.rule
        if kind == "warn_only" and rule is not None:
            self._warn_only(rule)
        elif kind == "department_not_blocking" and rule is not None:
            logger.warning(
                "Department budget threshold crossed for rule %s (action=%s); not blocking",
                rule.identifier,
                rule.action,
            )
            return False
        elif kind == "shadow":
            self.counters["shadow"] += 1
        return True

    def _blocked(
        self,
        error: BudgetExceededError,
        callers: tuple[tuple[str, str], ...],
        model: Any,
        provider: Any,
        now: float,
    ) -> None:
        """Count a refusal and tell the listeners."""
        local = error.source == "local"
        self.counters["blocked_local" if local else "blocked"] += 1
        if self.listeners:
            self._emit(
                Decision(
                    "block",
                    error.rule_id,
                    error.rule_name,
                    error.current_value,
                    error.threshold,
                    error.message,
                    _text(model),
                    _text(provider),
                    now,
                    callers,
                    "local" if local else "server",
                )
            )

    def forget_warnings(self, ruleset: RuleSet) -> None:
        """A new rule set: warn-tier callers warn again; rules no longer served are forgotten."""
        with self._lock:
            self._warned_callers.clear()
            if not self._warned_rules:
                return  # the usual case: no need to list every rule the new set serves
            warned = list(self._warned_rules)
        served = {str(raw.get("ruleId") or raw.get("id")) for _, raw in ruleset.raw_rules()}
        with self._lock:
            for key in warned:
                if key not in served:
                    self._warned_rules.pop(key, None)

    def _warn_only(self, rule: CompiledRule) -> None:
        self.counters["warn_only"] += 1
        key = str(rule.identifier)
        with self._lock:
            first = self._warned_rules.get(key, _NEVER) != rule.window_end_raw
            self._warned_rules[key] = rule.window_end_raw
        if first:
            logger.warning(
                "Enforcement rule %s (id %s) is over its threshold (action=%s); not blocking",
                rule.name,
                rule.identifier,
                rule.action,
            )

    def _first_warn_tier(self, notice: Notice) -> None:
        warned = self._warned_callers
        with self._lock:
            first = notice not in warned
            if first:
                if len(warned) >= _MAX_WARNED_CALLERS:
                    warned.pop(next(iter(warned)))
                warned[notice] = None
        if first:
            rule = notice.rule
            name = (rule.raw.get("name") if rule else None) or str(notice.rule_id)
            logger.warning(
                "Approaching the department budget enforced by rule %s%s; calls are "
                "blocked once the threshold is crossed",
                name,
                _spend_clause(notice.value, rule.threshold if rule else None),
            )

    # -- listeners -------------------------------------------------------------

    def _decision(
        self,
        kind: str,
        notice: Notice,
        callers: tuple[tuple[str, str], ...],
        model: Any,
        provider: Any,
        now: float,
    ) -> Decision:
        rule = notice.rule
        return Decision(
            kind,
            notice.rule_id,
            rule.name if rule else None,
            notice.value,
            rule.threshold if rule else None,
            None,
            _text(model),
            _text(provider),
            now,
            callers,
            notice.source,
        )

    def _callers(self, metadata: Optional[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
        try:
            return caller_digests(_caller_keys(metadata), self.team_id)
        except Exception:  # odd metadata costs the digests, never the decision
            logger.debug("Could not read the caller's keys", exc_info=True)
            return ()

    def _emit(self, decision: Decision) -> None:
        for hook in self._inline:
            try:
                hook(decision)
            except Exception:
                logger.debug("Enforcement listener failed on the caller's thread", exc_info=True)
        self.dispatcher.submit(decision)


def _caller_keys(metadata: Optional[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The call's caller keys as text: who a decision was about, before hashing."""
    if not isinstance(metadata, Mapping):
        return []
    keys: list[tuple[str, str]] = []
    for kind, name in (("organization", "organizationName"), ("product", "productName")):
        value = metadata.get(name)
        if value is None:
            value = metadata.get(f"{kind}_name")
        if isinstance(value, str) and value:
            keys.append((kind, value))
    subscriber = extract_subscriber(metadata)
    identifier = subscriber.get("id")
    if isinstance(identifier, (str, int)) and not isinstance(identifier, bool) and identifier:
        keys.append(("subscriber_id", str(identifier)))
    email = subscriber.get("email")
    if isinstance(email, str) and email.strip():
        keys.append(("subscriber_email", normalize_email(email)))
    credential = subscriber.get("credential")
    if isinstance(credential, Mapping) and isinstance(credential.get("name"), str):
        keys.append(("credential", credential["name"]))
    return keys


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


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
