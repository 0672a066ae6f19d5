"""Exceptions raised to callers.

The tree::

    Exception
     └── BudgetExceededError            a covered call was refused (CONTRACT §6)
          └── EnforcementUnavailableError  fail-closed and no rule set ever loaded

``BudgetExceededError`` derives from ``Exception`` alone, so a provider SDK's
own error handling (which catches its ``APIError`` family) never swallows it.
Its constructor and attributes are the reference SDK's, so code written
against either library catches and reads the other's errors the same way.
"""

from __future__ import annotations

from typing import Any, Optional, Union

__all__ = ["UNINITIALIZED_MESSAGE", "BudgetExceededError", "EnforcementUnavailableError"]

UNINITIALIZED_MESSAGE = (
    "Request blocked: enforcement cache is uninitialized and REVENIUM_CB_FAIL_MODE=closed."
)


class BudgetExceededError(Exception):
    """A tripped cost-control rule covers this call, so it was not sent.

    ``str(err)`` is the message; every other field is structured so that an
    application can show "$512.40 of $500.00, resets 2026-11-24T00:00:00Z"
    without parsing text.

    >>> try:
    ...     raise BudgetExceededError("blocked", rule_name="daily", threshold=500.0)
    ... except BudgetExceededError as err:
    ...     (err.rule_name, err.threshold)
    ('daily', 500.0)
    """

    def __init__(
        self,
        message: str,
        rule_name: Optional[str] = None,
        current_value: Optional[float] = None,
        threshold: Optional[float] = None,
        resets_at: Optional[str] = None,
        rule_id: Optional[Union[str, int]] = None,
        deny_message: Optional[str] = None,
        *,
        period_type: Optional[str] = None,
        metric_type: Optional[str] = None,
        action: Optional[str] = None,
        source: str = "server",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.rule_name = rule_name
        self.current_value = current_value
        self.threshold = threshold
        self.resets_at = resets_at
        self.rule_id = rule_id
        self.deny_message = deny_message
        self.period_type = period_type
        self.metric_type = metric_type
        self.action = action
        # "server" when the control plane said the rule is breached, "local"
        # when spend accrued on this host since the last poll did.
        self.source = source

    @classmethod
    def _prebuilt(cls, message: str, fields: dict[str, Any]) -> BudgetExceededError:
        """An error built from fields computed when the rule set was compiled.

        Skips ``__init__``'s keyword handling, which costs more than the rest
        of a blocked call's check put together.
        """
        error = cls.__new__(cls, message)
        error.__dict__.update(fields)
        return error

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, rule_name={self.rule_name!r}, "
            f"rule_id={self.rule_id!r}, current_value={self.current_value!r}, "
            f"threshold={self.threshold!r}, resets_at={self.resets_at!r})"
        )


class EnforcementUnavailableError(BudgetExceededError):
    """Fail-closed mode refused a call because no rule set was ever loaded.

    A subclass, so ``except BudgetExceededError`` (what code written for the
    reference SDK catches) still sees it, while code that wants to tell "over
    budget" from "control plane unreachable" can.
    """
