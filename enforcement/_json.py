"""JSON for large rule sets, in pieces small enough to share the interpreter.

``json.loads`` and ``json.dumps`` run in C and hold the GIL for the whole
document: on a 10,000-rule payload (about 5 MB) that is a pause of a few
hundred milliseconds for every other thread of the process, callers'
checks included, on each poll. Decoding and encoding the ``rules`` array one
rule at a time gives the interpreter a chance to switch threads between
rules, so a check waits at most a thread switch interval. The results are
exactly what ``json.loads`` / ``json.dumps`` give, for documents nested at
most :data:`MAX_DEPTH` levels deep.

Deeper documents are refused with :class:`TooDeep`, a ``ValueError``. No
rules payload, snapshot or inspection body is nested more than about six
levels; a deeper one is hostile or broken, and decoding it is a
``RecursionError`` waiting for a caller whose stack is already deep (a web
framework's). Worse, a payload that decodes on the poller's shallow stack
would be written to the snapshot and fail every restarted process's first
call. So the bound holds on every path in, whatever the stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_DEPTH", "TooDeep", "decode", "encode_list"]

MAX_DEPTH = 32  # nesting levels of arrays and objects, the document itself included
_PIECEWISE_OVER = 256 * 1024  # bytes; smaller documents go through json.loads at once
_ENCODE_BATCH = 64  # rules per C call when encoding: about a millisecond of GIL each
_decoder = json.JSONDecoder()
_whitespace = re.compile(r"[ \t\n\r]*")


class TooDeep(ValueError):
    """A document nested deeper than :data:`MAX_DEPTH`: refused like any unreadable body."""


# Built without a Python frame: it is raised where the stack may have no room left.
_TOO_DEEP = f"JSON nested deeper than {MAX_DEPTH} levels"


def decode(body: bytes) -> Any:
    """``json.loads(body)``, decoding a large ``rules`` array one element at a time.

    Raises ``ValueError`` for anything that is not JSON nested at most
    :data:`MAX_DEPTH` deep (:class:`TooDeep` for the too deep), never
    ``RecursionError``.
    """
    try:
        if len(body) < _PIECEWISE_OVER:
            value = json.loads(body)
            if _openers(body) > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
                raise TooDeep(_TOO_DEEP)
            return value
        return _decode_large(body)
    except RecursionError:
        raise TooDeep(_TOO_DEEP) from None


def _decode_large(body: bytes) -> Any:
    text = body.decode(json.detect_encoding(body), "surrogatepass")
    index = _skip(text, 0)
    value: Any
    if text.startswith("{", index):
        value, index = _object(text, index)
    elif text.startswith("[", index):
        value, index = _array(text, index, MAX_DEPTH - 1)
    else:
        value = json.loads(text)
        if _deeper_than(value, MAX_DEPTH):
            raise TooDeep(_TOO_DEEP)
        return value
    if _skip(text, index) != len(text):
        raise json.JSONDecodeError("Extra data", text, index)
    return value


def _openers(text: bytes) -> int:
    """How many ``[`` and ``{`` a text holds, strings included: a bound on its depth.

    Each level of nesting needs one opener, so a text with few of them (a
    single rule, a small body) is cleared by two C-speed counts, and only the
    rest are walked.
    """
    return text.count(b"[") + text.count(b"{")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` containers deep; iterative, any depth."""
    if type(value) is not dict and type(value) is not list:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > limit:
            return True
        for child in node.values() if type(node) is dict else node:
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))
    return False


def _piece(text: str, start: int, room: int) -> tuple[Any, int]:
    """One element of a large document, refused when it nests deeper than ``room``."""
    value, end = _decoder.raw_decode(text, start)
    openers = text.count("[", start, end) + text.count("{", start, end)
    if openers > room and _deeper_than(value, room):
        raise TooDeep(_TOO_DEEP)
    return value, end


def _skip(text: str, index: int) -> int:
    match = _whitespace.match(text, index)
    return match.end() if match else index


def _array(text: str, index: int, room: int) -> tuple[list[Any], int]:
    """The array at ``index``, whose elements may nest ``room`` levels deep."""
    items: list[Any] = []
    index = _skip(text, index + 1)
    if text.startswith("]", index):
        return items, index + 1
    while True:
        item, index = _piece(text, index, room)
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
            value, index = _array(text, index, MAX_DEPTH - 2)
        else:
            value, index = _piece(text, index, MAX_DEPTH - 1)
        result[key] = value
        index = _skip(text, index)
        if text.startswith(",", index):
            index = _skip(text, index + 1)
        elif text.startswith("}", index):
            return result, index + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)


def encode_list(items: Sequence[Any], **options: Any) -> str:
    """``json.dumps(items, **options)`` for a list, a batch of elements at a time.

    One encoder for the whole list (``dumps`` with options builds a new one
    per call), fed :data:`_ENCODE_BATCH` elements at a time: few enough that
    each C call gives the interpreter back within a switch interval, many
    enough that the Python around them costs little.
    """
    encoder = json.JSONEncoder(**options)
    separator: str = encoder.item_separator
    encode = encoder.encode
    return (
        "["
        + separator.join(
            encode(items[start : start + _ENCODE_BATCH])[1:-1]
            for start in range(0, len(items), _ENCODE_BATCH)
        )
        + "]"
    )
