"""Property tests of the loaders and the matcher (issue 10).

Whatever arrives (a payload through ``load_payload`` or the feed, snapshot
files on disk, a call's ``usage_metadata``, ``model`` and ``provider``, the
environment), a check returns ``None`` or raises ``BudgetExceededError`` and
nothing else, loading never raises (beyond ``load_payload``'s documented
``ValueError`` for a body that is not a payload), and a good payload that
follows a bad one is installed.

Each example builds its own engine and closes it. The "ci" profile keeps each
property to a few seconds; ``HYPOTHESIS_PROFILE=soak`` runs a hundred times as
many examples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Optional

import pytest
from _support import CONTRACT_ENVIRONMENT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import enforcement
from enforcement import BudgetExceededError, Engine, RetryPolicy, Settings
from enforcement._mirror import Mirror
from enforcement._settings import MAX_POLL_INTERVAL
from enforcement.testing import Fault, RulesServer, make_rule

FUTURE = "2099-01-01T00:00:00Z"
FAST = RetryPolicy(first_backoff=0.01, jitter=0.0, retry_after_budget=1.0)
ENABLED = {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true"}
BASE_URL, TEAM_ID = "http://127.0.0.1:9", "team-props"  # a snapshot's scope; nothing listens
GOOD_ID = 4242
GOOD = make_rule(GOOD_ID, "good-cap", breached=True, window_end=FUTURE)


def scaled(examples: int) -> int:
    """``examples`` under the "ci" profile, a hundred times as many under "soak"."""
    return max(1, examples * settings().max_examples // 100)


# -- what Hypothesis draws: JSON ----------------------------------------------

HUGE_INTS = st.sampled_from([10**400, -(10**400), 2**63, 2**64 + 1, 10**20, -1, 0])
NUMERIC_STRINGS = st.sampled_from([
    "1e400", "-1e400", "NaN", "nan", "Infinity", "-Infinity", "1_000", " 12 ", "0x10",
    "١٢", "1e-400", "12.50", "", " ", "1" * 400, "-0",
])  # fmt: skip
ODD_EMAILS = st.sampled_from([
    " Ann@X.io ", "ann@x.io", "ANN@X.IO", "İ@x.io", "ß@x.io", "\u212a@x.io", "😀@x.io",
    "a" * 300 + "@x.io", "\x00@x.io", "\ud800@x.io", "", "   ", "@", "bob@x.io",
])  # fmt: skip
WIRE_WORDS = st.sampled_from([
    "BLOCK", "block", "WARN_ONLY", "THROTTLE", "NOTIFY", "SUBSCRIBER", "DEPARTMENT", "ORG_UNIT",
    "MODEL", "PROVIDER", "ORGANIZATION", "PRODUCT", "AGENT", "TASK_TYPE", "CREDENTIAL",
    "IS", "IS_NOT", "IN", "CONTAINS", "STARTS_WITH", "ENDS_WITH", "WARN", "gpt-4o", "openai",
    FUTURE, "2000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999+14:00",
    "0001-01-01T00:00:00-14:00", "2024-02-30T00:00:00Z", "2099-01-01T00:00:00Z[Europe/Paris]",
])  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    NUMERIC_STRINGS,
    ODD_EMAILS,
    WIRE_WORDS,
)
RULE_KEYS = [
    "ruleId", "id", "name", "breached", "blocked", "shadowMode", "action", "denyMessage",
    "credential", "windowEnd", "resetsAt", "threshold", "currentValue", "groupBy",
    "groupBreakdown", "departmentId", "orgUnitId", "filters", "groupValue", "dimension",
    "operator", "value", "values", "tier", "balance", "rules",
]  # fmt: skip
KEYS = st.one_of(st.sampled_from(RULE_KEYS), st.text(max_size=6), ODD_EMAILS)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = {"ruleId": 1, "breached": True}
    for _ in range(depth):
        value = [value]
    return value


DEEP = st.integers(25, 60).map(nested)  # about MAX_DEPTH (32), both sides


def poisoned(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a value of the right shape, sometimes any JSON at all."""
    return st.one_of(plausible, plausible, plausible, JSON)


