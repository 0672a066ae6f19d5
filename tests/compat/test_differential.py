"""Differential test: our engine against the oracle, verdict by verdict.

For every generated payload (``generate.py``) both libraries load the same
snapshot files from one cache directory (CONTRACT §4) and judge the same calls;
every field of every verdict must agree, except the deliberate differences of
CONTRACT §7, which are accounted for here and pinned by the small tests at the
end:

* ``resets_at``: where the oracle has none (the rule has no ``resetsAt``) ours
  is the rule's ``windowEnd``: the string as is, or for epoch seconds an
  ISO-8601 UTC string ending in ``Z``.
* A numeric ``windowEnd`` in the past ends our breach, not the oracle's; the
  generator keeps numeric window ends in the future.
* ``usage_metadata`` that is not a mapping is no metadata to us and an
  ``AttributeError`` to the oracle; the generator never sends one.

A fifth of the payloads run again with ``REVENIUM_CREDENTIAL_ALIAS`` set in
both environments (the oracle falls back to it for a call's credential).

Settings: ``COMPAT_PAYLOADS`` (default 1500), ``COMPAT_CALLS`` per payload
(default 15), ``COMPAT_ONLY`` (comma-separated payload indexes, to replay),
``COMPAT_MINIMIZE=0`` to skip shrinking the reported differences. A large
``COMPAT_PAYLOADS`` needs ``--timeout 0`` (the suite's per-test limit is 120 s).
"""

from __future__ import annotations

import copy
import datetime
import glob
import json
import logging
import math
import os
import time
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import pytest

from enforcement import BudgetExceededError, Engine

from .generate import (
    BASE_URL,
    Call,
    Payload,
    generate_calls,
    generate_payload,
    snapshot_scope,
    write_snapshot,
)
from .oracle import OracleDriver, Verdict, capture, same_value

SEED_BASE = 20_261_001
PAYLOADS = int(os.environ.get("COMPAT_PAYLOADS", "1500"))
CALLS = int(os.environ.get("COMPAT_CALLS", "15"))
REPORTED = 10
DEPARTMENT_FALLBACK = "Department budget"
MINIMIZE_SECONDS = 40.0

#: Compared with ``same_value`` whenever both sides raised; ``resets_at`` apart.
FIELDS = (
    "message_type",
    "message",
    "rule_name",
    "rule_id",
    "current_value",
    "threshold",
    "deny_message",
)


