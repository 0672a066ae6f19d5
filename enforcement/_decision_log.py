"""A JSON-lines decision log: what shadow mode would have blocked, readable after the fact.

One line per decision (block, shadow would-block, warn-only, warn tier)::

    {"at": "2026-11-24T10:15:02.113Z", "kind": "shadow", "rule_id": 7,
     "rule_name": "gpt-4o daily cap", "model": "gpt-4o", "provider": "openai",
     "current_value": 512.4, "threshold": 500.0, "source": "server",
     "callers": {"subscriber_email": "8b666fb5de44489b"}, "message": null}

Callers appear only as digests (:func:`caller_digests`); a value that does
not look like one is digested here before it is written, and anything
shaped like an email address in the free-text fields is masked, so the file
never holds who a caller is.

Several processes of a host may log to one file (gunicorn workers,
multiprocessing pools). Each line is one ``write(2)`` on a descriptor opened
with ``O_APPEND``, so lines never interleave. Rotation (``path`` to
``path.1``, ``path.1`` to ``path.2``... up to ``backups``) happens under a
file lock; a writer whose file was rotated by another process finishes its
line into the renamed file (nothing is lost) and reopens ``path`` as soon as
it sees the file it holds is full.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import re
import threading
from pathlib import Path
from typing import Any, Optional, Union

import filelock

from ._events import DIGEST_HEX_CHARS, Decision, caller_digests
from ._fork import renew_after_fork

__all__ = ["DecisionLog", "backup_paths", "decision_record"]

logger = logging.getLogger("enforcement")

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5
FILE_MODE = 0o600
# A line stays well under a page, so that one write(2) of it is never split.
MAX_TEXT_CHARS = 1000
ROTATION_LOCK_TIMEOUT = 2.0
_EMAIL = re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+\.[^\s@\"'<>(),;:]+")
_DIGEST = re.compile(rf"[0-9a-f]{{{DIGEST_HEX_CHARS}}}")
EMAIL_MASK = "<email>"

PathLike = Union[str, "os.PathLike[str]"]


def decision_record(decision: Decision, salt: str = "") -> dict[str, Any]:
    """The JSON object one decision is logged as (see the module docstring)."""
    return {
        "at": _iso_utc(decision.at),
        "kind": decision.kind,
        "rule_id": _plain(decision.rule_id),
        "rule_name": _masked(decision.rule_name),
        "model": decision.model,
        "provider": decision.provider,
        "current_value": _finite(decision.current_value),
        "threshold": _finite(decision.threshold),
        "source": decision.source,
        "callers": _caller_fields(decision.callers, salt),
        "message": _masked(decision.message),
    }


def backup_paths(path: PathLike, backups: int) -> list[Path]:
    """``path.1`` to ``path.<backups>``, newest first, as rotation names them."""
    base = os.fspath(path)
    return [Path(f"{base}.{index}") for index in range(1, backups + 1)]


class DecisionLog:
    """A listener that appends each decision to ``path`` as one JSON line.

    ``max_bytes=0`` never rotates. ``salt`` digests any caller value that
    reaches the log undigested (pass the team id, as the engine does for
    :func:`caller_digests`). Never raises into its caller: a failed write is
    logged at debug and counted in ``errors``.

    >>> log = DecisionLog("/var/log/app/decisions.jsonl")  # doctest: +SKIP
    >>> engine.add_listener(log)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: PathLike,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        salt: str = "",
    ) -> None:
        if max_bytes < 0 or backups < 1:
            raise ValueError(f"need max_bytes >= 0 and backups >= 1, not {max_bytes}, {backups}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._salt = salt
        self._fd: Optional[int] = None
        self._lock = threading.Lock()
        self.written = 0
        self.errors = 0
        renew_after_fork(self)

    def __call__(self, decision: Decision) -> None:
        try:
            line = _encode(decision_record(decision, self._salt))
            with self._lock:
                self._append(line)
            self.written += 1
        except Exception:
            self.errors += 1
            logger.debug("Writing to the decision log %s failed", self.path, exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._close_fd()

    # -- writing ---------------------------------------------------------------

    def _append(self, line: bytes) -> None:
        fd = self._fd if self._fd is not None else self._open()
        _write_all(fd, line)
        if self.max_bytes and os.fstat(fd).st_size >= self.max_bytes:
            self._rotate(fd)

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # also when an older file or the umask said otherwise
        except OSError:
            pass  # someone else's file that we may append to: leave its mode alone
        self._fd = fd
        return fd

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    # -- rotation --------------------------------------------------------------

    def _rotate(self, fd: int) -> None:
        """Rotate ``path`` if it is still the full file ``fd`` holds; then hold the new ``path``."""
        lock = filelock.FileLock(f"{self.path}.lock", timeout=ROTATION_LOCK_TIMEOUT, mode=FILE_MODE)
        try:
            with lock:
                if self._holds_current_file(fd):
                    self._shift_backups()
                self._close_fd()
                self._open()
        except filelock.Timeout:
            # A stopped holder: keep appending past max_bytes rather than lose lines.
            logger.debug("Decision log %s not rotated: its lock is held", self.path)

    def _holds_current_file(self, fd: int) -> bool:
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino)

    def _shift_backups(self) -> None:
        names = [self.path, *backup_paths(self.path, self.backups)]
        for older, newer in zip(reversed(names[1:]), reversed(names[:-1])):
            if newer.exists():
                os.replace(newer, older)

    def _after_fork_in_child(self) -> None:
        # The descriptor is shared with the parent and stays valid (O_APPEND
        # keeps both processes' lines whole); only the lock may be held.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<DecisionLog {str(self.path)!r} written={self.written} errors={self.errors}>"


def _write_all(fd: int, line: bytes) -> None:
    view = memoryview(line)
    while view:
        view = view[os.write(fd, view) :]


def _encode(record: dict[str, Any]) -> bytes:
    text = json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str)
    return (text + "\n").encode("ascii")


def _iso_utc(epoch_seconds: float) -> str:
    if not epoch_seconds:
        moment = datetime.datetime.now(datetime.timezone.utc)
    else:
        moment = datetime.datetime.fromtimestamp(epoch_seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _caller_fields(callers: tuple[tuple[str, str], ...], salt: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for kind, value in callers:
        if not (isinstance(value, str) and _DIGEST.fullmatch(value)):
            ((_, value),) = caller_digests([(kind, str(value))], salt)
        fields[str(kind)] = value
    return fields


def _masked(text: Any) -> Any:
    if text is None or isinstance(text, (int, float)):
        return text
    return _EMAIL.sub(EMAIL_MASK, str(text))[:MAX_TEXT_CHARS]


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return _masked(value)


def _finite(value: Optional[float]) -> Optional[float]:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
