"""Rule filters: parsed once per rule set, judged per call.

A filter row is ``{"dimension", "operator", "value"}`` (``IN`` reads
``values``). The server counts a call toward a cap when every row holds for
the metering record the call produces, so each row is judged on what that
record will carry. The rules that make that subtle (snapshot dates, routes,
Azure deployments, vendor aliases, per-dimension case) are the reference
SDK's, which the differential test in ``tests/compat`` holds us to.

A row we cannot judge (malformed, an unknown dimension or operator, a value we
were not told) *holds*: a cap is never weakened by what we do not understand.
Rows that hold whatever the call are dropped when the rule set is compiled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Generic, Optional, TypeVar

from ._callfacts import CallFacts, SubscriberEmail, first_set, normalize_email
from ._model_match import lowercased_model, model_matches, provider_matches

__all__ = [
    "CompiledFilter",
    "CompiledFilters",
    "CoverIndex",
    "FiledValues",
    "Filing",
    "RowKey",
    "compile_filters",
    "indexable_row",
    "meta_rows_hold",
    "names_a_filed_value",
    "route_rows_hold",
    "rows_hold",
    "scan_filters",
]

OPERATORS = frozenset({"IS", "IS_NOT", "CONTAINS", "STARTS_WITH", "ENDS_WITH", "IN"})
DIMENSIONS = frozenset(
    {
        "MODEL",
        "PROVIDER",
        "AGENT",
        "TASK_TYPE",
        "PRODUCT",
        "ORGANIZATION",
        "SUBSCRIBER",
        "CREDENTIAL",
    }
)
# The record always carries these when the caller gave them, so a call that
# gave none is outside every filter on them except IS_NOT, as on the server.
_COMPARED_WHEN_ABSENT = frozenset(
    {"AGENT", "TASK_TYPE", "PRODUCT", "ORGANIZATION", "SUBSCRIBER", "CREDENTIAL"}
)
# Dimensions a department candidate's rule is not judged on: the server
# already resolved them when it listed the candidate for the caller.
CANDIDATE_DECIDED = frozenset({"DEPARTMENT", "ORG_UNIT", "SUBSCRIBER"})
CANDIDATE_DECIDED_WITH_CREDENTIAL = CANDIDATE_DECIDED | {"CREDENTIAL"}


_EMAIL_EQUALITY = frozenset({"IS", "IS_NOT", "IN"})
# Dimensions whose IS and IN rows name exact values a rule set can index by.
INDEXED_DIMENSIONS = ("ORGANIZATION", "PRODUCT", "SUBSCRIBER", "AGENT", "TASK_TYPE", "CREDENTIAL")
_INDEXED_OPERATORS = frozenset({"IS", "IN"})

Matcher = Callable[[str, CallFacts], bool]


def _comparer(operator: str, expected: list[str]) -> Callable[[str], bool]:
    """The comparison of one operator against fixed values, chosen once per row."""
    if operator == "IN":
        members = frozenset(expected)
        return members.__contains__
    first = expected[0]
    if operator == "IS":
        return first.__eq__
    if operator == "IS_NOT":
        return first.__ne__
    if operator == "CONTAINS":
        return lambda actual: first in actual
    if operator == "STARTS_WITH":
        return lambda actual: actual.startswith(first)
    return lambda actual: actual.endswith(first)


def _matcher(dimension: str, operator: str, expected: list[str], ignore_case: bool) -> Matcher:
    """The whole judgement of one row for one case rule, picked when the rule set compiles."""
    if dimension == "MODEL":
        if ignore_case:
            lowered = [value.lower() for value in expected]
            return lambda actual, facts: model_matches(
                operator, lowered, lowercased_model(actual), facts.provider
            )
        return lambda actual, facts: model_matches(operator, expected, actual, facts.provider)
    if dimension == "PROVIDER":
        return lambda actual, _facts: provider_matches(operator, actual, expected)
    fold: Callable[[str], str] = str.lower
    plain = _comparer(operator, [fold(v) for v in expected] if ignore_case else expected)
    if ignore_case:
        plain = _folded(plain, fold)
    if dimension != "SUBSCRIBER":
        return lambda actual, _facts: plain(actual)
    email_fold = normalize_email if operator in _EMAIL_EQUALITY else str.lower
    as_email = _folded(_comparer(operator, [email_fold(v) for v in expected]), email_fold)
    return lambda actual, _facts: (
        as_email(actual) if isinstance(actual, SubscriberEmail) else plain(actual)
    )


def _folded(compare: Callable[[str], bool], fold: Callable[[str], str]) -> Callable[[str], bool]:
    return lambda actual: compare(fold(actual))


class CompiledFilter:
    """One filter row that can exclude a call, with its matchers chosen in advance."""

    __slots__ = ("_exact", "_folded", "absent_holds", "dimension", "expected", "operator")

    def __init__(self, dimension: str, operator: str, expected: list[str]) -> None:
        self.dimension = dimension
        self.operator = operator
        self.expected = expected
        # What the row says of a call that gave no value: None when it reads on.
        self.absent_holds: Optional[bool] = (
            operator == "IS_NOT" if dimension in _COMPARED_WHEN_ABSENT else None
        )
        # Chosen on first use: most rows of a large rule set are never judged.
        self._exact: Optional[Matcher] = None
        self._folded: Optional[Matcher] = None

    def holds(self, facts: CallFacts, ignore_case: bool) -> bool:
        """Whether the call's record falls inside this row."""
        actual = facts.value(self.dimension)
        if actual is None and self.absent_holds is not None:
            return self.absent_holds
        if not isinstance(actual, str):
            return True
        return self._matcher(ignore_case)(actual, facts)

    def _matcher(self, ignore_case: bool) -> Matcher:
        if ignore_case:
            if self._folded is None:
                self._folded = _matcher(self.dimension, self.operator, self.expected, True)
            return self._folded
        if self._exact is None:
            self._exact = _matcher(self.dimension, self.operator, self.expected, False)
        return self._exact

    def index_keys(self) -> Optional[list[str]]:
        """The values a call must carry for this row to hold, when an index can use them."""
        return _index_keys(self.dimension, self.operator, self.expected)