@pytest.fixture
def driver(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[OracleDriver]:
    # The oracle logs every change of team; what it logs is not under test.
    caplog.set_level(logging.ERROR, logger="revenium_middleware")
    caplog.set_level(logging.ERROR, logger="revenium_middleware.extension")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    oracle = OracleDriver(str(cache_dir), monkeypatch.setenv, monkeypatch.delenv)
    try:
        yield oracle
    finally:
        oracle.stop()


# --------------------------------------------------------------------------- running a pair


def ours_check(engine: Engine, call: Call) -> Verdict:
    return capture(
        lambda: engine.check(call.metadata, model=call.model, provider=call.provider),
        BudgetExceededError,
    )


def run_pair(
    driver: OracleDriver, payload: Payload, calls: list[Call]
) -> list[tuple[Verdict, Verdict]]:
    """Both verdicts for each call, each library having loaded ``payload`` from disk."""
    team = driver.new_team()
    write_snapshot(driver.cache_dir, BASE_URL, team, payload)
    driver.use_team(team)
    engine = Engine(environ=driver.environ(team))
    try:
        results = [(driver.check(call), ours_check(engine, call)) for call in calls]
    finally:
        engine.close()
        for path in glob.glob(
            os.path.join(driver.cache_dir, f"*{snapshot_scope(BASE_URL, team)}*")
        ):
            os.remove(path)
    return results


# --------------------------------------------------------------------------- comparing


def _loaded_rules(payload: Payload) -> list[Any]:
    if payload.rules_file in ("garbage", "wrong-shape"):
        return []
    loaded: list[Any] = json.loads(json.dumps(payload.rules))
    return loaded


def _rules_named_by(rules: list[Any], rule_id: Any) -> list[dict[str, Any]]:
    """The rules an error's ``rule_id`` can have come from (rule loop or department map)."""
    found = []
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        keyed = rule.get("ruleId") if rule.get("ruleId") is not None else rule.get("id")
        comparable = (
            isinstance(keyed, (int, str))
            and not isinstance(keyed, bool)
            and isinstance(rule_id, (int, str))
            and not isinstance(rule_id, bool)
        )
        if same_value(rule.get("ruleId") or rule.get("id"), rule_id) or (
            comparable and str(keyed) == str(rule_id)
        ):
            found.append(rule)
    return found


def _window_end_fallback(rule: dict[str, Any]) -> tuple[str, Any]:
    """CONTRACT §7: what our ``resets_at`` is for a rule without ``resetsAt``."""
    end = rule.get("windowEnd")
    if isinstance(end, str):
        return "exact", end
    if isinstance(end, (int, float)) and not isinstance(end, bool) and math.isfinite(end):
        try:
            datetime.datetime.fromtimestamp(end, tz=datetime.timezone.utc)
        except (ValueError, OverflowError, OSError):
            return "exact", None
        return "epoch", float(end)
    return "exact", None


def _fallback_holds(ours: Any, expected: tuple[str, Any]) -> bool:
    kind, value = expected
    if kind == "exact":
        return same_value(ours, value)
    if not isinstance(ours, str) or not ours.endswith("Z"):
        return False
    try:
        parsed = datetime.datetime.fromisoformat(ours[:-1] + "+00:00")
    except ValueError:
        return False
    return parsed.tzinfo is not None and abs(parsed.timestamp() - value) < 1e-3


def differing_fields(oracle: Verdict, ours: Verdict, payload: Payload) -> list[str]:
    if oracle.kind != ours.kind:
        return ["verdict"]
    if oracle.kind == "error":
        return [] if oracle.error == ours.error else ["error"]
    if oracle.kind == "pass":
        return []
    fields = [name for name in FIELDS if not same_value(getattr(oracle, name), getattr(ours, name))]
    if oracle.resets_at is not None:
        if not same_value(oracle.resets_at, ours.resets_at):
            fields.append("resets_at")
    else:
        behind = [
            rule
            for rule in _rules_named_by(_loaded_rules(payload), oracle.rule_id)
            if rule.get("resetsAt") is None
        ]
        allowed = [_window_end_fallback(rule) for rule in behind] or [("exact", None)]
        if (oracle.rule_name, oracle.threshold, oracle.deny_message) == (
            DEPARTMENT_FALLBACK,
            None,
            None,
        ):
            # A department map naming a rule the oracle did not find by id: no
            # rule, so no window end either.
            allowed.append(("exact", None))
        if not any(_fallback_holds(ours.resets_at, expected) for expected in allowed):
            fields.append("resets_at(fallback)")
    return fields


# --------------------------------------------------------------------------- reporting


@dataclass
class Difference:
    index: int
    call_index: int
    payload: Payload
    call: Call
    oracle: Verdict
    ours: Verdict
    fields: list[str]
    minimized: Optional[tuple[Payload, Call, Verdict, Verdict]] = field(default=None)

    def signature(self) -> tuple[str, str, tuple[str, ...]]:
        return self.oracle.kind, self.ours.kind, tuple(self.fields)


def _dump(value: Any, limit: int = 900) -> str:
    text = json.dumps(value, default=repr, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit} chars)"


def _without(mapping: Any, key: Any) -> Any:
    return {k: v for k, v in mapping.items() if k != key}


def _smaller(payload: Payload, call: Call) -> Iterator[tuple[Payload, Call]]:
    """Candidates one step smaller than (payload, call), cheapest removals first."""
    rules = payload.rules
    for i in range(len(rules)):
        yield replace(payload, rules=rules[:i] + rules[i + 1 :]), call
    if payload.maps is not None:
        yield replace(payload, maps=None), call
        for name, value in payload.maps.items():
            if name != "blocks":
                yield replace(payload, maps=_without(payload.maps, name)), call
            if isinstance(value, dict):
                for key in value:
                    yield replace(payload, maps={**payload.maps, name: _without(value, key)}), call
                for key, items in value.items():
                    if isinstance(items, list):
                        for j in range(len(items)):
                            shorter = {**value, key: items[:j] + items[j + 1 :]}
                            yield replace(payload, maps={**payload.maps, name: shorter}), call
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        for key, value in rule.items():
            edited = [*rules]
            edited[i] = _without(rule, key)
            yield replace(payload, rules=edited), call
            if isinstance(value, list):
                for j in range(len(value)):
                    edited = [*rules]
                    edited[i] = {**rule, key: value[:j] + value[j + 1 :]}
                    yield replace(payload, rules=edited), call
    metadata = call.metadata
    if isinstance(metadata, types.MappingProxyType):
        yield payload, replace(call, metadata=dict(metadata))
    if isinstance(metadata, dict):
        if metadata:
            yield payload, replace(call, metadata=None)
        for key, value in metadata.items():
            yield payload, replace(call, metadata=_without(metadata, key))
            if isinstance(value, dict):
                for inner in value:
                    yield payload, replace(call, metadata={**metadata, key: _without(value, inner)})
    if call.model is not None:
        yield payload, replace(call, model=None)
    if call.provider is not None:
        yield payload, replace(call, provider=None)


