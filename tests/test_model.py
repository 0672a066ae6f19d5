"""Model-based test: the compiled matcher agrees with a plain reading of CONTRACT §3.

The engine compiles a rule set once (tripped rules indexed, filters parsed and
split by what they read, per-person breakdowns keyed, verdicts cached per
model and provider) and judges each call against that. ``expected_verdict``
below is the same verdict written as the contract states it, a loop over the
raw rules with nothing precomputed. Hypothesis draws rule sets and callers and
the two must give the same verdict: pass, or the same rule, message and
balance.

The generated filters stay inside a subset whose meaning is not in doubt:
ORGANIZATION, PRODUCT, AGENT and TASK_TYPE rows with plain values, compared
exactly as given (case matters), a call that carries no value being outside
every row but IS_NOT; MODEL IS on undated names without a route (case
matters); PROVIDER IS (case ignored); and rows that cannot be judged
(malformed, unknown dimension or operator, no usable value), which hold. The
finer points of model and provider matching (snapshot dates, routes, Azure,
alias buckets) are the differential test's job, in ``tests/compat``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Callable, Optional

from hypothesis import example, given, settings
from hypothesis import strategies as st

from enforcement import BudgetExceededError, Engine

Verdict = tuple[Any, ...]  # ("pass",) or ("block", rule_id, message, current_value)

# -- the plain evaluator ----------------------------------------------------

PREFIX = "Request blocked by Revenium enforcement rule: "
DEPARTMENT_FALLBACK = "Department budget"
# windowEnd -> whether that window has ended (judged today, far from either bound).
WINDOW_ENDS: dict[Any, bool] = {
    None: False,
    "2000-01-01T00:00:00Z": True,
    "2000-01-31T23:59:59.999999999Z": True,
    "2000-01-01T00:00:00+02:00": True,
    "2000-01-01T00:00:00Z[UTC]": True,
    "2099-12-31T23:59:59.999999999Z": False,
    "2099-01-01T00:00:00-05:00": False,
    "2099-01-01T00:00:00": False,
    "not a date": False,
    946684800: True,  # 2000-01-01 as epoch seconds: ended (CONTRACT §7)
    4102444800.5: False,
}
# Where each metadata dimension is read from, first value that is not None.
METADATA_KEYS = {
    "ORGANIZATION": ("organization_name", "organizationName", "organization_id", "organizationId"),
    "PRODUCT": ("product_name", "productName", "product_id", "productId"),
    "AGENT": ("agent",),
    "TASK_TYPE": ("task_type", "taskType"),
}
COMPARE: dict[str, Callable[[str, list[str]], bool]] = {
    "IS": lambda actual, values: actual == values[0],
    "IS_NOT": lambda actual, values: actual != values[0],
    "CONTAINS": lambda actual, values: values[0] in actual,
    "STARTS_WITH": lambda actual, values: actual.startswith(values[0]),
    "ENDS_WITH": lambda actual, values: actual.endswith(values[0]),
    "IN": lambda actual, values: actual in values,
}


def number(value: Any) -> Optional[float]:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def first_set(metadata: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((metadata[k] for k in keys if metadata.get(k) is not None), None)


def row_holds(row: Any, metadata: dict[str, Any], model: Any, provider: Any) -> bool:
    """One filter row; a row that cannot be judged holds."""
    if not isinstance(row, dict) or row.get("operator") not in COMPARE:
        return True
    operator: str = row["operator"]
    dimension = row.get("dimension")
    raw = row.get("values") if operator == "IN" else [row.get("value")]
    values = [v for v in raw if isinstance(v, str)] if isinstance(raw, list) else []
    if not values:
        return True
    if dimension == "MODEL":  # IS only, on plain names
        return not isinstance(model, str) or model == values[0]
    if dimension == "PROVIDER":  # IS only, case ignored
        return not isinstance(provider, str) or provider.lower() == values[0].lower()
    if dimension not in METADATA_KEYS:
        return True
    actual = first_set(metadata, METADATA_KEYS[dimension])
    if actual is None:
        return operator == "IS_NOT"
    return not isinstance(actual, str) or COMPARE[operator](actual, values)


def subscriber(metadata: dict[str, Any]) -> dict[str, Any]:
    """The nested subscriber's id and email when it names either, else the flat keys."""
    nested = metadata.get("subscriber")
    found = {k: nested[k] for k in ("id", "email") if isinstance(nested, dict) and nested.get(k)}
    if not found:
        flat = {"id": metadata.get("subscriber_id"), "email": metadata.get("subscriber_email")}
        found = {k: v for k, v in flat.items() if v}
    return found


