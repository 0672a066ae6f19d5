"""JSON for large rule sets, in pieces small enough to share the interpreter.

``json.loads`` and ``json.dumps`` run in C and hold the GIL for the whole
document: on a 10,000-rule payload (about 5 MB) that is a pause of a few
hundred milliseconds for every other thread of the process, callers'
checks included, on each poll. Decoding and encoding the ``rules`` array one
rule at a time gives the interpreter a chance to switch threads between
rules, and :func:`._pace.pace` between pieces hands the GIL to a waiting
thread within a couple of milliseconds of our CPU time. The results are
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
from typing import Any, Callable, Optional

from ._pace import pace, sharing

__all__ = ["MAX_DEPTH", "TooDeep", "decode", "decode_keeping_rules", "encode_list"]

MAX_DEPTH = 32  # nesting levels of arrays and objects, the document itself included
_PIECEWISE_OVER = 256 * 1024  # bytes; smaller documents go through json.loads at once
_ENCODE_BATCH = 64  # rules per C call when encoding: about a millisecond of GIL each
_BATCH_CHARS = 32 * 1024  # text per C call when decoding a large array: about a millisecond
_decoder = json.JSONDecoder()
# raw_decode without its Python frame (typeshed does not name the attribute)
_scan_once: Callable[[str, int], tuple[Any, int]] = getattr(_decoder, "scan_once")  # noqa: B009
_whitespace = re.compile(r"[ \t\n\r]*")
_WHITESPACE = frozenset(" \t\n\r")
_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'[]{}"')


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
    return decode_keeping_rules(body)[0]


def decode_keeping_rules(body: bytes) -> tuple[Any, Optional[str]]:
    """:func:`decode`, and the text of the rules array when the body is large.

    The text is the top-level ``rules`` array (the last one, as ``json.loads``
    keeps the last of a repeated key) or the whole document when it is a bare
    list: exactly what the decoded rules were read from, so a snapshot can
    write it as it came instead of encoding 10,000 rules again. ``None`` for
    a small body, whose rules cost little to encode.
    """
    try:
        if len(body) < _PIECEWISE_OVER:
            value = json.loads(body)
            if _openers(body) > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
                raise TooDeep(_TOO_DEEP)
            return value, None
        with sharing():
            return _decode_large(body)
    except RecursionError:
        raise TooDeep(_TOO_DEEP) from None


def _decode_large(body: bytes) -> tuple[Any, Optional[str]]:
    text = body.decode(json.detect_encoding(body), "surrogatepass")
    start = index = _skip(text, 0)
    value: Any
    rules: Optional[tuple[int, int]]
    if text.startswith("{", index):
        value, index, rules = _object(text, index)
    elif text.startswith("[", index):
        value, index = _array(text, index, MAX_DEPTH - 1)
        rules = (start, index)
    else:
        value = json.loads(text)
        if _deeper_than(value, MAX_DEPTH):
            raise TooDeep(_TOO_DEEP)
        return value, None
    if _skip(text, index) != len(text):
        raise json.JSONDecodeError("Extra data", text, index)
    return value, None if rules is None else text[rules[0] : rules[1]]


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
    """The array at ``index``, whose elements may nest ``room`` levels deep.

    Elements are decoded a batch at a time where the text shows where one
    element ends and the next begins (:func:`_boundary`), else one at a time.
    Written out flat: it runs once per rule of a 10,000-rule payload.
    """
    items: list[Any] = []
    index = _skip(text, index + 1)
    if text.startswith("]", index):
        return items, index + 1
    scan, count, append, blank = _scan_once, text.count, items.append, _WHITESPACE
    boundary: Optional[str] = None
    singly_until = 0  # decode one at a time up to here: no batch can start before it
    while True:
        if boundary and index >= singly_until:
            index, singly_until = _batches(text, index, room, boundary, items)
        try:
            item, end = scan(text, index)
        except StopIteration as stop:
            raise json.JSONDecodeError("Expecting value", text, stop.value) from None
        if count("[", index, end) + count("{", index, end) > room and _deeper_than(item, room):
            raise TooDeep(_TOO_DEEP)
        append(item)
        if not len(items) & 63:
            pace()
        if text[end : end + 1] != ",":
            end = _skip(text, end)
            if text.startswith("]", end):
                return items, end + 1
            if not text.startswith(",", end):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, end)
        comma, index = end, end + 1
        if text[index : index + 1] in blank:
            index = _skip(text, index)
        if boundary is None:
            boundary = _boundary(text, comma, index)


def _boundary(text: str, comma: int, start: int) -> str:
    """The text between two elements, the next one's first key included: ``}, {"ruleId"``.

    Every rule a server sends starts with the same key, so this text marks
    where a rule ends (never inside a string, where a quote is escaped). A
    match that is not a rule's end (a nested object that starts with the same
    key, or one past the array) only makes its batch fail to decode, and
    that stretch is decoded one element at a time. ``""`` when elements are
    not objects.
    """
    if text[comma - 1 : comma] != "}" or not text.startswith('{"', start):
        return ""
    key_end = text.find('"', start + 2, start + 64)
    return "" if key_end < 0 else text[comma - 1 : key_end + 1]


def _batches(text: str, index: int, room: int, boundary: str, items: list[Any]) -> tuple[int, int]:
    """Decode whole batches from ``index`` while boundaries are found.

    Returns where to go on one element at a time, and up to where: a batch
    that did not decode, or the rest of the array when no boundary is left.
    """
    to_next = boundary.index("{")  # from the end of one element to the start of the next
    while True:
        cut = text.find(boundary, index + _BATCH_CHARS)
        if cut < 0:
            return index, len(text)
        chunk = text[index : cut + 1]
        try:
            batch = json.loads("[" + chunk + "]")
        except ValueError:  # the boundary was inside a string or a nested object
            return index, cut
        if _nests_deeper(chunk, room):
            raise TooDeep(_TOO_DEEP)
        items.extend(batch)
        index = cut + to_next
        pace()


def _nests_deeper(chunk: str, limit: int) -> bool:
    """Whether valid JSON text nests containers more than ``limit`` deep, in C-speed passes.

    Only brackets and quotes are kept; then strings are cut out, leaving the
    brackets that are structure, and each pass of removing adjacent pairs
    takes one level off. Rules rarely hold a bracket or a backslash in a
    string, so one pass that drops every empty string (``""``) usually
    leaves no quote, which proves it (:func:`_structure`).
    """
    brackets = _structure(chunk)
    depth = 0
    while brackets:
        depth += 1
        if depth > limit:
            return True
        shorter = _INNERMOST.sub(b"", brackets)  # one scan: exactly one level per pass
        if len(shorter) == len(brackets):
            return True  # not balanced: not what a decoded chunk can be
        brackets = shorter
    return False


def _structure(chunk: str) -> bytes:
    """The brackets of valid JSON text that are not inside a string.

    The text starts outside a string, so dropping adjacent quote pairs from
    the left pairs each empty string's quotes; a string that holds a
    bracket keeps its opening quote, and then strings are cut out in full.
    """
    data = chunk.encode("utf-8", "surrogatepass")
    if b"\\" not in data:
        kept = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
        if b'"' not in kept:
            return kept
    else:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(data.translate(None, _NOT_STRUCTURE).split(b'"')[::2])


def _object(text: str, index: int) -> tuple[dict[str, Any], int, Optional[tuple[int, int]]]:
    """The object at ``index``, and where the text of its ``rules`` array starts and ends."""
    result: dict[str, Any] = {}
    rules: Optional[tuple[int, int]] = None
    index = _skip(text, index + 1)
    if text.startswith("}", index):
        return result, index + 1, rules
    while True:
        if not text.startswith('"', index):
            raise json.JSONDecodeError("Expecting property name", text, index)
        key, index = _decoder.raw_decode(text, index)
        index = _skip(text, index)
        if not text.startswith(":", index):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
        index = start = _skip(text, index + 1)
        if key == "rules" and text.startswith("[", index):
            value, index = _array(text, index, MAX_DEPTH - 2)
            rules = (start, index)
        else:
            value, index = _piece(text, index, MAX_DEPTH - 1)
            if key == "rules":
                rules = None
        result[key] = value
        index = _skip(text, index)
        if text.startswith(",", index):
            index = _skip(text, index + 1)
        elif text.startswith("}", index):
            return result, index + 1, rules
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
    pieces = []
    for start in range(0, len(items), _ENCODE_BATCH):
        pieces.append(encode(items[start : start + _ENCODE_BATCH])[1:-1])
        pace()
    return "[" + separator.join(pieces) + "]"