ROW = st.fixed_dictionaries(
    {},
    optional={
        "dimension": poisoned(WIRE_WORDS),
        "operator": poisoned(WIRE_WORDS),
        "value": poisoned(st.one_of(WIRE_WORDS, st.text(max_size=4), ODD_EMAILS)),
        "values": poisoned(st.lists(st.one_of(WIRE_WORDS, ODD_EMAILS), max_size=3)),
    },
)
GROUP_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "groupValue": poisoned(st.one_of(ODD_EMAILS, st.sampled_from(["u-1", "7", ""]))),
        "breached": poisoned(st.booleans()),
        "currentValue": poisoned(st.one_of(HUGE_INTS, NUMERIC_STRINGS, st.floats())),
    },
)
NUMBERS = st.one_of(HUGE_INTS, NUMERIC_STRINGS, st.floats(), st.integers(0, 100))
RULE = st.fixed_dictionaries(
    {},
    optional={
        "ruleId": poisoned(st.one_of(st.integers(0, 5), st.sampled_from(["1", "x", True]))),
        "id": poisoned(st.integers(0, 5)),
        "name": poisoned(st.text(max_size=8)),
        "breached": poisoned(st.booleans()),
        "blocked": poisoned(st.booleans()),
        "shadowMode": poisoned(st.booleans()),
        "action": poisoned(WIRE_WORDS),
        "denyMessage": poisoned(st.text(max_size=8)),
        "credential": poisoned(st.sampled_from(["", "cred-a"])),
        "windowEnd": poisoned(st.one_of(WIRE_WORDS, HUGE_INTS, st.floats())),
        "resetsAt": JSON,
        "threshold": poisoned(NUMBERS),
        "currentValue": poisoned(NUMBERS),
        "groupBy": poisoned(st.sampled_from(["SUBSCRIBER", "DEPARTMENT", " org_unit ", " ", None])),
        "groupBreakdown": poisoned(st.lists(GROUP_ENTRY, max_size=4)),
        "departmentId": poisoned(st.integers(0, 5)),
        "orgUnitId": poisoned(st.integers(0, 5)),
        "filters": poisoned(st.lists(ROW, max_size=4)),
    },
)
RULES = st.lists(poisoned(RULE), max_size=6)
EMAIL_MAP_KEYS = st.one_of(ODD_EMAILS, st.text(max_size=4))
CANDIDATE = st.fixed_dictionaries(
    {},
    optional={
        "ruleId": poisoned(st.integers(0, 5)),
        "tier": poisoned(st.sampled_from(["BLOCK", "WARN", " warn ", "x"])),
        "departmentId": poisoned(st.integers(0, 5)),
        "balance": poisoned(NUMBERS),
    },
)
BLOCK_MAP = poisoned(st.dictionaries(EMAIL_MAP_KEYS, poisoned(st.integers(0, 5)), max_size=4))
BALANCE_MAP = poisoned(st.dictionaries(EMAIL_MAP_KEYS, poisoned(NUMBERS), max_size=4))
CANDIDATE_MAP = poisoned(
    st.dictionaries(EMAIL_MAP_KEYS, poisoned(st.lists(CANDIDATE, max_size=3)), max_size=4)
)
MAPS = {
    "departmentBudgetBlocks": BLOCK_MAP,
    "departmentBudgetBlockBalances": BALANCE_MAP,
    "departmentBudgetWarnings": BLOCK_MAP,
    "departmentBudgetCandidates": CANDIDATE_MAP,
    "orgUnitBudgetBlocks": BLOCK_MAP,
    "orgUnitBudgetBlockBalances": BALANCE_MAP,
    "orgUnitBudgetWarnings": BLOCK_MAP,
    "compiledAt": poisoned(NUMBERS),
}
WIDE = st.integers(100, 1000).map(
    lambda n: {"rules": [make_rule(i, f"r{i}", breached=i % 97 == 0) for i in range(n)]}
)
PAYLOADS = st.one_of(
    RULES,
    st.fixed_dictionaries({"rules": poisoned(RULES)}, optional=MAPS),
    JSON,
    DEEP,
    st.fixed_dictionaries({"rules": DEEP.map(lambda deep: [deep])}),
    WIDE,
)