def caller_keys(metadata: dict[str, Any]) -> Iterator[str]:
    """The caller's groupValue keys: one id (nested, else flat), then each email
    normalized and as given (nested, then flat)."""
    who = subscriber(metadata)
    for raw in (who.get("id"), metadata.get("subscriber_id")):
        if (isinstance(raw, str) and raw) or (type(raw) is int and raw != 0):
            yield str(raw)
            break
    for email in (who.get("email"), metadata.get("subscriber_email")):
        if isinstance(email, str) and email:
            yield from [email.strip().lower()] if email.strip() else []
            yield email


def caller_email(metadata: dict[str, Any]) -> Optional[str]:
    email = subscriber(metadata).get("email") or metadata.get("subscriber_email")
    return (email.strip().lower() or None) if isinstance(email, str) else None


def is_department(rule: dict[str, Any]) -> bool:
    group_by = rule.get("groupBy")
    return (
        rule.get("departmentId") is not None
        or rule.get("orgUnitId") is not None
        or (isinstance(group_by, str) and group_by.strip().upper() in ("DEPARTMENT", "ORG_UNIT"))
    )


def blocks(rule: dict[str, Any]) -> bool:
    action = rule.get("action")
    return action is None or (isinstance(action, str) and action.strip().upper() == "BLOCK")


def refusal(rule: dict[str, Any], name: Any, rule_id: Any, current: Any) -> Verdict:
    deny = rule.get("denyMessage")
    deny = deny.strip() if isinstance(deny, str) else ""
    return ("block", rule_id, f"{PREFIX}{name}" + (f". {deny}" if deny else ""), current)


def department_verdict(
    rules: list[Any], blocks_map: Any, metadata: dict[str, Any]
) -> Optional[Verdict]:
    """CONTRACT §3 step 5, for the block map alone (keys normalized, first wins)."""
    by_email: dict[str, Any] = {}
    for key, value in (blocks_map or {}).items():
        by_email.setdefault(key.strip().lower(), value)
    email = caller_email(metadata)
    rule_id = by_email.get(email) if email else None
    if not isinstance(rule_id, int) or isinstance(rule_id, bool):
        return None
    named = [r for r in rules if str(r.get("ruleId", r.get("id"))) == str(rule_id)]
    if not named:
        return ("block", rule_id, f"{PREFIX}{DEPARTMENT_FALLBACK}", None)
    rule = named[0]
    if WINDOW_ENDS[rule.get("windowEnd")] or rule.get("shadowMode") or not blocks(rule):
        return None
    rule_id = rule.get("ruleId") or rule.get("id") or rule_id
    name = rule.get("name") or DEPARTMENT_FALLBACK
    return refusal(rule, name, rule_id, number(rule.get("currentValue")))


def expected_verdict(
    payload: dict[str, Any], metadata: dict[str, Any], model: Any, provider: Any
) -> Verdict:
    """CONTRACT §3 steps 5 to 7, as written."""
    rules = payload["rules"]
    department = department_verdict(rules, payload.get("departmentBudgetBlocks"), metadata)
    if department is not None:
        return department
    for rule in rules:
        if is_department(rule) or rule.get("shadowMode", False):
            continue
        if rule.get("credential") and rule["credential"] != metadata.get(
            "subscriber_credential", ""
        ):
            continue
        if not all(row_holds(row, metadata, model, provider) for row in rule.get("filters") or []):
            continue
        if WINDOW_ENDS[rule.get("windowEnd")]:
            continue
        breakdown = rule.get("groupBreakdown")
        if isinstance(breakdown, list) and (breakdown or (rule.get("groupBy") or "").strip()):
            entries = [
                e for key in caller_keys(metadata) for e in breakdown if e["groupValue"] == key
            ]
            if not entries or not entries[0]["breached"]:
                continue
            current = number(entries[0].get("currentValue"))
        elif rule.get("breached") or rule.get("blocked"):
            current = number(rule.get("currentValue"))
        else:
            continue
        if blocks(rule):
            return refusal(
                rule, rule.get("name", "cost limit"), rule.get("ruleId") or rule.get("id"), current
            )
    return ("pass",)


# -- what Hypothesis draws ----------------------------------------------------

