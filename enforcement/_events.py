"""Decision events: what listeners hear besides the exception a blocked caller gets."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable, NamedTuple, Optional

__all__ = ["DIGEST_HEX_CHARS", "Decision", "Listener", "caller_digests"]

DIGEST_HEX_CHARS = 16
"""Length of a caller digest: 64 bits, so a fleet's callers never collide in practice."""

_BLAKE2B_MAX_KEY_BYTES = 64


class Decision(NamedTuple):
    """One reported decision.

    ``kind`` is ``"block"`` (the call was refused), ``"shadow"`` (a shadow-mode
    rule would have refused it), ``"warn_only"`` (a breached rule whose action
    only warns covers it) or ``"warn_tier"`` (the caller crossed a department
    budget's warn tier). Never carries the caller's email: ``callers`` holds
    the call's caller keys (organization, product, subscriber id and email,
    credential...) as ``(kind, digest)`` pairs made by :func:`caller_digests`,
    so a log can count decisions per caller without holding who the caller
    is. ``source`` is ``"server"`` (the control plane's figures) or
    ``"local"`` (this host's spend since them). A named tuple: immutable, and
    cheap enough to build on a blocked call.
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


def caller_digests(keys: Iterable[tuple[str, str]], salt: str) -> tuple[tuple[str, str], ...]:
    """Each ``(kind, value)`` caller key as ``(kind, digest)``: countable, never readable.

    The digest is a keyed BLAKE2b of the kind and the value, 16 hex
    characters. Pass the team id as ``salt``: it is the same in every process
    of a fleet, so the digests of one caller agree across hosts and their
    decision logs aggregate, while a digest from one team says nothing about
    a caller of another. The kind is hashed too, so an id that equals some
    email does not get that email's digest. Pass values as the engine matches
    them (emails normalized), or one caller gets two digests.

    >>> caller_digests([("subscriber_email", "dev@acme.com")], salt="team-1")
    (('subscriber_email', '8b666fb5de44489b'),)
    """
    keyed = hashlib.blake2b(key=_blake2b_key(salt), digest_size=DIGEST_HEX_CHARS // 2)
    return tuple((kind, _digest(keyed, kind, value)) for kind, value in keys)


def _blake2b_key(salt: str) -> bytes:
    """``salt`` as a BLAKE2b key, which may be at most 64 bytes: longer salts are hashed first."""
    raw = salt.encode("utf-8", "surrogatepass")
    if len(raw) <= _BLAKE2B_MAX_KEY_BYTES:
        return raw
    return hashlib.blake2b(raw).digest()


def _digest(keyed: hashlib.blake2b, kind: str, value: str) -> str:
    digest = keyed.copy()  # the key's block is hashed once per call, not once per key
    digest.update(f"{kind}\x00{value}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()