# -- what Hypothesis draws: calls ----------------------------------------------


class Exploding(Mapping[str, Any]):
    """A mapping every read of which raises."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("no reading me")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no iterating me")

    def __len__(self) -> int:
        return 1


class Opaque:
    """A value that compares as nothing and refuses to be hashed or printed plainly."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing me")

    def __repr__(self) -> str:
        return "Opaque()"


LEAVES = st.one_of(
    SCALARS,
    st.binary(max_size=6),
    st.sets(st.integers(), max_size=3),
    st.builds(object),
    st.builds(Opaque),
    st.complex_numbers(),
)
METADATA_KEYS = [
    "subscriber", "subscriber_id", "subscriber_email", "subscriber_credential",
    "subscriber_credential_name", "organization_name", "organizationName", "organization_id",
    "organizationId", "product_name", "productName", "product_id", "productId", "agent",
    "task_type", "taskType", "credentialAlias", "credential_alias", "id", "email", "credential",
    "name", "value",
]  # fmt: skip
ANY_KEYS = st.one_of(
    st.sampled_from(METADATA_KEYS),
    st.text(max_size=4),
    st.integers(),
    st.none(),
    st.tuples(st.integers()),
    st.frozensets(st.integers(), max_size=2),
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(ANY_KEYS, children, max_size=4),
        st.dictionaries(st.sampled_from(METADATA_KEYS), children, max_size=4).map(MappingProxyType),
    ),
    max_leaves=8,
)
SUBSCRIBERS = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.sampled_from(["u-1", "7", 7, 0, ""]), VALUES),
        "email": st.one_of(ODD_EMAILS, VALUES),
        "credential": st.one_of(
            st.fixed_dictionaries({}, optional={"name": VALUES, "value": VALUES}), VALUES
        ),
    },
)
METADATA = st.one_of(
    st.none(),
    VALUES,
    st.builds(Exploding),
    st.dictionaries(ANY_KEYS, VALUES, max_size=5),
    st.fixed_dictionaries(
        {},
        optional={
            "subscriber": st.one_of(SUBSCRIBERS, VALUES),
            "subscriber_email": st.one_of(ODD_EMAILS, VALUES),
            "subscriber_id": st.one_of(st.sampled_from(["u-1", "7", 7]), VALUES),
            "subscriber_credential": st.one_of(st.sampled_from(["cred-a", ""]), VALUES),
            "organizationName": st.one_of(st.sampled_from(["acme", "Acme"]), VALUES),
            "product_id": VALUES,
            "agent": st.one_of(st.sampled_from(["bot", "BOT"]), VALUES),
            "taskType": VALUES,
            "credentialAlias": VALUES,
        },
    ),
)
MODELS = st.one_of(
    st.none(),
    st.sampled_from(["gpt-4o", "GPT-4o", "azure/x", "claude-haiku-4-5@20251001", "grok-4.20"]),
    st.sampled_from(["gemini-flash-latest", "openai/gpt-4o-2024-08-06", ""]),
    VALUES,
)
PROVIDERS = st.one_of(
    st.none(), st.sampled_from(["openai", "OpenAI", "azure", "FOUNDRY", "litellm", ""]), VALUES
)
CALLS = st.lists(st.tuples(METADATA, MODELS, PROVIDERS), min_size=1, max_size=4)

