"""Unit test of enforcement._json: a depth-bounded decoder that never recurses out."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# -- the piecewise path for large bodies -------------------------------------------

THRESHOLD = json_pieces._PIECEWISE_OVER


def test_the_piecewise_path_starts_at_256_kib() -> None:
    assert THRESHOLD == 256 * 1024


def of_length(size: int, rules: str = '[{"ruleId": 1}]') -> bytes:
    """An object body of exactly ``size`` bytes, padded with a string field."""
    head, tail = '{"rules": ' + rules + ', "pad": "', '"}'
    body = (head + "x" * (size - len(head) - len(tail)) + tail).encode()
    assert len(body) == size
    return body


@pytest.fixture
def piecewise_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the bodies the piecewise decoder was handed."""
    calls: list[int] = []
    decode_large = json_pieces._decode_large

    def spy(body: bytes) -> Any:
        calls.append(len(body))
        return decode_large(body)

    monkeypatch.setattr(json_pieces, "_decode_large", spy)
    return calls


@pytest.mark.parametrize(("size", "piecewise"), [(THRESHOLD - 1, False), (THRESHOLD, True)])
def test_both_sides_of_the_threshold_decode_alike(
    piecewise_calls: list[int], size: int, piecewise: bool
) -> None:
    body = of_length(size)
    assert json_pieces.decode(body) == json.loads(body)
    assert piecewise_calls == ([size] if piecewise else [])


LARGE_DOCUMENTS = {
    "object": {"rules": [{"ruleId": i} for i in range(3)], "pad": "x" * THRESHOLD},
    "bare-list": [{"ruleId": i, "name": "y" * 300} for i in range(1000)],
    "string": "z" * THRESHOLD,
    "maps-first": {"departmentBudgetBlocks": {"a@b.c": 1}, "rules": [], "pad": "p" * THRESHOLD},
    "rules-not-a-list": {"rules": None, "pad": "n" * THRESHOLD},
    "rules-an-object": {"rules": {"ruleId": 1}, "pad": "o" * THRESHOLD},
    "unicode": {"rules": [{"name": "Zürich ✓ \U0001f600"}], "pad": "é" * THRESHOLD},
    "empty-containers": {"rules": [[], {}, [[]]], "m": {}, "pad": "e" * THRESHOLD},
    "numbers": {"rules": [0, -1, 1.5e300, 10**30, True, None], "pad": "n" * THRESHOLD},
}


@pytest.mark.parametrize("document", list(LARGE_DOCUMENTS.values()), ids=list(LARGE_DOCUMENTS))
@pytest.mark.parametrize("indent", [None, 2], ids=["compact", "indented"])
def test_large_documents_decode_exactly_as_json_loads(
    piecewise_calls: list[int], document: Any, indent: Optional[int]
) -> None:
    body = json.dumps(document, indent=indent, ensure_ascii=False).encode()
    assert json_pieces.decode(body) == json.loads(body)
    assert piecewise_calls == [len(body)]


def test_large_bodies_keep_json_loads_quirks() -> None:
    pad = "q" * THRESHOLD
    duplicate = ('{"rules": [1], "rules": [2], "pad": "' + pad + '"}').encode()
    assert json_pieces.decode(duplicate) == json.loads(duplicate) == {"rules": [2], "pad": pad}
    constants = ('{"rules": [NaN, Infinity], "pad": "' + pad + '"}').encode()
    decoded = json_pieces.decode(constants)["rules"]
    assert decoded[0] != decoded[0] and decoded[1] == float("inf")
    spaced = (' \n\t{ "rules" :\r\n [ 1 , 2 ] , "pad" : "' + pad + '" }\n ').encode()
    assert json_pieces.decode(spaced) == json.loads(spaced)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
def test_large_bodies_in_any_json_encoding(encoding: str) -> None:
    text = json.dumps({"rules": [{"name": "ä"}], "pad": "x" * THRESHOLD})
    body = text.encode(encoding)
    assert json_pieces.decode(body) == json.loads(body)


def large_garbage() -> dict[str, bytes]:
    pad = "g" * THRESHOLD
    good = '{"rules": [{"ruleId": 1}, {"ruleId": 2}], "pad": "' + pad + '"}'
    return {
        "truncated-in-rules": good[: good.index("}, {") + 2].encode() + pad.encode(),
        "truncated-at-end": good[:-1].encode(),
        "missing-comma": good.replace("}, {", "} {").encode(),
        "trailing-comma": good.replace("}]", "},]").encode(),
        "key-not-a-string": good.replace('"pad"', "pad").encode(),
        "missing-colon": good.replace('"pad":', '"pad"').encode(),
        "extra-data": good.encode() + b" {}",
        "unquoted-value": good.replace('"ruleId": 1', '"ruleId": one').encode(),
        "not-utf-8": b'{"rules": [], "pad": "\xff' + pad.encode() + b'"}',
        "lone-bracket": b"[" + b" " * THRESHOLD,
        "whitespace-only": b" " * THRESHOLD,
        "html-error-page": b"<html>" + b"x" * THRESHOLD + b"</html>",
    }


@pytest.mark.parametrize("body", list(large_garbage().values()), ids=list(large_garbage()))
def test_large_garbage_is_a_value_error_as_with_json_loads(body: bytes) -> None:
    assert len(body) >= THRESHOLD
    with pytest.raises(ValueError):
        json.loads(body)
    with pytest.raises(ValueError):
        json_pieces.decode(body)