def _index_keys(dimension: str, operator: str, expected: list[str]) -> Optional[list[str]]:
    if operator not in _INDEXED_OPERATORS or dimension not in INDEXED_DIMENSIONS:
        return None
    if dimension == "SUBSCRIBER":
        return [*expected, *map(normalize_email, expected)]
    return expected


_ROUTE_DIMENSIONS = frozenset({"MODEL", "PROVIDER"})


class CompiledFilters:
    """A rule's rows that can exclude a call, split by what they read.

    ``route`` rows read only the model and provider, so their verdict can be
    cached per (model, provider) for the whole rule set; ``meta`` rows read
    the call's metadata and are judged per call.
    """

    __slots__ = ("meta", "route", "rows")

    def __init__(self, rows: list[CompiledFilter]) -> None:
        self.rows = rows
        self.route = [row for row in rows if row.dimension in _ROUTE_DIMENSIONS]
        self.meta = [row for row in rows if row.dimension not in _ROUTE_DIMENSIONS]

    def hold(
        self, facts: CallFacts, ignore_case: bool = False, decided: frozenset[str] = frozenset()
    ) -> bool:
        """Whether every row holds; anything unexpected keeps the rule applying."""
        return _all_hold(self.rows, facts, ignore_case, decided)


def _all_hold(
    rows: Sequence[CompiledFilter],
    facts: CallFacts,
    ignore_case: bool = False,
    decided: frozenset[str] = frozenset(),
) -> bool:
    try:
        for row in rows:
            if row.dimension not in decided and not row.holds(facts, ignore_case):
                return False
        return True
    except Exception:
        return True


