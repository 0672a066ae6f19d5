"""The disk snapshot (CONTRACT §4): a restarted process is protected from its first call.

File names and shapes are the reference SDK's, so either library reads what
the other wrote: ``revenium_enforcement_rules.<scope>.json`` is the bare list
of rules as served, and ``revenium_enforcement_org_unit_blocks.<scope>.json``
holds the department maps bound to those rules by a fingerprint (a crash
between the two writes leaves a map that is dropped, never one that judges
the wrong rules). Ours adds, for ourselves only, a sidecar with the ETag and
the fetch time, which lets the processes of a host share one fetch per
interval.

Writes go to a temporary file that is ``os.replace``d into place under a
``filelock``, so a reader never sees half a file, and are 0600 because the
maps are keyed by people's email addresses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import filelock

from . import _json as json_pieces
from ._ruleset import rules_fingerprint
from ._wire import Payload, coerce_balances, coerce_candidates, normalize_keys

__all__ = ["Mirror", "SnapshotMeta", "snapshot_scope"]

logger = logging.getLogger("enforcement.mirror")

RULES_PREFIX = "revenium_enforcement_rules"
MAPS_PREFIX = "revenium_enforcement_org_unit_blocks"
META_PREFIX = "revenium_enforcement_meta"
LOCK_PREFIX = "revenium_enforcement_lock"


def snapshot_scope(base_url: str, team_id: str) -> str:
    """Which team and environment a snapshot belongs to, as it appears in file names."""
    return hashlib.sha256(f"{base_url}|{team_id}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SnapshotMeta:
    """Our sidecar: when the snapshot was fetched, its ETag, and which rules file it describes.

    ``rules_file`` is the rules file's (size, mtime in ns) right after we wrote
    it: if another writer (the reference SDK, which knows nothing of this
    sidecar) replaced the file since, the sidecar no longer describes it.
    """

    fetched_at: float
    etag: Optional[str]
    rules_file: tuple[int, int]
    pid: int


class Mirror:
    """One team's snapshot files in one directory."""

    def __init__(self, directory: str, base_url: str, team_id: str) -> None:
        self.directory = directory
        scope = snapshot_scope(base_url, team_id)
        self.rules_path = os.path.join(directory, f"{RULES_PREFIX}.{scope}.json")
        self.maps_path = os.path.join(directory, f"{MAPS_PREFIX}.{scope}.json")
        self.meta_path = os.path.join(directory, f"{META_PREFIX}.{scope}.json")
        self.lock_path = os.path.join(directory, f"{LOCK_PREFIX}.{scope}.lock")

    # -- reading -----------------------------------------------------------

    def load(self) -> Optional[Payload]:
        """The snapshot on disk, or ``None`` when there is none or it is unreadable."""
        data = _read_json(self.rules_path)
        if isinstance(data, list):
            rules = data
        elif isinstance(data, dict) and isinstance(data.get("rules"), list):
            rules = data["rules"]
        else:
            return None
        maps = _read_json(self.maps_path)
        if not (
            isinstance(maps, dict)
            and isinstance(maps.get("blocks"), dict)
            and _has_entries(maps)
            and maps.get("rules_fingerprint") == rules_fingerprint(rules)
        ):
            if maps is not None:
                logger.debug("Dropping department maps that do not belong to the rules snapshot")
            return Payload(rules)
        return Payload(
            rules,
            normalize_keys(maps["blocks"]),
            coerce_balances(maps.get("balances")),
            normalize_keys(maps.get("warnings")),
            coerce_candidates(maps.get("candidates")),
        )

    def load_meta(self) -> Optional[SnapshotMeta]:
        data = _read_json(self.meta_path)
        if not isinstance(data, dict):
            return None
        try:
            size, mtime = data["rules_file"]
            return SnapshotMeta(
                float(data["fetched_at"]),
                data.get("etag") or None,
                (int(size), int(mtime)),
                int(data.get("pid", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def rules_file(self) -> Optional[tuple[int, int]]:
        """The rules file's (size, mtime in ns), which tells one write from another."""
        try:
            stat = os.stat(self.rules_path)
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    # -- writing -----------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, timeout: float = 5.0) -> Iterator[bool]:
        """Hold the host-wide lock for this team's snapshot; yields False on timeout."""
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            lock = filelock.FileLock(self.lock_path, timeout=timeout, mode=0o600)
            lock.acquire()
        except (filelock.Timeout, OSError):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def save(self, payload: Payload, *, etag: Optional[str], fetched_at: float) -> bool:
        """Write maps, then rules, then our sidecar, each atomically. Never raises.

        The maps carry the fingerprint of the rules they belong to; with no
        department entries at all there is nothing to bind, and the 10,000-rule
        canonical dump the fingerprint takes is skipped (readers of an empty or
        unbound map both see no department verdicts).
        """
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            maps = {
                "rules_fingerprint": "",
                "blocks": payload.blocks,
                "balances": payload.balances,
                "warnings": payload.warnings,
                "candidates": {
                    email: [c.to_wire() for c in items]
                    for email, items in payload.candidates.items()
                },
            }
            if _has_entries(maps):
                maps["rules_fingerprint"] = rules_fingerprint(payload.rules)
            _write_private_json(self.maps_path, maps)
            _write_private_text(self.rules_path, json_pieces.encode_list(payload.rules))
            self.touch(etag=etag, fetched_at=fetched_at)
            return True
        except (OSError, TypeError, ValueError):
            logger.warning(
                "Could not write the rules snapshot to %s", self.directory, exc_info=True
            )
            return False

    def touch(self, *, etag: Optional[str], fetched_at: float) -> None:
        """Record a fetch that found the snapshot on disk still current (a 304)."""
        rules_file = self.rules_file()
        if rules_file is None:
            return
        _write_private_json(
            self.meta_path,
            {
                "fetched_at": fetched_at,
                "etag": etag,
                "rules_file": list(rules_file),
                "pid": os.getpid(),
            },
        )


def _has_entries(maps: dict[str, Any]) -> bool:
    return any(maps.get(name) for name in ("blocks", "balances", "warnings", "candidates"))


def _read_json(path: str) -> Any:
    try:
        with open(path, "rb") as handle:
            return json_pieces.decode(handle.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        logger.debug("Unreadable snapshot file %s", path, exc_info=True)
        return None


def _write_private_json(path: str, data: Any) -> None:
    # dumps, not dump: dump encodes in Python chunks, several times slower.
    _write_private_text(path, json.dumps(data))


def _write_private_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by this user only."""
    directory = os.path.dirname(path)
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
