"""Driving the oracle (``revenium-python-sdk==0.12.0``) from the outside only.

The oracle keeps one team's rules in module-global state and reads its settings
from ``os.environ`` on every call. It is never poked: every payload reaches it
through the snapshot files of CONTRACT §4, under a team id of its own, so the
oracle sees a change of owner, drops what it cached for the previous team and
reads the new team's snapshot on its next call. No API key is set, so it never
fetches anything; its poller wakes, finds nothing to fetch and backs off.
"""

from __future__ import annotations

import itertools
import math
import os
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .generate import BASE_URL, Call

#: Every setting either library reads; cleared so that the developer's shell
#: cannot change a verdict (REVENIUM_CREDENTIAL_ALIAS, for one, is a CREDENTIAL
#: filter value to the oracle).
_CLEARED_PREFIXES = ("REVENIUM_",)


@dataclass(frozen=True)
class Verdict:
    """What one call got: a pass, a budget refusal with its fields, or another exception."""

    kind: str  # "pass" | "raise" | "error"
    message_type: Optional[str] = None
    message: Optional[str] = None
    rule_name: Any = None
    rule_id: Any = None
    current_value: Any = None
    threshold: Any = None
    resets_at: Any = None
    deny_message: Any = None
    error: Optional[str] = None

    def brief(self) -> str:
        if self.kind == "pass":
            return "pass"
        if self.kind == "error":
            return f"error {self.error}"
        return (
            f"raise {self.message!r} rule_name={self.rule_name!r} rule_id={self.rule_id!r} "
            f"current_value={self.current_value!r} threshold={self.threshold!r} "
            f"resets_at={self.resets_at!r} deny_message={self.deny_message!r}"
        )


PASS = Verdict("pass")


def capture(check: Callable[[], object], budget_error: type[BaseException]) -> Verdict:
    """Run one check and describe its outcome."""
    try:
        check()
    except budget_error as err:
        message = getattr(err, "message", None)
        return Verdict(
            "raise",
            message_type=type(message).__name__,
            message=str(err),
            rule_name=getattr(err, "rule_name", None),
            rule_id=getattr(err, "rule_id", None),
            current_value=getattr(err, "current_value", None),
            threshold=getattr(err, "threshold", None),
            resets_at=getattr(err, "resets_at", None),
            deny_message=getattr(err, "deny_message", None),
        )
    except Exception as err:
        return Verdict("error", error=f"{type(err).__name__}: {err}")
    return PASS


def same_value(left: Any, right: Any) -> bool:
    """Equal and of the same type (``1``, ``1.0`` and ``True`` differ); NaN equals NaN."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float) and math.isnan(left) and math.isnan(right):
        return True
    return bool(left == right)


class OracleDriver:
    """The oracle, fed one payload at a time through the snapshot files."""

    def __init__(
        self, cache_dir: str, setenv: Callable[[str, str], None], delenv: Callable[[str], None]
    ) -> None:
        from revenium_middleware._core import enforcement, exceptions

        self._enforcement = enforcement
        self.budget_error = exceptions.BudgetExceededError
        self.cache_dir = cache_dir
        self._setenv = setenv
        self._delenv = delenv
        self.extra: dict[str, str] = {}
        for name in list(os.environ):
            if name.startswith(_CLEARED_PREFIXES):
                delenv(name)
        for name, value in self.base_environ().items():
            setenv(name, value)
        # Unique per driver, so no team id is ever one the oracle has already
        # cached in this process (another test, an earlier driver).
        self._nonce = uuid.uuid4().hex[:8]
        self._counter = itertools.count()

    def base_environ(self) -> dict[str, str]:
        return {
            "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
            "REVENIUM_ENFORCEMENT_BASE_URL": BASE_URL,
            "REVENIUM_CACHE_DIR": self.cache_dir,
            **self.extra,
        }

    def set_extra(self, name: str, value: Optional[str]) -> None:
        """Another setting both libraries see (``None`` removes it)."""
        if value is None:
            self.extra.pop(name, None)
            self._delenv(name)
        else:
            self.extra[name] = value
            self._setenv(name, value)

    def environ(self, team_id: str) -> dict[str, str]:
        """The settings both libraries run under for ``team_id``."""
        return {**self.base_environ(), "REVENIUM_TEAM_ID": team_id}

    def new_team(self) -> str:
        return f"compat-{self._nonce}-{next(self._counter)}"

    def use_team(self, team_id: str) -> None:
        """The oracle's next call drops the previous team's cache and reads this one's files."""
        self._setenv("REVENIUM_TEAM_ID", team_id)

    def check(self, call: Call) -> Verdict:
        def run() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._enforcement.check_enforcement(
                    call.metadata, model=call.model, provider=call.provider
                )

        return capture(run, self.budget_error)

    def stop(self) -> None:
        self._enforcement.stop_polling()