WORDS = st.text(alphabet="ab", min_size=1, max_size=2)  # small, so rows often match
CALL_WORDS = st.one_of(st.text(alphabet="abA", max_size=3), st.just(None), st.just(7))
MODELS = ["m-alpha", "m-beta", "M-Alpha"]
PROVIDERS = ["openai", "acme", "OpenAI"]
IDS = ["u-1", "U-1", "u-2", "0"]
EMAILS = ["ann@x.io", " Ann@X.io ", "bob@x.io", "BOB@x.io", "   "]
CREDENTIALS = ["", "cred-a", "cred-b"]


def metadata_row(dimension: str) -> st.SearchStrategy[dict[str, Any]]:
    scalar = st.sampled_from(["IS", "IS_NOT", "CONTAINS", "STARTS_WITH", "ENDS_WITH"])
    return st.one_of(
        st.fixed_dictionaries(
            {"dimension": st.just(dimension), "operator": scalar, "value": WORDS}
        ),
        st.fixed_dictionaries(
            {
                "dimension": st.just(dimension),
                "operator": st.just("IN"),
                "values": st.lists(WORDS, min_size=1, max_size=3),
            }
        ),
    )


def is_row(dimension: str, values: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "dimension": st.just(dimension),
            "operator": st.just("IS"),
            "value": st.sampled_from(values),
        }
    )


UNJUDGED_ROWS = st.sampled_from(
    [
        {"dimension": "COLOR", "operator": "IS", "value": "a"},
        {"dimension": "AGENT", "operator": "LIKE", "value": "a"},
        {"dimension": "AGENT", "operator": "IS", "value": 5},
        {"dimension": "AGENT", "operator": "IN", "value": "a"},  # IN reads values
        {"dimension": "PRODUCT", "operator": "IN", "values": [1, None]},
        {"dimension": None, "operator": "IS"},
        "not a row",
    ]
)
ROWS = st.one_of(
    *(metadata_row(d) for d in METADATA_KEYS),
    is_row("MODEL", MODELS),
    is_row("PROVIDER", PROVIDERS),
    UNJUDGED_ROWS,
)
GROUP_ENTRIES = st.fixed_dictionaries(
    {
        "groupValue": st.sampled_from([*IDS, *EMAILS, "ann@x.io", "7"]),
        "breached": st.booleans(),
        "currentValue": st.sampled_from([3.5, "8", None]),
    }
)
ABSENT = st.just(None)  # a field drawn as None is left out of the rule


NAMES = st.one_of(ABSENT, st.sampled_from(["cap", "Über cap", ""]))
ACTIONS = st.one_of(
    ABSENT, st.sampled_from(["BLOCK", " block ", "WARN_ONLY", "THROTTLE", "NOTIFY", "x"])
)
FLAGS = st.one_of(ABSENT, st.booleans())
DENY_MESSAGES = st.one_of(ABSENT, st.sampled_from(["Ask finance.", "  ", " Raise it. ", 5]))
RULE_CREDENTIALS = st.one_of(ABSENT, st.sampled_from(CREDENTIALS))
WINDOWS = st.sampled_from(list(WINDOW_ENDS))
CURRENT_VALUES = st.sampled_from([0, 12.5, "42.5", "1e2", None, "n/a"])
FILTERS = st.one_of(ABSENT, st.lists(ROWS, max_size=3))
TRIPS = st.sampled_from(["breached", "blocked", "neither", "both"])
SHAPES = st.sampled_from(["pooled", "grouped", "grouped-unnamed", "grouped-empty", "department"])
BREAKDOWNS = st.lists(GROUP_ENTRIES, max_size=4)
DEPARTMENT_MARKS = st.sampled_from(
    [("departmentId", 3), ("orgUnitId", 4), ("groupBy", "DEPARTMENT"), ("groupBy", " org_unit ")]
)