# Breached rules that read every dimension and only warn, so a call walks them
# all; department maps listing the odd emails; then one rule that blocks.
METADATA_DIMENSIONS = ("ORGANIZATION", "PRODUCT", "AGENT", "TASK_TYPE")
ROWS_ON_EVERY_DIMENSION = [
    {"dimension": dimension, "operator": operator, "value": "a", "values": ["acme", "a"]}
    for dimension in (*METADATA_DIMENSIONS, "MODEL", "PROVIDER", "SUBSCRIBER", "CREDENTIAL")
    for operator in ("IS_NOT", "CONTAINS", "IN")
]
EVERY_EMAIL = [" Ann@X.io ", "İ@x.io", "ß@x.io", "a" * 255, "\x00@x.io", "\ud800@x.io", "bob@x.io"]
READS_EVERYTHING: dict[str, Any] = {
    "rules": [
        make_rule(1, "all-rows", breached=True, action="WARN_ONLY", window_end=FUTURE)
        | {"filters": [row] * 2}
        for row in ROWS_ON_EVERY_DIMENSION
    ]
    + [
        make_rule(
            2,
            "per-person",
            breached=True,
            action="WARN_ONLY",
            group_by="SUBSCRIBER",
            window_end=FUTURE,
            group_breakdown=[
                {"groupValue": key, "breached": True, "currentValue": 1}
                for key in [*EVERY_EMAIL, "u-1", "7"]
            ],
        ),
        make_rule(3, "shadow", breached=True, shadow_mode=True, window_end=FUTURE),
        make_rule(4, "dept", departmentId=1, threshold=10, window_end=FUTURE, action="WARN_ONLY"),
        make_rule(5, "legacy", breached=True, credential="cred-a", window_end=FUTURE),
        make_rule(6, "last", breached=True, window_end=FUTURE)
        | {"filters": [{"dimension": "AGENT", "operator": "IS", "value": "bot"}]},
    ],
    "departmentBudgetWarnings": {email: 4 for email in EVERY_EMAIL[:3]},
    "departmentBudgetBlocks": {email: 4 for email in EVERY_EMAIL[3:5]},
    "departmentBudgetBlockBalances": {email: "2.5" for email in EVERY_EMAIL},
    "departmentBudgetCandidates": {
        email: [{"ruleId": 4, "tier": "WARN", "departmentId": 1, "balance": 3}]
        for email in EVERY_EMAIL[5:]
    },
}


# -- checking --------------------------------------------------------------------


def verdict(engine: Engine, metadata: Any = None, model: Any = None, provider: Any = None) -> Any:
    """The rule id that refused the call, or None; any other exception fails the test."""
    try:
        engine.check(metadata, model=model, provider=provider)
    except BudgetExceededError as error:
        return error.rule_id if error.rule_id is not None else "unnamed"
    return None


