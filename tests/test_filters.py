"""Unit tests of enforcement._filters: one filter row, judged on what the metering record carries.

CONTRACT §2 names the dimensions and operators, §3 the rule that a row we
cannot judge holds. The subtle model rules (snapshot dates, routes, Azure
deployments, vendor aliases) are the reference SDK's; the differential test
in tests/compat finds the cases, these pin each one down by name.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from typing import Any, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enforcement._callfacts import CallFacts
from enforcement._filters import (
    DIMENSIONS,
    OPERATORS,
    compile_filters,
    meta_rows_hold,
    route_rows_hold,
)

METADATA_DIMENSIONS = sorted(DIMENSIONS - {"MODEL", "PROVIDER"})


def row(dimension: str, operator: str, value: Any) -> dict[str, Any]:
    """A filter row as served: ``IN`` reads ``values``, every other operator ``value``."""
    key = "values" if operator == "IN" else "value"
    return {"dimension": dimension, "operator": operator, key: value}


def holds(
    rows: list[Any],
    metadata: Optional[Mapping[str, Any]] = None,
    model: Any = None,
    provider: Any = None,
) -> bool:
    """Whether a rule with these rows covers the call, as a regular rule is judged."""
    filters = compile_filters(rows)
    facts = CallFacts(metadata, model, provider)
    return route_rows_hold(filters, facts) and meta_rows_hold(filters, facts)


def holds_ignoring_case(rows: list[Any], metadata: Mapping[str, Any]) -> bool:
    """As a department candidate's rule is judged: every comparison case-blind."""
    filters = compile_filters(rows)
    return filters is None or filters.hold(CallFacts(metadata, None, None), ignore_case=True)


# -- compiling ---------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, [], "MODEL IS gpt-4o", {"dimension": "MODEL"}, 7])
def test_no_filters_is_none(raw: Any) -> None:
    assert compile_filters(raw) is None


@pytest.mark.parametrize(
    "entry",
    [
        "MODEL IS gpt-4o",
        {"dimension": "MODEL", "operator": "IS"},
        {"dimension": "MODEL", "operator": "IS", "value": 4},
        {"dimension": "MODEL", "operator": "IS", "value": None},
        {"dimension": "MODEL", "operator": "REGEX", "value": "gpt.*"},
        {"dimension": "DEPARTMENT", "operator": "IS", "value": "sales"},
        {"dimension": "model", "operator": "IS", "value": "gpt-4o"},
        {"dimension": "MODEL", "operator": "in", "values": ["gpt-4o"]},
        {"dimension": "MODEL", "operator": "IN", "value": "claude"},
        {"dimension": "MODEL", "operator": "IN", "values": "claude"},
        {"dimension": "MODEL", "operator": "IN", "values": [1, None, {}]},
        {"dimension": ["MODEL"], "operator": "IS", "value": "claude"},
    ],
)
def test_a_row_that_cannot_be_judged_is_dropped_and_holds(entry: Any) -> None:
    assert compile_filters([entry]) is None
    assert holds([entry], {"agent": "x"}, model="claude-opus-4", provider="anthropic")


def test_dropped_rows_leave_the_others_in_force() -> None:
    rows = [
        {"dimension": "MODEL", "operator": "REGEX", "value": "gpt.*"},
        row("MODEL", "IS", "claude-opus-4"),
    ]
    filters = compile_filters(rows)
    assert filters is not None and len(filters.rows) == 1
    assert not holds(rows, model="gpt-4o", provider="openai")
    assert holds(rows, model="claude-opus-4", provider="anthropic")


def test_in_keeps_only_its_string_values() -> None:
    entry = row("AGENT", "IN", ["support", 7, None, "billing"])
    filters = compile_filters([entry])
    assert filters is not None and filters.rows[0].expected == ["support", "billing"]


def test_rows_are_split_by_what_they_read() -> None:
    filters = compile_filters(
        [row("MODEL", "IS", "gpt-4o"), row("AGENT", "IS", "bot"), row("PROVIDER", "IS", "openai")]
    )
    assert filters is not None
    assert [r.dimension for r in filters.route] == ["MODEL", "PROVIDER"]
    assert [r.dimension for r in filters.meta] == ["AGENT"]


def test_every_row_must_hold() -> None:
    rows = [row("MODEL", "IS", "gpt-4o"), row("AGENT", "IS", "bot")]
    assert holds(rows, {"agent": "bot"}, model="gpt-4o")
    assert not holds(rows, {"agent": "human"}, model="gpt-4o")
    assert not holds(rows, {"agent": "bot"}, model="gpt-4o-mini")


# -- the metadata dimensions -------------------------------------------------------

