"""The host's ledger: leasing through one JSON file in the cache directory.

The processes of one host (gunicorn's workers, say) share a cap without any
server: they lease from, and write their spend to, a file beside the rules
snapshot. The file is small (it is rewritten whole, atomically, under a file
lock, on every sync) and treated as untrusted: a corrupt or hostile one reads
as empty, says so in ``describe()``, and is replaced by the next write.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import filelock

from ._leased_ledger import Grant, LeasedLedger, Settlement, settle_entry
from ._ledger import LedgerUnavailable

__all__ = ["FileStore", "HostLedger"]

LEDGER_FILE = "revenium_enforcement_ledger.{scope}.json"
#: A bigger file is not ours: it is dropped, not parsed.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Entries kept in the file; every sync rewrites it, so it stays small.
MAX_FILE_BUCKETS = 10_000
_FILE_VERSION = 1


class FileStore:
    """The host's shared ledger: one JSON file, rewritten atomically under a file lock.

    A corrupt or hostile file is read as empty (its spend is the server's to
    count by the next payload) and said so in ``problems``; the next write
    replaces it.
    """

    def __init__(self, directory: str, scope: str, lock_timeout: float = 2.0) -> None:
        self.where = os.path.join(directory, LEDGER_FILE.format(scope=_safe(scope)))
        self._directory = directory
        self._lock_timeout = lock_timeout
        self.problems: dict[str, Any] = {"file_problem": None}
        self._file_lock = self._make_lock()

    def _make_lock(self) -> filelock.FileLock:
        return filelock.FileLock(
            self.where + ".lock", timeout=self._lock_timeout, mode=0o600, poll_interval=0.001
        )

    def after_fork_in_child(self) -> None:
        self._file_lock = self._make_lock()

    def close(self) -> None:
        pass

    def settle(
        self, holder: str, settlements: Sequence[Settlement], now: float, lease_until: float
    ) -> list[Grant]:
        try:
            os.makedirs(self._directory, mode=0o700, exist_ok=True)
            with self._file_lock:
                buckets = self._read()
                grants = [
                    settle_entry(buckets.setdefault(s.bucket.key, {}), s, holder, now, lease_until)
                    for s in settlements
                ]
                self._write(_bounded(buckets, now))
        except (OSError, filelock.Timeout, ValueError, TypeError) as error:
            raise LedgerUnavailable("host", f"{type(error).__name__}: {error}") from error
        return grants

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self.where, "rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return {}
        if len(raw) > MAX_FILE_BYTES:
            return self._reject(f"larger than {MAX_FILE_BYTES} bytes")
        try:
            document = json.loads(raw)
        except ValueError as error:
            return self._reject(f"not JSON: {error}")
        if not isinstance(document, dict) or document.get("version") != _FILE_VERSION:
            return self._reject("not a ledger of this version")
        buckets = document.get("buckets")
        if not isinstance(buckets, dict):
            return self._reject("no buckets")
        return {key: entry for key, entry in buckets.items() if _valid_entry(key, entry)}

    def _reject(self, reason: str) -> dict[str, dict[str, Any]]:
        self.problems["file_problem"] = f"{self.where} ignored ({reason}); started empty"
        return {}

    def _write(self, buckets: dict[str, dict[str, Any]]) -> None:
        body = json.dumps({"version": _FILE_VERSION, "buckets": buckets}, separators=(",", ":"))
        fd, temporary = tempfile.mkstemp(dir=self._directory, prefix=".ledger-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
            os.replace(temporary, self.where)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise


def _safe(scope: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in scope)[:64] or "default"


def _finite(value: object, low: float = 0.0) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= low
    )


def _valid_entry(key: object, entry: object) -> bool:
    """Every field a number where numbers go: a hostile file cannot make us raise."""
    if not isinstance(key, str) or not isinstance(entry, dict):
        return False
    spend, leases = entry.get("spend", {}), entry.get("leases", {})
    return (
        _finite(entry.get("since", 0.0), -math.inf)
        and _finite(entry.get("expires_at", 0.0), -math.inf)
        and isinstance(spend, dict)
        and all(s.isascii() and s.isdigit() and _finite(a) for s, a in spend.items())
        and isinstance(leases, dict)
        and all(
            isinstance(lease, list) and len(lease) == 2 and all(_finite(x) for x in lease)
            for lease in leases.values()
        )
    )


def _bounded(buckets: dict[str, dict[str, Any]], now: float) -> dict[str, dict[str, Any]]:
    live = {k: e for k, e in buckets.items() if float(e.get("expires_at", 0.0)) >= now}
    if len(live) <= MAX_FILE_BUCKETS:
        return live
    latest = sorted(live, key=lambda k: float(live[k].get("expires_at", 0.0)), reverse=True)
    return {key: live[key] for key in latest[:MAX_FILE_BUCKETS]}


class HostLedger(LeasedLedger):
    """Shared by the processes whose cache directory is ``directory`` (gunicorn's workers).

    >>> ledger = HostLedger("/tmp/cache", "team-1")  # doctest: +SKIP
    """

    scope = "host"

    def __init__(self, directory: str, scope: str, **options: Any) -> None:
        lock_timeout = options.pop("lock_timeout", 2.0)
        super().__init__(FileStore(directory, scope, lock_timeout), **options)
