"""A large rules array kept encoded once it is compiled, out of the collector's way.

A decoded 10,000-rule payload is 20,000 containers (each rule's dict and
its ``filters`` list) that the cyclic garbage collector tracks. Held for as
long as the rules are in force, they are walked by every full collection
of the process, and each take-in that leaves another such set behind
brings the next full collection closer: tens of milliseconds during which
no thread of the application runs. Yet after the compile nearly every rule
is read again only by tools, a department verdict naming it, or the first
call local spend finds it covers.

So a :class:`PackedRules` holds each rule as ``marshal`` bytes, which the
collector never tracks, and decodes one when it is asked for (a few
microseconds). ``marshal`` round-trips every value JSON decodes to
(dicts in their key order, lists, strings, ints of any size, floats
including NaN and infinities, booleans, None) exactly; format version 2
writes no back-references, so equal rules decoded alike pack to equal bytes
and two packed rule sets compare at memory speed.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Union, overload

from ._pace import pace

__all__ = ["PACK_OVER", "PackedRules", "packed", "same_sequences"]

PACK_OVER = 1024  # rules; a smaller array costs the collector little and stays decoded
_VERSION = 2  # no back-references: the bytes depend on the values alone, not on sharing
_SLICE = 256  # rules packed, decoded or compared per run between two paces


class PackedRules(Sequence[Any]):
    """An immutable rules array, each rule ``marshal``-encoded; indexing decodes a copy."""

    __slots__ = ("_blobs",)

    def __init__(self, rules: Iterable[Any]) -> None:
        blobs: list[bytes] = []
        dumps, append = marshal.dumps, blobs.append
        for rule in rules:
            append(dumps(rule, _VERSION))
            if not len(blobs) % _SLICE:
                pace()
        self._blobs = blobs

    def __len__(self) -> int:
        return len(self._blobs)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return [marshal.loads(blob) for blob in self._blobs[index]]
        return marshal.loads(self._blobs[index])

    def __iter__(self) -> Iterator[Any]:
        loads = marshal.loads
        for count, blob in enumerate(self._blobs, 1):
            yield loads(blob)
            if not count % _SLICE:
                pace()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return same_sequences(self, other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, which is unhashable

    def same_as(self, other: PackedRules) -> bool:
        """Equality with another packed array: bytes first, decoding only where they differ.

        Equal bytes are equal rules. Different bytes may still be equal rules
        (``1`` and ``1.0``, ``True`` and ``1``, as ``==`` has it), so a slice
        whose bytes differ is compared decoded.
        """
        ours, theirs = self._blobs, other._blobs
        if ours is theirs:
            return True
        if len(ours) != len(theirs):
            return False
        for start in range(0, len(ours), _SLICE):
            end = start + _SLICE
            if ours[start:end] != theirs[start:end] and self[start:end] != other[start:end]:
                return False
            pace()
        return True

    def __repr__(self) -> str:
        return f"PackedRules(<{len(self)} rules>)"


def same_sequences(ours: Sequence[Any], theirs: Sequence[Any]) -> bool:
    """``ours == theirs`` for two rules arrays, decoded or packed, :data:`_SLICE` rules per run.

    One ``==`` of two 10,000-rule lists holds the GIL for 10 ms or more; a
    slice of them well under one, and :func:`._pace.pace` in between lets a
    waiting caller in. Two packed arrays compare their bytes first
    (:meth:`PackedRules.same_as`).
    """
    if ours is theirs:
        return True
    if len(ours) != len(theirs):
        return False
    if isinstance(ours, PackedRules) and isinstance(theirs, PackedRules):
        return ours.same_as(theirs)
    for start in range(0, len(ours), _SLICE):
        end = start + _SLICE
        if ours[start:end] != theirs[start:end]:
            return False
        pace()
    return True


def packed(rules: Sequence[Any]) -> Sequence[Any]:
    """``rules`` kept encoded when there are enough of them to matter to the collector.

    Kept as they are when any value is not one JSON decodes to (rules an
    application built by hand may hold a ``str`` subclass or a date), which
    ``marshal`` cannot write or would not give back as it was.
    """
    if isinstance(rules, PackedRules) or len(rules) < PACK_OVER:
        return rules
    try:
        return PackedRules(rules)
    except ValueError:  # an unmarshallable value
        return rules