#: Where each metadata dimension reads the value ``support-bot`` from.
METADATA_CARRYING: dict[str, dict[str, Any]] = {
    "AGENT": {"agent": "support-bot"},
    "TASK_TYPE": {"task_type": "support-bot"},
    "PRODUCT": {"product_name": "support-bot"},
    "ORGANIZATION": {"organization_name": "support-bot"},
    "SUBSCRIBER": {"subscriber": {"id": "support-bot"}},
    "CREDENTIAL": {"subscriber": {"credential": {"name": "support-bot", "value": "sk-1"}}},
}
OPERATOR_CASES = [
    ("IS", "support-bot", True),
    ("IS", "support", False),
    ("IS_NOT", "support", True),
    ("IS_NOT", "support-bot", False),
    ("CONTAINS", "port-b", True),
    ("CONTAINS", "bots", False),
    ("STARTS_WITH", "supp", True),
    ("STARTS_WITH", "bot", False),
    ("ENDS_WITH", "-bot", True),
    ("ENDS_WITH", "supp", False),
    ("IN", ["billing", "support-bot"], True),
    ("IN", ["billing", "support"], False),
]


def test_every_metadata_dimension_is_covered() -> None:
    assert sorted(METADATA_CARRYING) == METADATA_DIMENSIONS
    assert {operator for operator, _, _ in OPERATOR_CASES} == OPERATORS


@pytest.mark.parametrize("dimension", METADATA_DIMENSIONS)
@pytest.mark.parametrize(("operator", "value", "expected"), OPERATOR_CASES)
def test_each_metadata_dimension_under_each_operator(
    dimension: str, operator: str, value: Any, expected: bool
) -> None:
    assert holds([row(dimension, operator, value)], METADATA_CARRYING[dimension]) is expected


@pytest.mark.parametrize("dimension", METADATA_DIMENSIONS)
@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("IS", "support-bot", False),
        ("IS_NOT", "support-bot", True),
        ("CONTAINS", "bot", False),
        ("STARTS_WITH", "s", False),
        ("ENDS_WITH", "t", False),
        ("IN", ["support-bot"], False),
    ],
)
def test_a_call_that_gave_no_value_is_outside_all_but_is_not(
    dimension: str, operator: str, value: Any, expected: bool
) -> None:
    assert holds([row(dimension, operator, value)], {}) is expected
    assert holds([row(dimension, operator, value)], None) is expected


@pytest.mark.parametrize("dimension", METADATA_DIMENSIONS)
def test_metadata_values_compare_case_sensitively_on_a_regular_rule(dimension: str) -> None:
    shouting = row(dimension, "IS", "SUPPORT-BOT")
    assert not holds([shouting], METADATA_CARRYING[dimension])
    assert holds_ignoring_case([shouting], METADATA_CARRYING[dimension])


@pytest.mark.parametrize(
    ("dimension", "metadata"),
    [
        ("AGENT", {"agent": 42}),
        ("TASK_TYPE", {"task_type": ["a", "list"]}),
        ("ORGANIZATION", {"organizationName": {"a": "dict"}}),
        ("SUBSCRIBER", {"subscriber": {"id": 12}}),
    ],
)
@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_a_value_that_is_not_text_cannot_be_judged_and_holds(
    dimension: str, metadata: dict[str, Any], operator: str
) -> None:
    assert holds([row(dimension, operator, ["x"] if operator == "IN" else "x")], metadata)


@pytest.mark.parametrize(
    ("dimension", "metadata"),
    [
        ("TASK_TYPE", {"task_type": "first", "taskType": "second"}),
        ("PRODUCT", {"product_name": "first", "productName": "x", "product_id": "y"}),
        ("PRODUCT", {"productId": "first"}),
        ("ORGANIZATION", {"organizationName": "first", "organization_id": "second"}),
        ("SUBSCRIBER", {"subscriber": {"id": "second", "email": "first"}}),
        ("SUBSCRIBER", {"subscriber_id": "first"}),
        ("CREDENTIAL", {"subscriber": {"credential": {"value": "first"}}}),
    ],
)
def test_each_dimension_reads_the_key_the_record_carries(
    dimension: str, metadata: dict[str, Any]
) -> None:
    assert holds([row(dimension, "IS", "first")], metadata)


def test_a_subscriber_email_compares_as_an_address() -> None:
    caller = {"subscriber": {"email": "  Ann@Example.COM "}}
    assert holds([row("SUBSCRIBER", "IS", "ann@example.com")], caller)
    assert holds([row("SUBSCRIBER", "IN", ["bob@example.com", "ANN@example.com"])], caller)
    assert not holds([row("SUBSCRIBER", "IS_NOT", "ann@example.com ")], caller)
    assert holds([row("SUBSCRIBER", "CONTAINS", "ANN@")], caller)
    assert holds([row("SUBSCRIBER", "ENDS_WITH", "example.com ")], caller)


