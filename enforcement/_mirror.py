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
maps are keyed by people's email addresses. A temporary file is named for
its writer (``.revenium_enforcement_tmp.<host>.<pid>.<random>.tmp``), so the
next write sweeps those a killed process left behind.

What is read back is not trusted blindly, because whoever can write the
directory could otherwise steer every process of the host:

* a file that is not a regular file (a FIFO would hang the read), that is
  owned by another user or writable by everyone is ignored, with a warning
  once; so is one over :data:`MAX_FILE_BYTES`;
* anything unreadable (bad JSON, nesting past ``_json.MAX_DEPTH``, numbers
  out of range) is absent, never an exception;
* the sidecar is sealed with an HMAC keyed by the team's API key, so only a
  process holding the key can tell the others "fetched just now, stay off
  the feed", or hold the fetch lease.

The host-wide lock covers only deciding who fetches: the chosen process
records a lease (its pid and the time) in the sidecar and fetches with the
lock released, so a stopped or dead holder delays the others by at most the
lease's life, one poll interval.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from typing import Any, Optional

import filelock

from . import _json as json_pieces
from ._private_files import (
    TEMP_PREFIX,
    owned_by_us,
    read_json,
    write_private_json,
    write_private_text,
)
from ._settings import Warn, log_warning
from ._sidecar import SnapshotMeta, host_tag, pid_is_dead
from ._wire import Payload, coerce_balances, coerce_candidates, normalize_keys, rules_fingerprint

__all__ = ["Mirror", "SnapshotMeta", "snapshot_scope"]

logger = logging.getLogger("enforcement.mirror")

RULES_PREFIX = "revenium_enforcement_rules"
MAPS_PREFIX = "revenium_enforcement_org_unit_blocks"
META_PREFIX = "revenium_enforcement_meta"
LOCK_PREFIX = "revenium_enforcement_lock"
_LEGACY_TEMP_PREFIX = ".tmp-"  # what versions before the writer's name wrote
STALE_TEMP_SECONDS = 300.0
_SEAL_CONTEXT = b"enforcement snapshot sidecar v1\0"


def snapshot_scope(base_url: str, team_id: str) -> str:
    """Which team and environment a snapshot belongs to, as it appears in file names.

    The reference SDK's digest for every id it can encode; a lone surrogate
    (a non-UTF-8 byte in the environment, as ``os.environ`` decodes it) is
    hashed as written instead of raising ``UnicodeEncodeError``.
    """
    scope = f"{base_url}|{team_id}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(scope).hexdigest()[:16]


