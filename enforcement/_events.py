"""Decision events: what listeners hear besides the exception a blocked caller gets."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

__all__ = ["Decision", "Listener"]


class Decision(NamedTuple):
    """One reported decision.

    ``kind`` is ``"block"`` (the call was refused), ``"shadow"`` (a shadow-mode
    rule would have refused it), ``"warn_only"`` (a breached rule whose action
    only warns covers it) or ``"warn_tier"`` (the caller crossed a department
    budget's warn tier). Never carries the caller's email. A named tuple:
    immutable, and cheap enough to build on a blocked call.
    """

    kind: str
    rule_id: Any
    rule_name: Any
    current_value: Optional[float]
    threshold: Optional[float]
    message: Optional[str]


Listener = Callable[[Decision], None]
