"""Reading and writing the snapshot's files as untrusted, private files.

Another user of the host may plant a file, a symlink or a FIFO where a
snapshot file should be. A file is read only when it is a regular file
owned by this user, not writable by others, and not too large, opened
without following symlinks or waiting on a FIFO; every write is a private
(0600) temporary file renamed into place, so a reader never sees half a
file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
from typing import Any, Optional

from . import _json as json_pieces
from ._settings import Warn
from ._sidecar import host_tag

__all__ = [
    "MAX_FILE_BYTES",
    "OPEN_FLAGS",
    "TEMP_PREFIX",
    "owned_by_us",
    "read_json",
    "untrusted",
    "write_private_json",
    "write_private_text",
]

logger = logging.getLogger("enforcement.mirror")

TEMP_PREFIX = ".revenium_enforcement_tmp."
MAX_FILE_BYTES = 64 * 1024 * 1024


OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once instead of waiting for a writer
    | getattr(os, "O_NOFOLLOW", 0)  # a planted symlink is not followed
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def owned_by_us(info: os.stat_result) -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is None or info.st_uid == geteuid()


def untrusted(info: os.stat_result) -> Optional[str]:
    """Why a snapshot file must not be read, or ``None`` when it may be."""
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    if not owned_by_us(info):
        return "it is owned by another user"
    if os.name == "posix" and info.st_mode & stat.S_IWOTH:
        return "anyone may write it"
    if info.st_size > MAX_FILE_BYTES:
        return f"it is over {MAX_FILE_BYTES} bytes"
    return None


def read_json(path: str, warn: Warn) -> Any:
    """The decoded file, or ``None`` when it is absent, untrusted or unreadable. Never raises."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as problem:  # ELOOP: a symlink; EACCES; ENXIO...
        warn(f"snapshot:{path}", "Ignoring the snapshot file %s: %s", path, problem)
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            reason = untrusted(os.fstat(handle.fileno()))
            if reason is not None:
                warn(f"snapshot:{path}", "Ignoring the snapshot file %s: %s", path, reason)
                return None
            return json_pieces.decode(handle.read(MAX_FILE_BYTES + 1))
    except Exception:  # bad JSON, too deep, a read error: the file is unreadable, no more
        logger.debug("Unreadable snapshot file %s", path, exc_info=True)
        return None


def write_private_json(path: str, data: Any) -> None:
    # dumps, not dump: dump encodes in Python chunks, several times slower.
    write_private_text(path, json.dumps(data))


def write_private_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by this user only."""
    directory = os.path.dirname(path)
    fd, temporary = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{host_tag()}.{os.getpid()}.", suffix=".tmp", dir=directory
    )
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