class Mirror:
    """One team's snapshot files in one directory.

    ``secret`` (the team's API key) seals the sidecar: a sidecar sealed with
    another key, or none, is read as absent.
    """

    def __init__(
        self,
        directory: str,
        base_url: str,
        team_id: str,
        secret: str = "",
        warn: Warn = log_warning,
    ) -> None:
        self.directory = directory
        self._warn = warn
        key = secret.encode("utf-8", "surrogatepass")  # os.environ may hold lone surrogates
        self._seal_key = hashlib.sha256(_SEAL_CONTEXT + key).digest()
        scope = snapshot_scope(base_url, team_id)
        self.rules_path = os.path.join(directory, f"{RULES_PREFIX}.{scope}.json")
        self.maps_path = os.path.join(directory, f"{MAPS_PREFIX}.{scope}.json")
        self.meta_path = os.path.join(directory, f"{META_PREFIX}.{scope}.json")
        self.lock_path = os.path.join(directory, f"{LOCK_PREFIX}.{scope}.lock")

    # -- reading -----------------------------------------------------------

    def load(self) -> Optional[Payload]:
        """The snapshot on disk, or ``None`` when there is none or it is unreadable.

        Never raises: nothing on disk may make a check raise.
        """
        try:
            return self._load()
        except Exception:
            logger.debug("Unreadable rules snapshot in %s", self.directory, exc_info=True)
            return None

    def _load(self) -> Optional[Payload]:
        data = read_json(self.rules_path, self._warn)
        if isinstance(data, list):
            rules = data
        elif isinstance(data, dict) and isinstance(data.get("rules"), list):
            rules = data["rules"]
        else:
            return None
        maps = read_json(self.maps_path, self._warn)
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
        """Our sidecar, or ``None`` when it is absent, unreadable, untrusted or not sealed by us.

        Never raises: a sidecar is advice about freshness, and no advice is
        the safe reading of a broken one (this process fetches for itself).
        """
        data = read_json(self.meta_path, self._warn)
        if not isinstance(data, dict):
            return None
        try:
            seal = data.get("seal")
            body = {key: value for key, value in data.items() if key != "seal"}
            if not isinstance(seal, str) or not hmac.compare_digest(seal, self._seal(body)):
                logger.debug("Ignoring a snapshot sidecar that is not sealed with this team's key")
                return None
            return SnapshotMeta.from_wire(body)
        except Exception:
            logger.debug("Ignoring an unreadable snapshot sidecar", exc_info=True)
            return None

    def _seal(self, body: dict[str, Any]) -> str:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hmac.new(self._seal_key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()

    def _write_meta(self, meta: SnapshotMeta) -> None:
        body = meta.to_wire()
        write_private_json(self.meta_path, {**body, "seal": self._seal(body)})

    def rules_file(self) -> Optional[tuple[int, int]]:
        """The rules file's (size, mtime in ns), which tells one write from another."""
        try:
            stat = os.stat(self.rules_path)
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    # -- writing -----------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, timeout: float = 5.0) -> Iterator[Optional[bool]]:
        """Hold the host-wide lock for this team's snapshot.

        Yields True when held, False when another process held it past
        ``timeout``, ``None`` when no lock can be had here at all (the
        directory cannot be written).
        """
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            lock = filelock.FileLock(self.lock_path, timeout=timeout, mode=0o600)
            lock.acquire()
        except filelock.Timeout:
            yield False
            return
        except OSError:
            yield None
            return
        try:
            yield True
        finally:
            lock.release()

    def claim(self, meta: Optional[SnapshotMeta], *, now: float) -> None:
        """Record, in the sidecar, that this process fetches next (hold :meth:`locked`)."""
        base = meta or SnapshotMeta(None, None, None, 0)
        try:
            self._write_meta(
                dataclasses.replace(
                    base, lease_pid=os.getpid(), lease_host=host_tag(), lease_at=now
                )
            )
        except Exception:  # the fetch goes ahead unannounced
            logger.debug("Could not record the fetch lease in %s", self.directory, exc_info=True)

    def save(self, payload: Payload, *, etag: Optional[str], fetched_at: float) -> bool:
        """Write maps, then rules, then our sidecar, each atomically. Never raises.

        The maps carry the fingerprint of the rules they belong to; with no
        department entries at all there is nothing to bind, and the 10,000-rule
        canonical dump the fingerprint takes is skipped (readers of an empty or
        unbound map both see no department verdicts).
        """
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self.sweep_temporary_files()
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
            write_private_json(self.maps_path, maps)
            write_private_text(self.rules_path, _rules_text(payload))
            self.touch(etag=etag, fetched_at=fetched_at)
            return True
        except Exception:
            logger.warning(
                "Could not write the rules snapshot to %s", self.directory, exc_info=True
            )
            return False

    def touch(self, *, etag: Optional[str], fetched_at: float) -> None:
        """Record a fetch that found the snapshot on disk still current (a 304).

        It also ends this process's lease: the fetch it was taken for is done.
        """
        rules_file = self.rules_file()
        if rules_file is None:
            return
        try:
            self._write_meta(SnapshotMeta(fetched_at, etag, rules_file, os.getpid(), host_tag()))
        except Exception:
            logger.debug(
                "Could not write the snapshot sidecar in %s", self.directory, exc_info=True
            )

    def sweep_temporary_files(self, now: Optional[float] = None) -> int:
        """Remove the temporary files killed writers left behind; returns how many.

        A temporary file is stale when it is older than :data:`STALE_TEMP_SECONDS`
        (no write takes that long) or when its writer, a process of this host,
        is dead. Another host's pid (a container sharing the volume) proves
        nothing here, so only age removes its files. Never raises.
        """
        moment = time.time() if now is None else now
        removed = 0
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        here, mine = host_tag(), os.getpid()
        for name in names:
            if name.startswith(TEMP_PREFIX):
                parts = name[len(TEMP_PREFIX) :].split(".")
                host = parts[0] if parts else ""
                pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            elif name.startswith(_LEGACY_TEMP_PREFIX) and name.endswith(".json"):
                host, pid = "", 0
            else:
                continue
            path = os.path.join(self.directory, name)
            try:
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or not owned_by_us(info):
                    continue
                old = moment - info.st_mtime > STALE_TEMP_SECONDS
                orphan = host == here and pid not in (0, mine) and pid_is_dead(pid)
                if old or orphan:
                    os.unlink(path)
                    removed += 1
            except OSError:
                continue
        if removed:
            logger.debug("Removed %d stale temporary snapshot file(s)", removed)
        return removed


def _rules_text(payload: Payload) -> str:
    """The rules file's text: the feed's own when it kept it, else the rules encoded.

    The feed's text is written only when it is ASCII, as ``json.dumps`` would
    write it: the reference reads the file in the locale's encoding.
    """
    text = payload.rules_text
    if text is not None and text.isascii():
        return text
    return json_pieces.encode_list(payload.rules)


def _has_entries(maps: dict[str, Any]) -> bool:
    return any(maps.get(name) for name in ("blocks", "balances", "warnings", "candidates"))
