"""Unit test of enforcement._json: a depth-bounded decoder that never recurses out."""

from __future__ import annotations

import json
import sys

import pytest

from enforcement import _json as json_pieces
from enforcement._json import MAX_DEPTH, TooDeep


def nested_text(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def padded(rules_text: str) -> bytes:
    """A body past the piecewise threshold, so the large-document path decodes it."""
    filler = ", ".join(json.dumps({"ruleId": i, "name": "x" * 200}) for i in range(1500))
    return ('{"compiledAt": 1, "rules": [' + filler + ", " + rules_text + "]}").encode()


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
def test_the_depth_bound_is_exact(large: bool) -> None:
    # The document, its "rules" array and the rule's own nesting count as levels.
    allowed = nested_text(MAX_DEPTH - 2)
    refused = nested_text(MAX_DEPTH - 1)
    body = padded(allowed) if large else ('{"rules": [' + allowed + "]}").encode()
    assert json_pieces.decode(body) == json.loads(body)
    body = padded(refused) if large else ('{"rules": [' + refused + "]}").encode()
    with pytest.raises(TooDeep):
        json_pieces.decode(body)


@pytest.mark.parametrize(
    "text",
    [
        nested_text(100_000),
        "[" * 100_000,
        '{"a": ' * 100_000,
        '{"rules": [' + nested_text(100_000) + "]}",
        "[" + nested_text(100_000) + "]" + " " * 300_000,  # large path, bare list
        '{"maps": ' + nested_text(100_000) + ', "rules": []}' + " " * 300_000,
    ],
    ids=["array", "truncated", "objects", "in-rules", "large-list", "large-object"],
)
def test_hostile_depth_is_a_value_error_never_a_recursion_error(text: str) -> None:
    with pytest.raises(ValueError):
        json_pieces.decode(text.encode())


def current_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


def test_a_caller_at_the_edge_of_the_stack_never_sees_a_recursion_error() -> None:
    body = ('{"rules": [' + nested_text(MAX_DEPTH - 2) + "]}").encode()
    outcomes: list[str] = []

    def at_depth(frames: int) -> None:
        if frames:
            at_depth(frames - 1)
            return
        try:
            json_pieces.decode(body)
            outcomes.append("decoded")
        except ValueError:
            outcomes.append("refused")  # not decodable this deep: an unreadable body

    at_depth(sys.getrecursionlimit() - current_depth() - 30)
    assert outcomes in (["decoded"], ["refused"])


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"rules": [{"name": "[" * 1000 + "{" * 1000}]})
    assert json_pieces.decode(text.encode()) == json.loads(text)
    assert json_pieces.decode(padded(json.dumps({"name": "[" * 5000}))) is not None


def test_wide_documents_are_not_mistaken_for_deep_ones() -> None:
    rules = [{"filters": [{"values": ["a", "b"]}], "groupBreakdown": [{}]} for _ in range(5000)]
    body = json.dumps({"rules": rules, "departmentBudgetCandidates": {"a": [{}]}}).encode()
    assert json_pieces.decode(body) == json.loads(body)