def minimize(driver: OracleDriver, diff: Difference, deadline: float) -> None:
    """Shrink a difference greedily while it keeps its signature."""
    payload, call = copy.deepcopy(diff.payload), copy.deepcopy(diff.call)
    oracle, ours = diff.oracle, diff.ours
    progress = True
    while progress and time.monotonic() < deadline:
        progress = False
        for smaller_payload, smaller_call in _smaller(payload, call):
            if time.monotonic() >= deadline:
                break
            [(o, u)] = run_pair(driver, smaller_payload, [smaller_call])
            fields = differing_fields(o, u, smaller_payload)
            if (o.kind, u.kind, tuple(fields)) == diff.signature():
                payload, call, oracle, ours = smaller_payload, smaller_call, o, u
                progress = True
                break
    diff.minimized = (payload, call, oracle, ours)


def report(diffs: list[Difference], total: int) -> str:
    counts = Counter(diff.signature() for diff in diffs)
    lines = [f"{len(diffs)} of {total} calls differ from the oracle; by kind:"]
    for (oracle_kind, ours_kind, fields), count in counts.most_common():
        lines.append(f"  {count:6d}  oracle {oracle_kind} / ours {ours_kind}: {', '.join(fields)}")
    # One of each kind first, then the earliest others.
    shown: list[Difference] = []
    seen = set()
    for diff in diffs:
        if diff.signature() not in seen:
            seen.add(diff.signature())
            shown.append(diff)
    shown = shown[:REPORTED]
    shown += [diff for diff in diffs if diff not in shown][: REPORTED - len(shown)]
    previous = None
    for number, diff in enumerate(shown, 1):
        lines.append(
            f"--- #{number}: payload {diff.index} (COMPAT_ONLY={diff.index}), "
            f"call {diff.call_index}, differs in {', '.join(diff.fields)}"
        )
        if diff.index != previous:
            lines.append(f"  payload: {_dump(diff.payload.summary())}")
        previous = diff.index
        lines.append(f"  call:    {_dump(diff.call.summary())}")
        lines.append(f"  oracle:  {diff.oracle.brief()}")
        lines.append(f"  ours:    {diff.ours.brief()}")
        if diff.minimized is not None:
            payload, call, oracle, ours = diff.minimized
            lines.append(f"  minimal payload: {_dump(payload.summary(), 1500)}")
            lines.append(f"  minimal call:    {_dump(call.summary())}")
            lines.append(f"  minimal oracle:  {oracle.brief()}")
            lines.append(f"  minimal ours:    {ours.brief()}")
    return "\n".join(lines)


def _indexes() -> list[int]:
    only = os.environ.get("COMPAT_ONLY", "").strip()
    if only:
        return [int(part) for part in only.split(",") if part.strip()]
    return list(range(PAYLOADS))


# --------------------------------------------------------------------------- the test


def _differential(driver: OracleDriver, indexes: list[int], label: str) -> None:
    started = time.monotonic()
    diffs: list[Difference] = []
    total = blocked = 0
    for index in indexes:
        seed = SEED_BASE + index
        payload = generate_payload(seed)
        calls = generate_calls(seed, payload, CALLS)
        for call_index, (call, (oracle, ours)) in enumerate(
            zip(calls, run_pair(driver, payload, calls))
        ):
            total += 1
            blocked += oracle.kind == "raise"
            fields = differing_fields(oracle, ours, payload)
            if fields:
                diffs.append(Difference(index, call_index, payload, call, oracle, ours, fields))
    elapsed = time.monotonic() - started
    print(
        f"\ncompat{label}: {total} calls over {len(indexes)} payloads in {elapsed:.1f}s; "
        f"the oracle blocked {blocked / max(total, 1):.1%}; {len(diffs)} differ"
    )
    if diffs:
        if os.environ.get("COMPAT_MINIMIZE", "1") != "0":
            deadline = time.monotonic() + MINIMIZE_SECONDS
            firsts: dict[Any, Difference] = {}
            for diff in diffs:
                firsts.setdefault(diff.signature(), diff)
            for diff in list(firsts.values())[:REPORTED]:
                minimize(driver, diff, deadline)
        pytest.fail(f"{label.strip()}\n{report(diffs, total)}".strip(), pytrace=False)
    if not os.environ.get("COMPAT_ONLY") and total >= 1000:
        # The harness itself: a generator whose rules never cover its calls, or an
        # oracle that never read the files, would make "no differences" meaningless.
        assert 0.15 <= blocked / total <= 0.7, f"oracle blocked {blocked / total:.1%}"


def test_verdicts_match_the_oracle(driver: OracleDriver) -> None:
    _differential(driver, _indexes(), "")


