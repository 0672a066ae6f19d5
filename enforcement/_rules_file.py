"""``REVENIUM_CB_RULES_FILE``: a rules payload on disk as the rule source.

For tests, CI and air-gapped hosts: the file holds what the feed would
serve (a payload object or a bare list of rules). It is read when it
changes (size or modification time), capped in size like a feed body; a
file that cannot be read or parsed is reported, and the rules held stay.
"""

from __future__ import annotations

import os
from typing import Optional, Union

from . import _json as json_pieces
from ._wire import Payload, parse_payload

__all__ = ["MAX_FILE_BYTES", "RulesFile"]

MAX_FILE_BYTES = 16 * 1024 * 1024


class RulesFile:
    """One rules file, and what of it was last read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: Optional[tuple[int, int]] = None

    def read(self, *, force: bool = False) -> Union[Payload, str, None]:
        """The payload when the file changed, ``None`` when it did not, else why it is unusable."""
        path = self.path
        try:
            info = os.stat(path)
        except OSError as problem:
            self._seen = None
            return f"cannot read {path}: {problem.strerror or problem}"
        seen = (info.st_size, info.st_mtime_ns)
        if seen == self._seen and not force:
            return None
        self._seen = seen  # a bad file is not read again until it changes
        if info.st_size > MAX_FILE_BYTES:
            return f"{path} is over {MAX_FILE_BYTES} bytes"
        try:
            with open(path, "rb") as handle:
                return parse_payload(json_pieces.decode(handle.read(MAX_FILE_BYTES + 1)))
        except Exception as problem:  # not JSON, too deep, not a payload, unreadable
            return f"{path} is not a rules payload: {problem}"