@pytest.mark.parametrize("where", ["map", "bare-list"])
def test_the_depth_bound_is_exact_outside_the_rules_too(where: str) -> None:
    pad = '"' + "d" * THRESHOLD + '"'

    def body(depth: int) -> bytes:
        # The document counts as one level: a map value or a list element has the rest.
        if where == "map":
            return (
                '{"maps": ' + nested_text(depth) + ', "rules": [], "pad": ' + pad + "}"
            ).encode()
        return ("[" + nested_text(depth) + ", " + pad + "]").encode()

    assert json_pieces.decode(body(MAX_DEPTH - 1)) == json.loads(body(MAX_DEPTH - 1))
    with pytest.raises(TooDeep):
        json_pieces.decode(body(MAX_DEPTH))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4), st.lists(JSON_VALUES))
def test_any_large_document_decodes_exactly_as_json_loads(
    maps: dict[str, Any], rules: list[Any]
) -> None:
    document = {**maps, "rules": rules, "~pad": "p" * THRESHOLD}
    body = json.dumps(document).encode()
    assert json_pieces.decode(body) == json.loads(body)


@given(JSON_VALUES, st.integers(min_value=0, max_value=40))
def test_the_bound_is_the_same_on_both_paths(value: Any, wrap: int) -> None:
    text = "[" * wrap + json.dumps(value) + "]" * wrap
    small = text.encode()
    large = (text + " " * THRESHOLD).encode()
    outcomes = []
    for body in (small, large):
        try:
            outcomes.append(json_pieces.decode(body) == json.loads(body))
        except TooDeep:
            outcomes.append(None)
    assert outcomes[0] is outcomes[1]


# -- batches of rules, and the rules array's own text --------------------------------

TRICKY_TEXT = st.text(alphabet='[]{}",:\\ ab\u00e9', max_size=12)
TRICKY_VALUES = st.recursive(
    st.none() | st.integers() | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=12,
)
RULES = st.lists(
    st.builds(
        lambda i, rest: {"ruleId": i, **rest},
        st.integers(),
        st.dictionaries(TRICKY_TEXT, TRICKY_VALUES, max_size=3),
    ),
    min_size=1,
    max_size=30,
)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@given(TRICKY_VALUES, st.integers(min_value=0, max_value=6))
def test_structure_counts_only_the_brackets_outside_strings(value: Any, limit: int) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert json_pieces._nests_deeper(text, limit) == (depth_of(value) > limit)


@given(RULES, st.sampled_from([(", ", ": "), (",", ":")]))
def test_rules_decoded_in_batches_are_exactly_json_loads(
    rules: list[dict[str, Any]], separators: tuple[str, str]
) -> None:
    # Tiny batches, so every boundary (and every false one, inside a string) is tried.
    body = json.dumps({"rules": rules, "pad": "p" * THRESHOLD}, separators=separators).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json_pieces, "_BATCH_CHARS", 1)
        value, text = json_pieces.decode_keeping_rules(body)
    assert value == json.loads(body)
    assert text == json.dumps(rules, separators=separators)


def test_a_false_boundary_in_a_nested_object_or_after_the_rules_is_decoded_one_by_one() -> None:
    # A quote in a string is escaped, so only objects can look like the next rule.
    rules = [
        {"ruleId": i, "name": "y" * 200, "related": [{"ruleId": 1}, {"ruleId": 2}][: i % 3]}
        for i in range(2000)
    ]
    candidates = {"a@b.c": [{"ruleId": 1}, {"ruleId": 2}]}
    document = {"rules": rules, "departmentBudgetCandidates": candidates}
    body = json.dumps(document).encode()
    assert json_pieces.decode_keeping_rules(body) == (json.loads(body), json.dumps(rules))


@pytest.mark.parametrize("extra", [0, 1], ids=["at-the-bound", "past-it"])
def test_the_depth_bound_is_exact_inside_a_batch(extra: int) -> None:
    # The document, the rules array and the rule object are three levels.
    deep = {"ruleId": 0, "x": json.loads(nested_text(MAX_DEPTH - 3 + extra))}
    rules = [{"ruleId": i, "name": "y" * 200} for i in range(1, 2000)]
    body = json.dumps({"rules": [*rules[:1000], deep, *rules[1000:]]}).encode()
    if extra:
        with pytest.raises(TooDeep):
            json_pieces.decode(body)
    else:
        assert json_pieces.decode(body) == json.loads(body)


def test_the_rules_text_is_kept_only_for_a_large_body() -> None:
    small = b'{"rules": [{"ruleId": 1}]}'
    assert json_pieces.decode_keeping_rules(small) == (json.loads(small), None)
    bare = json.dumps([{"ruleId": i, "name": "y" * 300} for i in range(1000)], indent=1)
    assert json_pieces.decode_keeping_rules(("  " + bare + "\n").encode())[1] == bare
    pad = "q" * THRESHOLD
    twice = '{"rules": [1], "pad": "' + pad + '", "rules": [ 2 ]}'
    assert json_pieces.decode_keeping_rules(twice.encode())[1] == "[ 2 ]"  # the last, as loads
    not_a_list = '{"rules": [1], "rules": null, "pad": "' + pad + '"}'
    assert json_pieces.decode_keeping_rules(not_a_list.encode())[1] is None