def test_verdicts_match_with_a_credential_alias_in_the_environment(
    driver: OracleDriver,
) -> None:
    """``REVENIUM_CREDENTIAL_ALIAS`` names the credential of a call that names none."""
    driver.set_extra("REVENIUM_CREDENTIAL_ALIAS", "key-1")
    indexes = _indexes()
    _differential(driver, indexes[: max(1, len(indexes) // 5)], " (REVENIUM_CREDENTIAL_ALIAS)")


# --------------------------------------------------------------------------- §7 differences


def _verdicts(driver: OracleDriver, rules: list[Any], call: Call) -> tuple[Verdict, Verdict]:
    payload = Payload(rules=rules, maps=None)
    [(oracle, ours)] = run_pair(driver, payload, [call])
    return oracle, ours


def _breached_rule(**fields: Any) -> dict[str, Any]:
    return {
        "ruleId": 5,
        "name": "daily-cap",
        "breached": True,
        "action": "BLOCK",
        "threshold": 10,
        "currentValue": 12.5,
        **fields,
    }


def test_harness_reaches_the_oracle_through_the_files(driver: OracleDriver) -> None:
    oracle, ours = _verdicts(
        driver, [_breached_rule(resetsAt="2095-01-01T00:00:00Z")], Call({}, "gpt-4o", "openai")
    )
    assert oracle == ours
    assert oracle.kind == "raise"
    assert oracle.message == "Request blocked by Revenium enforcement rule: daily-cap"
    assert (oracle.rule_id, oracle.current_value, oracle.threshold) == (5, 12.5, 10.0)


def test_resets_at_falls_back_to_window_end(driver: OracleDriver) -> None:
    call = Call({}, "gpt-4o", "openai")
    iso = "2095-10-31T23:59:59.999999999Z"
    oracle, ours = _verdicts(driver, [_breached_rule(windowEnd=iso)], call)
    assert (oracle.kind, oracle.resets_at) == ("raise", None)
    assert ours.resets_at == iso
    oracle, ours = _verdicts(driver, [_breached_rule(windowEnd=4102444800)], call)
    assert (oracle.kind, oracle.resets_at) == ("raise", None)
    assert ours.resets_at in ("2100-01-01T00:00:00Z", "2100-01-01T00:00:00.000000Z")


def test_a_numeric_window_end_that_has_passed_ends_only_our_breach(driver: OracleDriver) -> None:
    call = Call({"subscriber": {"id": "u-1"}}, "gpt-4o", "openai")
    passed = time.time() - 3600
    oracle, ours = _verdicts(driver, [_breached_rule(windowEnd=passed)], call)
    assert oracle.kind == "raise"
    assert ours.kind == "pass"
    oracle, ours = _verdicts(driver, [_breached_rule(windowEnd=int(passed))], call)
    assert (oracle.kind, ours.kind) == ("raise", "pass")
    # The same window end written as ISO text has ended for both.
    iso = datetime.datetime.fromtimestamp(passed, tz=datetime.timezone.utc).isoformat()
    oracle, ours = _verdicts(driver, [_breached_rule(windowEnd=iso)], call)
    assert (oracle.kind, ours.kind) == ("pass", "pass")


@pytest.mark.parametrize("metadata", ["alice@example.com", ["u-1"], 5, ("x",)])
def test_metadata_that_is_not_a_mapping_is_no_metadata_to_us(
    driver: OracleDriver, metadata: Any
) -> None:
    rules = [
        _breached_rule(),
        {
            "ruleId": 6,
            "name": "per-person",
            "groupBy": "SUBSCRIBER",
            "action": "BLOCK",
            "groupBreakdown": [{"groupValue": "u-1", "breached": True, "currentValue": 3}],
        },
    ]
    for subset in (rules[:1], rules[1:]):
        payload = Payload(rules=subset, maps=None)
        calls = [Call(metadata, "gpt-4o", "openai"), Call(None, "gpt-4o", "openai")]
        (oracle, ours), (oracle_none, ours_none) = run_pair(driver, payload, calls)
        assert oracle.kind == "error"
        assert oracle.error is not None and oracle.error.startswith("AttributeError")
        assert ours == ours_none == oracle_none


@pytest.mark.parametrize("metadata", ["", [], 0])
def test_falsy_metadata_is_no_metadata_to_both(driver: OracleDriver, metadata: Any) -> None:
    payload = Payload(rules=[_breached_rule()], maps=None)
    calls = [Call(metadata, "gpt-4o", "openai"), Call(None, "gpt-4o", "openai")]
    (oracle, ours), (oracle_none, _) = run_pair(driver, payload, calls)
    assert oracle == ours == oracle_none