def well_behaved(value: Any) -> bool:
    """No value inside raises when read or compared (the caller's own bug, not ours)."""
    if isinstance(value, (Exploding, Opaque)):
        return False
    if isinstance(value, Mapping):
        return all(well_behaved(k) and well_behaved(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(well_behaved(item) for item in value)
    return True


# What the library logs when its last-resort ``except Exception`` caught something:
# a bug of ours, even though nobody saw an exception.
INTERNAL_FAILURES = (
    "Enforcement check failed unexpectedly",
    "Could not load the enforcement rules snapshot",
    "Could not compile the rules payload",
    "Enforcement rules refresh failed unexpectedly",
    "Unreadable rules snapshot in",
    "Could not write the rules snapshot",
)


class InternalFailures(logging.Handler):
    """Collects the ``enforcement`` log lines that say a last-resort handler caught a bug."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(INTERNAL_FAILURES):
            self.seen.append(f"{message}: {record.exc_info[1] if record.exc_info else ''!r}")

    def __enter__(self) -> InternalFailures:
        logger = logging.getLogger("enforcement")
        self.level_before = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logger = logging.getLogger("enforcement")
        logger.removeHandler(self)
        logger.setLevel(self.level_before)

    def take(self) -> list[str]:
        seen, self.seen = self.seen, []
        return seen


def check_calls(engine: Engine, calls: list[tuple[Any, Any, Any]]) -> None:
    """Each call is judged; for callers whose values behave, ``explain`` (a dry run) too,
    and no last-resort handler may have caught anything (a silent fail-open)."""
    with InternalFailures() as failures:
        for metadata, model, provider in calls:
            verdict(engine, metadata, model, provider)
            if well_behaved((metadata, model, provider)):
                engine.explain(metadata, model=model, provider=provider)
                assert failures.take() == []
            unexpected = failures.take()  # a caller's own value may raise when read; no more
            assert all(line.startswith(INTERNAL_FAILURES[0]) for line in unexpected), unexpected


def assert_good_payload_is_installed(engine: Engine) -> None:
    engine.load_payload({"rules": [GOOD]})
    assert verdict(engine, {}) == GOOD_ID


def is_payload_shape(payload: Any) -> bool:
    return isinstance(payload, list) or (
        isinstance(payload, dict) and isinstance(payload.get("rules"), list)
    )


def offline_environ(cache_dir: str, **extra: str) -> dict[str, str]:
    """A team and an address (the snapshot's scope) but no key: nothing is fetched."""
    return {
        **ENABLED,
        "REVENIUM_CACHE_DIR": cache_dir,
        "REVENIUM_TEAM_ID": TEAM_ID,
        "REVENIUM_ENFORCEMENT_BASE_URL": BASE_URL,
        **extra,
    }


# -- payloads ----------------------------------------------------------------------


@settings(max_examples=scaled(80))
@given(PAYLOADS, CALLS)
@example({"rules": [{"ruleId": 1, "breached": True, "windowEnd": 10**400}]}, [({}, None, None)])
@example({"rules": None}, [({}, None, None)])
@example([{"breached": True, "filters": [{"dimension": "AGENT"}], "name": {"a": [1]}}], [])
def test_any_payload_loads_or_is_refused_and_a_check_only_blocks(
    payload: Any, calls: list[tuple[Any, Any, Any]]
) -> None:
    engine = Engine(environ={**ENABLED, "REVENIUM_CACHE_DIR": "off"})
    try:
        with InternalFailures() as failures:
            try:
                engine.load_payload(payload)
            except ValueError:  # documented: a body that is not a rules payload
                assert not is_payload_shape(payload)
            else:
                assert is_payload_shape(payload)
        assert failures.take() == []
        check_calls(engine, calls)
        engine.status()
        assert_good_payload_is_installed(engine)
    finally:
        engine.close()


@settings(max_examples=scaled(80))
@given(st.lists(poisoned(RULE), max_size=4), CALLS)
def test_any_call_against_rules_that_read_everything_only_blocks(
    extra_rules: list[Any], calls: list[tuple[Any, Any, Any]]
) -> None:
    payload = {**READS_EVERYTHING, "rules": READS_EVERYTHING["rules"] + extra_rules}
    engine = Engine(environ={**ENABLED, "REVENIUM_CACHE_DIR": "off"})
    try:
        engine.load_payload(payload)
        check_calls(engine, calls)
        enforcement.set_default_engine(engine)
        for metadata, model, provider in calls:
            try:
                enforcement.check_enforcement(metadata, model=model, provider=provider)
            except BudgetExceededError:
                pass
    finally:
        enforcement.set_default_engine(None)
        engine.close()


# -- snapshot files ----------------------------------------------------------------


def fingerprint(rules: Any) -> str:
    """CONTRACT §4's binding of a department map to its rules."""
    canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


ODD_FILES = [
    "", "[", "[1, 2", "nul", "{}", "[]", "[" * 40 + "]" * 40, "[" + "9" * 5000 + "]",
    "[1e400]", '[{"windowEnd": 1e400, "breached": true}]', "\ufeff[]", "[NaN, -Infinity]",
]  # fmt: skip
FILE_TEXT = st.one_of(st.text(max_size=40), st.sampled_from(ODD_FILES))
FILE_BYTES = st.one_of(st.binary(max_size=40), st.just(b"\xff\xfe[\x00]\x00"), st.just(b"[\x80]"))


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


TEXT_FILES = FILE_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass"))
BLOCKS_ON_DISK = st.dictionaries(EMAIL_MAP_KEYS, st.integers(0, 5), max_size=3)


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[Optional[bytes], Optional[bytes]]:
    """The rules file and the department maps file, each maybe absent or garbage."""
    rules = draw(st.one_of(RULES, JSON, st.fixed_dictionaries({"rules": RULES})))
    rules_file = draw(st.one_of(st.just(encoded(rules)), TEXT_FILES, FILE_BYTES, st.none()))
    sections = {
        "blocks": poisoned(BLOCKS_ON_DISK),
        "balances": BALANCE_MAP,
        "warnings": BLOCK_MAP,
        "candidates": CANDIDATE_MAP,
    }
    maps = {key: draw(value) for key, value in sections.items() if draw(st.booleans())}
    bound = rules.get("rules") if isinstance(rules, dict) else rules
    maps["rules_fingerprint"] = draw(st.one_of(st.just(fingerprint(bound)), JSON))
    maps_file = draw(st.one_of(st.just(encoded(maps)), JSON.map(encoded), TEXT_FILES, st.none()))
    return rules_file, maps_file


def plant(cache_dir: str, rules_file: Optional[bytes], maps_file: Optional[bytes]) -> None:
    mirror = Mirror(cache_dir, BASE_URL, TEAM_ID)
    for path, content in ((mirror.rules_path, rules_file), (mirror.maps_path, maps_file)):
        if content is not None:
            with open(path, "wb") as handle:
                handle.write(content)
            os.chmod(path, 0o600)


@settings(max_examples=scaled(80))
@given(snapshots(), CALLS, st.sampled_from(["open", "closed"]))
@example(
    (b'[{"ruleId": 1, "breached": true, "windowEnd": ' + b"9" * 400 + b"}]", None),
    [({}, None, None)],
    "open",
)
@example((b"[" * 40 + b"]" * 40, b"[" * 40 + b"]" * 40), [({}, None, None)], "closed")
def test_any_snapshot_on_disk_loads_or_is_absent_and_a_check_only_blocks(
    files: tuple[Optional[bytes], Optional[bytes]],
    calls: list[tuple[Any, Any, Any]],
    fail_mode: str,
) -> None:
    with tempfile.TemporaryDirectory() as cache_dir:
        plant(cache_dir, *files)
        engine = Engine(environ=offline_environ(cache_dir, REVENIUM_CB_FAIL_MODE=fail_mode))
        try:
            check_calls(engine, calls)
            check_calls(engine, calls)  # the one-time load is not retried on every call
            engine.status()
            assert_good_payload_is_installed(engine)
        finally:
            engine.close()


# -- the feed ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RulesServer]:
    with RulesServer(team_id=TEAM_ID) as running:
        yield running


BODIES = st.one_of(
    PAYLOADS.map(lambda payload: ("payload", payload)),
    st.one_of(FILE_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")), FILE_BYTES).map(
        lambda body: ("body", body)
    ),
)


@settings(max_examples=scaled(15), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, calls=CALLS)
@example(
    body=("payload", {"rules": [{"ruleId": 1, "windowEnd": 10**400}]}), calls=[({}, None, None)]
)
@example(body=("body", b'{"rules": [' + b"[" * 40 + b"]" * 40 + b"]}"), calls=[({}, None, None)])
def test_any_body_from_the_feed_is_installed_or_refused_and_survives_a_restart(
    server: RulesServer, body: tuple[str, Any], calls: list[tuple[Any, Any, Any]]
) -> None:
    kind, content = body
    if kind == "payload":
        server.set_fault(None)
        server.set_payload(content)
    else:
        server.set_fault(Fault.body(content))
    with tempfile.TemporaryDirectory() as cache_dir:
        environ = server.env(REVENIUM_CACHE_DIR=cache_dir)
        engine = Engine(environ=environ, retry_policy=FAST, timeout=2.0)
        restarted = Engine(environ={**environ, "REVENIUM_METERING_API_KEY": ""})
        try:
            with InternalFailures() as failures:
                engine.refresh()
            assert failures.take() == []
            check_calls(engine, calls)
            check_calls(restarted, calls)  # reads whatever the first one wrote to disk
            server.set_fault(None)
            server.set_rules([GOOD])
            assert engine.refresh()
            assert verdict(engine, {}) == GOOD_ID
        finally:
            engine.close()
            restarted.close()


# -- the environment ---------------------------------------------------------------

SECTION_5 = [*CONTRACT_ENVIRONMENT, "REVENIUM_CREDENTIAL_ALIAS"]
ENV_TEXT = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=6),
    st.sampled_from(["\ud800", "t\udcff", "\x00", " ", "off", "OFF ", "true", " Yes", "closed"]),
    st.sampled_from(["http://[", "https://[::1", "http://:99999", "ftp://x", "http://a b"]),
    st.sampled_from(["//x", "http://user:pass@host:1/p/", "..", ".", "%2e%2e", "a/b"]),
    st.integers().map(str),
    st.sampled_from(["9" * 400, "1" * 5000, str(10**10), str(MAX_POLL_INTERVAL + 1), "-1"]),
    st.sampled_from(["0", " 60 ", "1_0", "١٢", "60.0", "1e3", "+5"]),
)
ENVIRONMENTS = st.dictionaries(st.sampled_from(SECTION_5), ENV_TEXT)


@settings(max_examples=scaled(200))
@given(ENVIRONMENTS)
@example({"REVENIUM_CB_POLL_INTERVAL_SECONDS": "9" * 400})
@example({"REVENIUM_CB_POLL_INTERVAL_SECONDS": str(10**10)})  # past Event.wait's limit
@example({"REVENIUM_METERING_BASE_URL": "http://["})
@example({"REVENIUM_TEAM_ID": "t\udcff", "REVENIUM_CACHE_DIR": "/nonexistent"})
@example({"REVENIUM_TEAM_ID": "t", "REVENIUM_METERING_API_KEY": "k\udcff"})
def test_no_environment_makes_settings_or_an_engine_raise(environ: dict[str, str]) -> None:
    loaded = Settings.from_env(environ)
    assert 1 <= loaded.poll_interval <= MAX_POLL_INTERVAL <= threading.TIMEOUT_MAX
    engine = Engine(environ={**ENABLED, **environ})
    try:
        engine.status()
    finally:
        engine.close()
    # With no key nothing is fetched, so the first check only reads the snapshot.
    offline = {**environ, "REVENIUM_METERING_API_KEY": ""}
    with tempfile.TemporaryDirectory() as cache_dir:
        offline.setdefault("REVENIUM_CACHE_DIR", cache_dir)
        engine = Engine(environ=offline)
        try:
            verdict(engine, {"subscriber": {"email": "ann@x.io"}}, model="gpt-4o")
            engine.explain({})
            engine.status()
        finally:
            engine.close()


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("9" * 400, None),  # past float range: float() raised OverflowError
        (str(10**10), None),  # a float, but past what Event.wait accepts: the poller died
        (str(MAX_POLL_INTERVAL + 1), None),
        ("0", None),
        (str(MAX_POLL_INTERVAL), MAX_POLL_INTERVAL),
        (" 5 ", 5),
    ],
)
def test_a_poll_interval_out_of_range_is_warned_once_and_the_default_used(
    raw: str, seconds: Optional[int], caplog: pytest.LogCaptureFixture
) -> None:
    from enforcement import _settings
    from enforcement._reporter import Reporter

    warn_once = Reporter("team").warn_once  # as an engine reads its settings
    for _ in range(2):
        loaded = Settings.from_env({"REVENIUM_CB_POLL_INTERVAL_SECONDS": raw}, warn=warn_once)
        assert loaded.poll_interval == (seconds or _settings.DEFAULT_POLL_INTERVAL)
    warnings = [r.getMessage() for r in caplog.records if "POLL_INTERVAL" in r.getMessage()]
    assert len(warnings) == (0 if seconds else 1)
    assert all(len(line) < 200 for line in warnings)  # a 400-digit value is cut short