@st.composite
def rules(draw: st.DrawFn, rule_id: int) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ruleId" if draw(st.integers(0, 9)) else "id": rule_id,
        "name": draw(NAMES),
        "action": draw(ACTIONS),
        "shadowMode": draw(FLAGS),
        "denyMessage": draw(DENY_MESSAGES),
        "credential": draw(RULE_CREDENTIALS),
        "windowEnd": draw(WINDOWS),
        "threshold": 10,
        "filters": draw(FILTERS),
    }
    trip = draw(TRIPS)
    if trip in ("breached", "both"):
        fields["breached"] = True
    if trip in ("blocked", "both"):
        fields["blocked"] = True
    shape = draw(SHAPES)
    if shape == "grouped":
        fields["groupBy"] = "SUBSCRIBER"
        fields["groupBreakdown"] = draw(BREAKDOWNS)
    elif shape == "grouped-unnamed":  # a non-empty breakdown decides even with no groupBy
        fields["groupBreakdown"] = draw(BREAKDOWNS.filter(bool))
    elif shape == "grouped-empty":  # pooled when groupBy is null, nobody when it is named
        fields["groupBy"] = draw(st.sampled_from([None, "SUBSCRIBER"]))
        fields["groupBreakdown"] = []
    elif shape == "department":
        key, value = draw(DEPARTMENT_MARKS)
        fields[key] = value
    present = {key: value for key, value in fields.items() if value is not None}
    present["currentValue"] = draw(CURRENT_VALUES)  # null is a value here
    return present


BLOCK_MAP_VALUES = st.sampled_from(["1", True])


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(0, 6))
    payload: dict[str, Any] = {"rules": [draw(rules(i + 1)) for i in range(count)]}
    if draw(st.booleans()):
        rule_ids = st.one_of(st.integers(1, count + 2), BLOCK_MAP_VALUES)
        payload["departmentBudgetBlocks"] = draw(
            st.dictionaries(st.sampled_from(EMAILS), rule_ids, max_size=3)
        )
    return payload


NESTED_IDS = st.sampled_from([*IDS, *EMAILS, "", None, 7, 0])
FLAT_IDS = st.sampled_from([*IDS, *EMAILS, "", None, 7])
CALL_EMAILS = st.sampled_from([*EMAILS, "", None])
SPELLINGS = {
    dimension: st.lists(st.sampled_from(keys), max_size=2, unique=True)
    for dimension, keys in METADATA_KEYS.items()
}
CALL_MODELS = st.sampled_from([*MODELS, None])
CALL_PROVIDERS = st.sampled_from([*PROVIDERS, None])


@st.composite
def callers(draw: st.DrawFn) -> tuple[dict[str, Any], Any, Any]:
    metadata: dict[str, Any] = {}
    for spellings in SPELLINGS.values():
        for key in draw(spellings):
            metadata[key] = draw(CALL_WORDS)
    if draw(st.booleans()):
        metadata["subscriber"] = {"id": draw(NESTED_IDS), "email": draw(CALL_EMAILS)}
    if draw(st.booleans()):
        metadata["subscriber_id"] = draw(FLAT_IDS)
    if draw(st.booleans()):
        metadata["subscriber_email"] = draw(st.sampled_from(EMAILS))
    if draw(st.booleans()):
        metadata["subscriber_credential"] = draw(st.sampled_from(CREDENTIALS))
    return metadata, draw(CALL_MODELS), draw(CALL_PROVIDERS)


def actual_verdict(engine: Engine, metadata: dict[str, Any], model: Any, provider: Any) -> Verdict:
    try:
        engine.check(metadata, model=model, provider=provider)
    except BudgetExceededError as error:
        return ("block", error.rule_id, str(error), error.current_value)
    return ("pass",)


def same(expected: Verdict, actual: Verdict) -> bool:
    if expected[:3] != actual[:3]:
        return False
    if expected[0] == "pass":
        return True
    a, b = expected[3], actual[3]
    return a == b or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    )


# -- the property -------------------------------------------------------------

