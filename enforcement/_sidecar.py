"""The snapshot's sidecar: which process of the host fetched, when, and who holds the lease.

The sidecar lets processes sharing a cache directory share one fetch (see
``_host_share``): it records the fetch time, the ETag, the rules file it
describes (size and modification time) and the fetch lease. It is sealed
with the team's key by the mirror; everything read from it is checked here
as untrusted input (finite numbers, whole pids, short text), so a planted
file can at worst cost this process a fetch.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["SnapshotMeta", "host_tag", "pid_is_dead"]


def host_tag() -> str:
    """This host, as it appears in temporary names and leases: pids only compare within it."""
    try:
        name = socket.gethostname()
    except OSError:  # pragma: no cover - gethostname does not fail in practice
        name = ""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def pid_is_dead(pid: int) -> bool:
    """True only when ``pid`` surely names no process on this host (POSIX; else False)."""
    if os.name != "posix" or pid <= 0:
        return False  # on Windows os.kill(pid, 0) would not probe, it would signal
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # alive under another user (EPERM), or unknowable
        return False
    return False


@dataclass(frozen=True)
class SnapshotMeta:
    """Our sidecar: when the snapshot was fetched, its ETag, which rules file it describes,
    and who, if anyone, holds the lease to fetch next.

    ``rules_file`` is the rules file's (size, mtime in ns) right after we wrote
    it: if another writer (the reference SDK, which knows nothing of this
    sidecar) replaced the file since, the sidecar no longer describes it.
    ``fetched_at`` is ``None`` in a sidecar that records a lease and no fetch yet.
    """

    fetched_at: Optional[float]
    etag: Optional[str]
    rules_file: Optional[tuple[int, int]]
    pid: int
    host: str = ""
    lease_pid: int = 0
    lease_host: str = ""
    lease_at: Optional[float] = None

    def age(self, now: float) -> Optional[float]:
        """Seconds since the fetch; ``None`` without one or when it claims to be in the future."""
        if self.fetched_at is None or self.fetched_at > now:
            return None
        return now - self.fetched_at

    def lease_holder_alive(self, now: float, lease_seconds: float) -> bool:
        """Whether another process holds a lease that still keeps this one waiting.

        A lease lasts ``lease_seconds`` from when it was taken; one dated in the
        future is void, and so is one whose holder on this host has died.
        """
        at = self.lease_at
        if at is None or self.lease_pid <= 0 or at > now or now - at >= lease_seconds:
            return False
        if self.lease_host == host_tag():
            if self.lease_pid == os.getpid():
                return False
            return not pid_is_dead(self.lease_pid)
        return True

    def to_wire(self) -> dict[str, Any]:
        return {
            "fetched_at": self.fetched_at,
            "etag": self.etag,
            "rules_file": list(self.rules_file) if self.rules_file is not None else None,
            "pid": self.pid,
            "host": self.host,
            "lease": (
                {"pid": self.lease_pid, "host": self.lease_host, "at": self.lease_at}
                if self.lease_at is not None
                else None
            ),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> SnapshotMeta:
        """The sidecar's fields; ``KeyError``, ``TypeError``, ``ValueError`` or
        ``OverflowError`` when malformed."""
        rules_file = data["rules_file"]
        lease = data.get("lease")
        lease_at: Optional[float] = None
        lease_pid, lease_host = 0, ""
        if lease is not None:
            lease_at = _finite(lease["at"])
            lease_pid = _whole(lease["pid"])
            lease_host = _text(lease.get("host"))
        fetched_at = data.get("fetched_at")
        etag = data.get("etag")
        return cls(
            _finite(fetched_at) if fetched_at is not None else None,
            etag if isinstance(etag, str) and etag else None,
            (_whole(rules_file[0]), _whole(rules_file[1])) if rules_file is not None else None,
            _whole(data.get("pid", 0)),
            _text(data.get("host")),
            lease_pid,
            lease_host,
            lease_at,
        )


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("not a number")
    number = float(value)  # OverflowError for an integer past float range
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    if not 0 <= value < 2**63:  # sizes, nanoseconds and pids all fit
        raise ValueError("out of range")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
