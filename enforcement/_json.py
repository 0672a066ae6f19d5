"""JSON for large rule sets, in pieces small enough to share the interpreter.

``json.loads`` and ``json.dumps`` run in C and hold the GIL for the whole
document: on a 10,000-rule payload (about 5 MB) that is a pause of a few
hundred milliseconds for every other thread of the process, callers'
checks included, on each poll. Decoding and encoding the ``rules`` array one
rule at a time gives the interpreter a chance to switch threads between
rules, so a check waits at most a thread switch interval. The results are
exactly what ``json.loads`` / ``json.dumps`` give.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["decode", "encode_list"]

_PIECEWISE_OVER = 256 * 1024  # bytes; smaller documents go through json.loads at once
_decoder = json.JSONDecoder()
_whitespace = re.compile(r"[ \t\n\r]*")


def decode(body: bytes) -> Any:
    """``json.loads(body)``, decoding a large ``rules`` array one element at a time."""
    if len(body) < _PIECEWISE_OVER:
        return json.loads(body)
    text = body.decode(json.detect_encoding(body), "surrogatepass")
    index = _skip(text, 0)
    value: Any
    if text.startswith("{", index):
        value, index = _object(text, index)
    elif text.startswith("[", index):
        value, index = _array(text, index)
    else:
        return json.loads(text)
    if _skip(text, index) != len(text):
        raise json.JSONDecodeError("Extra data", text, index)
    return value


def _skip(text: str, index: int) -> int:
    match = _whitespace.match(text, index)
    return match.end() if match else index


def _array(text: str, index: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    index = _skip(text, index + 1)
    if text.startswith("]", index):
        return items, index + 1
    while True:
        item, index = _decoder.raw_decode(text, index)
        items.append(item)
        index = _skip(text, index)
        if text.startswith(",", index):
            index = _skip(text, index + 1)
        elif text.startswith("]", index):
            return items, index + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)


def _object(text: str, index: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    index = _skip(text, index + 1)
    if text.startswith("}", index):
        return result, index + 1
    while True:
        if not text.startswith('"', index):
            raise json.JSONDecodeError("Expecting property name", text, index)
        key, index = _decoder.raw_decode(text, index)
        index = _skip(text, index)
        if not text.startswith(":", index):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
        index = _skip(text, index + 1)
        if key == "rules" and text.startswith("[", index):
            value, index = _array(text, index)
        else:
            value, index = _decoder.raw_decode(text, index)
        result[key] = value
        index = _skip(text, index)
        if text.startswith(",", index):
            index = _skip(text, index + 1)
        elif text.startswith("}", index):
            return result, index + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)


def encode_list(items: Sequence[Any], **options: Any) -> str:
    """``json.dumps(items, **options)`` for a list, one element at a time."""
    separator: str = options.get("separators", (", ", ": "))[0]
    return "[" + separator.join(json.dumps(item, **options) for item in items) + "]"