ENVIRON = {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"}


def scaled(examples: int) -> int:
    """``examples`` under the "ci" profile, a hundred times as many under "soak"."""
    return max(1, examples * settings().max_examples // 100)


@settings(max_examples=scaled(200))
@given(payloads(), st.lists(callers(), min_size=1, max_size=5))
@example(  # a grouped rule judges the caller's id before their email
    {
        "rules": [
            {
                "ruleId": 1,
                "name": "per-person",
                "breached": True,
                "groupBy": "SUBSCRIBER",
                "groupBreakdown": [
                    {"groupValue": "ann@x.io", "breached": True, "currentValue": 9},
                    {"groupValue": "u-1", "breached": False, "currentValue": 1},
                ],
            }
        ]
    },
    [
        ({"subscriber": {"id": "u-1", "email": "Ann@X.io"}}, None, None),
        ({"subscriber_email": " ANN@x.io"}, None, None),
    ],
)
@example(  # a department block naming a rule the payload does not carry blocks, unnamed
    {"rules": [{"ruleId": 1, "departmentId": 3}], "departmentBudgetBlocks": {" Ann@X.io ": 9}},
    [({"subscriber": {"email": "ann@x.io"}, "subscriber_email": "bob@x.io"}, None, None)],
)
def test_the_compiled_matcher_agrees_with_the_plain_evaluator(
    payload: dict[str, Any], calls: list[tuple[dict[str, Any], Any, Any]]
) -> None:
    engine = Engine(environ=ENVIRON)
    try:
        engine.load_payload(payload)
        for metadata, model, provider in calls:  # one rule set, several callers: its caches too
            expected = expected_verdict(payload, metadata, model, provider)
            actual = actual_verdict(engine, metadata, model, provider)
            assert same(expected, actual), (expected, actual, metadata, model, provider)
    finally:
        engine.close()


_KEY_TEXTS = st.sampled_from(
    ["u-1", "U-1", "a@x.io", " A@X.io ", "no-at", "7", "", "b@x.io", "x" * 256 + "@late"]
)
_KEY_VALUES = st.one_of(_KEY_TEXTS, st.integers(-1, 8), st.none(), st.booleans())
_IDENTITIES = st.fixed_dictionaries(
    {},
    optional={
        "subscriber": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "id": _KEY_VALUES,
                    "email": _KEY_VALUES,
                    "credential": st.sampled_from([None, {}, {"name": "k"}, "k"]),
                },
            ),
        ),
        "subscriber_id": _KEY_VALUES,
        "subscriber_email": _KEY_VALUES,
    },
)


@given(_IDENTITIES, st.frozensets(_KEY_TEXTS.map(lambda k: k.strip().lower() if k else k)))
@settings(max_examples=400, deadline=None)
def test_the_shortcut_over_breached_keys_agrees_with_the_caller_keys(
    metadata: dict[str, Any], breached: frozenset[str]
) -> None:
    """``holds_any_key`` (no key list built, addresses skipped when no key has an ``@``)."""
    from enforcement._callfacts import CallFacts

    keys = stored_keys(metadata)
    assert list(CallFacts(metadata, None, None).group_keys()) == keys
    expected = any(key in breached for key in keys)
    emails = any("@" in key for key in breached)
    assert CallFacts(metadata, None, None).holds_any_key(breached, emails) is expected
    assert CallFacts(metadata, None, None).holds_any_key(breached, True) is expected


def stored_keys(metadata: dict[str, Any]) -> list[str]:
    """:func:`caller_keys` from the record's subscriber, each value cut to 255 characters."""
    from enforcement._callfacts import extract_subscriber

    who = extract_subscriber(metadata)
    keys: list[str] = []
    for raw in (who.get("id"), metadata.get("subscriber_id")):
        raw = raw[:255] if isinstance(raw, str) else raw
        if (isinstance(raw, str) and raw) or (type(raw) is int and raw != 0):
            keys.append(str(raw))
            break
    for email in (who.get("email"), metadata.get("subscriber_email")):
        email = email[:255] if isinstance(email, str) else email
        if isinstance(email, str) and email:
            keys.extend([email.strip().lower(), email] if email.strip() else [email])
    return keys


@settings(max_examples=scaled(200))
@given(payloads(), st.lists(callers(), min_size=1, max_size=5))
def test_a_caller_the_gate_lets_through_has_no_verdict_and_no_notice(
    payload: dict[str, Any], calls: list[tuple[dict[str, Any], Any, Any]]
) -> None:
    # RuleSet.may_concern answers from the raw metadata before any CallFacts is built.
    from enforcement._callfacts import CallFacts
    from enforcement._ruleset import RuleSet
    from enforcement._wire import parse_payload

    ruleset = RuleSet(parse_payload(payload), 1)
    for metadata, model, provider in calls:
        if ruleset.quiet or ruleset.may_concern(metadata, model, provider):
            continue
        assert ruleset.evaluate(CallFacts(metadata, model, provider), 0.0) is None
        assert expected_verdict(payload, metadata, model, provider) == ("pass",)


def test_an_address_whose_at_sign_is_past_the_stored_length_is_still_probed() -> None:
    from enforcement._callfacts import CallFacts

    stored = "x" * 255  # what the server keeps of a 260-character address: no "@" left
    for metadata in (
        {"subscriber": {"email": stored + "@late"}},
        {"subscriber_email": stored + "@a"},
    ):
        assert CallFacts(metadata, None, None).holds_any_key(frozenset({stored}), False)
