"""Decision events: what listeners hear besides the exception a blocked caller gets."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

__all__ = ["Decision", "Listener"]


class Decision(NamedTuple):
    """One reported decision.

    ``kind`` is ``"block"`` (the call was refused), ``"shadow"`` (a shadow-mode
    rule would have refused it), ``"warn_only"`` (a breached rule whose action
    only warns covers it) or ``"warn_tier"`` (the caller crossed a department
    budget's warn tier). Never carries the caller's email: ``callers`` holds
    the call's caller keys (organization, product, subscriber id and email,
    credential...) as ``(kind, digest)`` pairs, salted per team, so a log can
    count decisions per caller without holding who the caller is. ``source``
    is ``"server"`` (the control plane's figures) or ``"local"`` (this
    host's spend since them). A named tuple: immutable, and cheap enough to
    build on a blocked call.
    """

    kind: str
    rule_id: Any
    rule_name: Any
    current_value: Optional[float]
    threshold: Optional[float]
    message: Optional[str]
    model: Optional[str] = None
    provider: Optional[str] = None
    at: float = 0.0  # epoch seconds
    callers: tuple[tuple[str, str], ...] = ()
    source: str = "server"


Listener = Callable[[Decision], None]