def test_a_row_that_fails_while_judged_holds() -> None:
    class Exploding(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError(key)

        def __iter__(self) -> Iterator[str]:
            return iter(["agent"])

        def __len__(self) -> int:
            return 1

    assert holds([row("AGENT", "IS", "never")], Exploding())


# -- PROVIDER ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "value", "provider", "expected"),
    [
        ("IS", "OPENAI", "openai", True),
        ("IS", "openai", "OpenAI", True),
        ("IS", "ANTHROPIC", "openai", False),
        ("IS_NOT", "OPENAI", "openai", False),
        ("IS_NOT", "ANTHROPIC", "openai", True),
        ("CONTAINS", "OPEN", "openai", True),
        ("STARTS_WITH", "Open", "openai", True),
        ("ENDS_WITH", "AI", "openai", True),
        ("ENDS_WITH", "xx", "openai", False),
        ("IN", ["anthropic", "OPENAI"], "openai", True),
        ("IN", ["anthropic"], "openai", False),
    ],
)
def test_provider_compares_case_blind(
    operator: str, value: Any, provider: str, expected: bool
) -> None:
    assert holds([row("PROVIDER", operator, value)], model="m", provider=provider) is expected


@pytest.mark.parametrize("label", ["Foundry", "claudecode", "CLAUDECOWORK"])
def test_an_aliased_label_counts_toward_its_alias_target(label: str) -> None:
    assert holds([row("PROVIDER", "IS", "ANTHROPIC")], provider=label)
    assert holds([row("PROVIDER", "IN", ["openai", "anthropic"])], provider=label)
    assert not holds([row("PROVIDER", "IS_NOT", "ANTHROPIC")], provider=label)


def test_alias_buckets_count_one_way_only() -> None:
    assert not holds([row("PROVIDER", "IS", "FOUNDRY")], provider="anthropic")
    assert holds([row("PROVIDER", "IS", "OPENAI")], provider="codexcli")
    assert holds([row("PROVIDER", "IS", "GOOGLE")], provider="geminicli")
    assert not holds([row("PROVIDER", "IS", "GEMINICLI")], provider="google")


@pytest.mark.parametrize("provider", [None, 7])
def test_no_provider_text_cannot_be_judged_and_holds(provider: Any) -> None:
    assert holds([row("PROVIDER", "IS", "OPENAI")], model="gpt-4o", provider=provider)


# -- MODEL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "value", "model", "expected"),
    [
        ("IS", "gpt-4o", "gpt-4o", True),
        ("IS", "gpt-4o", "gpt-4o-mini", False),
        ("IS", "gpt-4o", "GPT-4o", False),
        ("CONTAINS", "4o", "gpt-4o-mini", True),
        ("STARTS_WITH", "claude-", "claude-opus-4", True),
        ("ENDS_WITH", "-mini", "gpt-4o-mini", True),
        ("IN", ["claude-opus-4", "gpt-4o"], "gpt-4o", True),
        ("IN", ["claude-opus-4"], "gpt-4o", False),
    ],
)
def test_model_operators(operator: str, value: Any, model: str, expected: bool) -> None:
    assert holds([row("MODEL", operator, value)], model=model, provider="openai") is expected