T = TypeVar("T")
_Numbered = tuple[int, T]
_Bucket = tuple[dict[str, list[_Numbered[T]]], list[_Numbered[T]]]


class CoverIndex(Generic[T]):
    """Rules found by the metadata value their first IS or IN row names.

    Built from ``(row, rule)`` pairs, ``row`` being the rule's
    :func:`indexable_row` (``None``: always visited). A call reads each
    indexed dimension once and visits only the rules whose row can hold for
    its value (plus the rules no row indexes), in their original order, so a
    hundred tripped rules filtered to other organizations cost one dict
    miss, not a hundred filter walks. The index only narrows: every visited
    rule is still judged in full.
    """

    __slots__ = ("_always", "_always_numbered", "_dimensions", "size")

    def __init__(self, items: Iterable[tuple[Optional[CompiledFilter], T]]) -> None:
        always: list[_Numbered[T]] = []
        dimensions: dict[str, _Bucket[T]] = {}
        size = 0
        for number, (row, item) in enumerate(items):
            size += 1
            if row is None:
                always.append((number, item))
                continue
            by_value, every = dimensions.setdefault(row.dimension, ({}, []))
            every.append((number, item))
            for key in dict.fromkeys(row.index_keys() or ()):
                by_value.setdefault(key, []).append((number, item))
        self._always_numbered = always
        self._always = tuple(item for _, item in always)
        self._dimensions = tuple((name, *bucket) for name, bucket in dimensions.items())
        self.size = size

    def __len__(self) -> int:
        return self.size

    def buckets(self) -> Optional[tuple[tuple[str, dict[str, list[_Numbered[T]]]], ...]]:
        """Each indexed dimension with its rules by value; ``None`` when a rule is in none."""
        if self._always:
            return None
        return tuple((name, by_value) for name, by_value, _ in self._dimensions)

    def candidates(self, facts: CallFacts) -> tuple[T, ...]:
        """The rules that may cover this call, in their original order."""
        found: Optional[list[_Numbered[T]]] = None
        for dimension, by_value, every in self._dimensions:
            hits = _indexed(facts, dimension, by_value, every)
            if hits:
                if found is None:
                    found = [*hits, *self._always_numbered]
                else:
                    found.extend(hits)
        if found is None:
            return self._always
        found.sort(key=_number)
        return tuple(item for _, item in found)


# Per filed dimension: the metadata keys it reads, and the values rules are filed by.
FiledValues = tuple[tuple[tuple[str, ...], Mapping[str, object]], ...]


def names_a_filed_value(filed: FiledValues, metadata: Mapping[str, Any]) -> bool:
    """Whether the call sends a value some rule is filed by (or one that is not plain text).

    Read straight from the metadata, as :meth:`CallFacts.value` reads the
    plain dimensions: a call that sends none of them is covered by none of
    the rules, and is answered before any :class:`CallFacts` is built.
    """
    for keys, values in filed:
        value = first_set(metadata, keys)
        if value is not None and (type(value) is not str or value in values):
            return True
    return False


def _number(pair: _Numbered[Any]) -> int:
    return pair[0]


def _indexed(
    facts: CallFacts,
    dimension: str,
    by_value: dict[str, list[_Numbered[T]]],
    every: list[_Numbered[T]],
) -> Sequence[_Numbered[T]]:
    """The rules of one dimension that this call's value can satisfy."""
    try:
        actual = facts.value(dimension)
    except Exception:
        return every  # a value we cannot read holds, as in a filter walk
    if actual is None:
        return _NONE
    if type(actual) is not str:
        if not isinstance(actual, str):
            return every
        if isinstance(actual, SubscriberEmail):
            actual = normalize_email(actual)
    return by_value.get(actual, _NONE)


_NONE: tuple[Any, ...] = ()