@pytest.mark.parametrize(
    ("model", "value"),
    [
        ("gpt-4o", "gpt-4o-2024-08-06"),
        ("claude-3-5-haiku", "claude-3-5-haiku-20241022"),
        ("claude-3-5-haiku@20241022", "claude-3-5-haiku-20241022"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku@20241022"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ],
    ids=["undated-iso", "undated-compact", "vertex-at", "filter-at", "latest"],
)
def test_a_model_is_judged_under_the_names_it_is_metered_as(model: str, value: str) -> None:
    assert holds([row("MODEL", "IS", value)], model=model, provider="anthropic")
    assert holds([row("MODEL", "IN", ["other", value])], model=model, provider="anthropic")


def test_a_dated_request_is_not_metered_under_another_date_or_none() -> None:
    dated = "gpt-4o-2024-08-06"
    assert not holds([row("MODEL", "IS", "gpt-4o")], model=dated, provider="openai")
    assert not holds([row("MODEL", "IS", "gpt-4o-2024-05-13")], model=dated, provider="openai")


def test_is_not_spares_an_undated_request_it_cannot_rule_out() -> None:
    # "gpt-4o" may be metered as gpt-4o-2024-08-06, which the filter does not name.
    assert holds([row("MODEL", "IS_NOT", "gpt-4o")], model="gpt-4o", provider="openai")
    dated = "gpt-4o-2024-08-06"
    assert not holds([row("MODEL", "IS_NOT", dated)], model=dated, provider="openai")
    assert holds([row("MODEL", "IS_NOT", "gpt-4o-2024-05-13")], model=dated, provider="openai")


def test_a_provider_route_is_judged_without_its_prefix() -> None:
    routed = "openai/gpt-4o"
    assert holds([row("MODEL", "IS", "gpt-4o")], model=routed, provider="LITELLM")
    assert holds([row("MODEL", "IS", routed)], model=routed, provider="LITELLM")
    assert holds([row("MODEL", "STARTS_WITH", "openai/")], model=routed, provider="LITELLM")
    assert not holds([row("MODEL", "IS", "gpt-4o-mini")], model=routed, provider="LITELLM")


@pytest.mark.parametrize(
    ("model", "provider"),
    [("my-deployment", "Azure"), ("my-deployment", "azure"), ("azure/prod-4o", "LITELLM")],
)
@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_an_azure_deployment_name_always_matches(model: str, provider: str, operator: str) -> None:
    value: Any = ["gpt-4o"] if operator == "IN" else "gpt-4o"
    assert holds([row("MODEL", operator, value)], model=model, provider=provider)


def test_gemini_latest_aliases_reach_the_versions_they_may_be_served_as() -> None:
    cap = [row("MODEL", "IS", "gemini-2.5-flash")]
    assert holds(cap, model="gemini-flash-latest", provider="Google")
    assert holds(cap, model="gemini/gemini-flash-latest", provider="LITELLM")
    assert not holds(cap, model="gemini-flash-latest", provider="openai")
    assert not holds(
        [row("MODEL", "IS", "gemini-2.5-pro")], model="gemini-flash-latest", provider="Google"
    )


def test_xai_short_names_reach_the_model_they_are_served_as() -> None:
    cap = [row("MODEL", "IS", "grok-4.20-0309-reasoning")]
    assert holds(cap, model="grok-4.20", provider="XAI")
    assert holds(cap, model="xai/grok-4.20", provider="LITELLM")
    assert not holds(cap, model="grok-4.20", provider="openai")


@pytest.mark.parametrize("model", [None, 4, ["gpt-4o"]])
def test_no_model_text_cannot_be_judged_and_holds(model: Any) -> None:
    assert holds([row("MODEL", "IS", "gpt-4o")], model=model, provider="openai")


# -- properties --------------------------------------------------------------------

TEXT = st.text(max_size=12)
ASCII = st.text(string.ascii_letters + "-_./", max_size=12)
#: The flat key each metadata dimension reads plain text from.
FLAT_KEYS = {
    "AGENT": "agent",
    "TASK_TYPE": "task_type",
    "PRODUCT": "product_name",
    "ORGANIZATION": "organization_name",
    "SUBSCRIBER": "subscriber_id",
}


@given(st.sampled_from(sorted(FLAT_KEYS)), TEXT, TEXT)
def test_is_not_is_the_negation_of_is_for_given_text(
    dimension: str, actual: str, value: str
) -> None:
    metadata = {FLAT_KEYS[dimension]: actual}
    assert holds([row(dimension, "IS", value)], metadata) != holds(
        [row(dimension, "IS_NOT", value)], metadata
    )


@given(st.sampled_from(sorted(FLAT_KEYS)), TEXT, st.lists(TEXT, min_size=1, max_size=4))
def test_in_is_any_of_is(dimension: str, actual: str, values: list[str]) -> None:
    metadata = {FLAT_KEYS[dimension]: actual}
    assert holds([row(dimension, "IN", values)], metadata) == any(
        holds([row(dimension, "IS", value)], metadata) for value in values
    )


@given(ASCII, st.sampled_from(sorted(OPERATORS - {"IN"})), ASCII)
def test_provider_ignores_case_on_both_sides(provider: str, operator: str, value: str) -> None:
    verdict = holds([row("PROVIDER", operator, value)], provider=provider)
    assert holds([row("PROVIDER", operator, value.swapcase())], provider=provider) is verdict
    assert holds([row("PROVIDER", operator, value)], provider=provider.swapcase()) is verdict


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
ROWS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "dimension": st.sampled_from(sorted(DIMENSIONS)) | JSON,
            "operator": st.sampled_from(sorted(OPERATORS)) | JSON,
            "value": TEXT | JSON,
            "values": st.lists(TEXT | JSON, max_size=3) | JSON,
        },
    )
    | JSON,
    max_size=4,
)
METADATA = st.dictionaries(
    st.sampled_from(["agent", "subscriber", "subscriber_email", "task_type", "productId"]), JSON
)


@given(ROWS, METADATA, JSON, st.sampled_from(["openai", "Azure", "claudecode", None]))
def test_a_rule_covers_a_call_when_each_of_its_rows_does(
    rows: list[Any], metadata: dict[str, Any], model: Any, provider: Any
) -> None:
    verdict = holds(rows, metadata, model, provider)
    assert verdict is all(holds([entry], metadata, model, provider) for entry in rows)