def indexable_row(filters: Optional[CompiledFilters]) -> Optional[CompiledFilter]:
    """The row a :class:`CoverIndex` files a rule under: its first indexable metadata row."""
    if filters is None:
        return None
    for row in filters.meta:
        if row.index_keys() is not None:
            return row
    return None


# A row as atoms (dimension, operator, expected values): what equal rows share.
RowKey = tuple[str, str, tuple[str, ...]]
# The dimension and values a row files its rule under in an index, as atoms.
Filing = tuple[str, tuple[str, ...]]


def scan_filters(
    raw: Any, shared: dict[RowKey, CompiledFilter]
) -> tuple[Optional[tuple[CompiledFilter, ...]], Optional[Filing]]:
    """A rule's model and provider rows and its :func:`indexable_row`'s filing, from the wire.

    What local accrual needs to file a rule, without compiling the rest of
    it: the same rows :func:`compile_filters` would keep, the others parsed
    when a call first reaches the rule. Equal route rows are one object,
    kept in ``shared``, and the filing is atoms: a 10,000-rule index then
    holds a container per distinct row, not per rule, for the garbage
    collector to walk.
    """
    if not isinstance(raw, list) or not raw:
        return None, None
    route: Optional[tuple[CompiledFilter, ...]] = None
    filing: Optional[Filing] = None
    for entry in raw:
        parsed = _parse_row(entry)
        if parsed is None:
            continue
        dimension, operator, expected = parsed
        if dimension in _ROUTE_DIMENSIONS:
            key = (dimension, operator, tuple(expected))
            row = shared.get(key)
            if row is None:
                row = shared[key] = CompiledFilter(dimension, operator, expected)
            route = (row,) if route is None else (*route, row)
        elif filing is None:
            keys = _index_keys(dimension, operator, expected)
            if keys is not None:
                filing = (dimension, tuple(dict.fromkeys(keys)))
    return route, filing


def rows_hold(rows: Sequence[CompiledFilter], facts: CallFacts) -> bool:
    """Whether every one of ``rows`` holds; anything unexpected keeps the rule applying."""
    return _all_hold(rows, facts)


def route_rows_hold(filters: Optional[CompiledFilters], facts: CallFacts) -> bool:
    """The model and provider rows of a rule (none: holds)."""
    return filters is None or not filters.route or _all_hold(filters.route, facts)


def meta_rows_hold(filters: Optional[CompiledFilters], facts: CallFacts) -> bool:
    """The metadata rows of a rule (none: holds)."""
    return filters is None or not filters.meta or _all_hold(filters.meta, facts)


def compile_filters(raw: Any) -> Optional[CompiledFilters]:
    """Parse a rule's ``filters``; ``None`` when no row can ever exclude a call."""
    if not isinstance(raw, list) or not raw:
        return None
    rows = [row for row in map(_compile_row, raw) if row is not None]
    return CompiledFilters(rows) if rows else None


def _compile_row(entry: Any) -> Optional[CompiledFilter]:
    parsed = _parse_row(entry)
    return None if parsed is None else CompiledFilter(*parsed)


def _parse_row(entry: Any) -> Optional[tuple[str, str, list[str]]]:
    """A wire row's dimension, operator and expected values; ``None`` when it excludes nothing."""
    if not isinstance(entry, dict):
        return None
    dimension, operator = entry.get("dimension"), entry.get("operator")
    if not isinstance(dimension, str) or not isinstance(operator, str):
        return None
    if operator not in OPERATORS or dimension not in DIMENSIONS:
        return None
    if operator == "IN":
        values = entry.get("values")
        expected = [v for v in values if isinstance(v, str)] if isinstance(values, list) else []
    else:
        value = entry.get("value")
        expected = [value] if isinstance(value, str) else []
    if not expected:
        return None
    return dimension, operator, expected


# -- PROVIDER ---------------------------------------------------------------


# -- MODEL ------------------------------------------------------------------
