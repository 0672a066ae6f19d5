"""The rules feed's payload (CONTRACT §2), split and coerced once as it arrives.

Deliberately hand-rolled rather than a pydantic model per rule: a payload of
10,000 rules must be taken in within a few milliseconds, and every field must
be read *exactly* as the reference SDK reads it (truthiness of ``breached``,
``float()`` of numeric strings, first key wins after email normalization),
which a validating model would second-guess. A malformed rule or map entry is
dropped alone; a payload of the wrong shape is a :class:`PayloadError` and
never replaces the rules already held.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from . import _json as json_pieces
from ._packed import packed
from ._packed import same_sequences as same_rules

__all__ = [
    "Candidate",
    "Payload",
    "PayloadError",
    "action_blocks",
    "can_trip",
    "coerce_float",
    "deny_message",
    "group_index",
    "is_department_rule",
    "iso_utc",
    "normalize_email",
    "parse_payload",
    "parse_window_end",
    "rules_fingerprint",
    "same_rules",
]

_BLOCKS_KEYS = ("departmentBudgetBlocks", "orgUnitBudgetBlocks")
_BALANCES_KEYS = ("departmentBudgetBlockBalances", "orgUnitBudgetBlockBalances")
_WARNINGS_KEYS = ("departmentBudgetWarnings", "orgUnitBudgetWarnings")
_CANDIDATES_KEYS = ("departmentBudgetCandidates",)
_TIERS = frozenset({"BLOCK", "WARN"})


def normalize_email(email: str) -> str:
    """The one canonical form of an address: trimmed and lower-cased.

    The control plane keys every department map by this form, so a caller's
    address is looked up in it too. ``lower()`` rather than ``casefold()``:
    the server's lower-casing is simple case mapping (``ß`` stays ``ß``).

    >>> normalize_email("  Dev@Example.COM ")
    'dev@example.com'
    """
    return email.strip().lower()


def rules_fingerprint(rules: Sequence[Any]) -> str:
    """The digest that binds a department-map snapshot to the rules it was cut from."""
    canonical = json_pieces.encode_list(rules, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class PayloadError(ValueError):
    """A body that is not a rules payload; the last good rules stay in force."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Candidate:
    """One department cap that may apply to a person, best first in their list."""

    rule_id: int
    tier: str
    department_id: Optional[int]
    balance: Optional[float]

    def to_wire(self) -> dict[str, Any]:
        return {
            "ruleId": self.rule_id,
            "tier": self.tier,
            "departmentId": self.department_id,
            "balance": self.balance,
        }


@dataclass(frozen=True, eq=False)
class Payload:
    """A rules payload: the raw rules (kept for the snapshot) and the department maps.

    Two payloads are equal when their rules and maps are. The engine asks on
    every install whether anything changed, and comparing 10,000 rules is a
    single C call that holds the interpreter for tens of milliseconds; when
    both carry the rules' text and it is the same, the rules are the same
    and are not compared.
    """

    rules: Sequence[Any]  # a list as decoded, or PackedRules once compiled (see packed())
    blocks: dict[str, Any] = field(default_factory=dict)
    balances: dict[str, float] = field(default_factory=dict)
    warnings: dict[str, Any] = field(default_factory=dict)
    candidates: dict[str, list[Candidate]] = field(default_factory=dict)
    # Epoch seconds the server compiled the figures at: local spend completed
    # before it is already counted in them (CONTRACT §9). Not part of equality:
    # the same rules compiled later are the same rules, with a later cut-off.
    compiled_at: Optional[float] = field(default=None, compare=False)
    # The rules array's text as it came, when a large body was decoded: the
    # snapshot writes it instead of encoding the rules again. Not part of
    # equality either: the same rules spelled differently are the same rules.
    rules_text: Optional[str] = field(default=None, compare=False, repr=False)

    @classmethod
    def empty(cls) -> Payload:
        return cls([])

    def packed(self, held: Optional[Payload] = None) -> Payload:
        """This payload with a large rules array kept encoded (:mod:`._packed`); maps shared.

        When ``held`` came as the same text, its rules (already kept as they
        should be) are these rules: reused, not encoded again.
        """
        rules = held.rules if held is not None and held.same_text(self) else packed(self.rules)
        return self if rules is self.rules else replace(self, rules=rules)

    def same_text(self, other: Payload) -> bool:
        """Whether both rules arrays came as the same text: then they are the same rules."""
        return self.rules_text is not None and self.rules_text == other.rules_text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Payload):
            return NotImplemented
        return (
            (self.same_text(other) or same_rules(self.rules, other.rules))
            and self.blocks == other.blocks
            and self.balances == other.balances
            and self.warnings == other.warnings
            and self.candidates == other.candidates
        )


def coerce_float(value: Any) -> Optional[float]:
    """``float(value)`` or ``None``: the wire's BigDecimals arrive as numbers or strings."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def json_integer(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def first_present(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The value under the first of ``keys`` that is present and not null."""
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def parse_payload(data: Any, rules_text: Optional[str] = None) -> Payload:
    """Split a decoded body into rules and maps, or raise :class:`PayloadError`.

    Unlike the reference SDK, an object whose ``rules`` is missing, null or
    not a list is refused (CONTRACT §7): a proxy's ``{"error": ...}`` page must
    not lift every breach. ``rules_text`` is the text the rules were decoded
    from, if the caller kept it (:func:`._json.decode_keeping_rules`).
    """
    if isinstance(data, list):
        return Payload(data, rules_text=rules_text)
    if not isinstance(data, dict):
        raise PayloadError(f"body is a JSON {type(data).__name__}, not an object or list")
    rules = data.get("rules")
    if not isinstance(rules, list):
        raise PayloadError("body has no 'rules' list")
    return Payload(
        rules,
        normalize_keys(first_present(data, _BLOCKS_KEYS)),
        coerce_balances(first_present(data, _BALANCES_KEYS)),
        normalize_keys(first_present(data, _WARNINGS_KEYS)),
        coerce_candidates(first_present(data, _CANDIDATES_KEYS)),
        _finite(data.get("compiledAt")),
        rules_text,
    )


def normalize_keys(raw: Any) -> dict[str, Any]:
    """Re-key a map by normalized email once, so a lookup is one dict hit; first key wins."""
    if not isinstance(raw, dict):
        return {}
    normalized: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, str):
            normalized.setdefault(normalize_email(key), value)
    return normalized


def _finite(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    number = coerce_float(value)
    return number if number is not None and math.isfinite(number) else None


def coerce_balances(raw: Any) -> dict[str, float]:
    """Balances as finite floats keyed by normalized email; unusable entries dropped first."""
    if not isinstance(raw, dict):
        return {}
    balances: dict[str, float] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            continue
        balance = _finite(value)
        if balance is not None:
            balances.setdefault(normalize_email(key), balance)
    return balances


def _usable_candidates(raw: Any) -> list[Candidate]:
    if not isinstance(raw, list):
        return []
    usable = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        rule_id, tier = json_integer(item.get("ruleId")), item.get("tier")
        if rule_id is None or not isinstance(tier, str) or tier.strip().upper() not in _TIERS:
            continue
        usable.append(
            Candidate(
                rule_id,
                tier.strip().upper(),
                json_integer(item.get("departmentId")),
                _finite(item.get("balance")),
            )
        )
    return usable


def coerce_candidates(raw: Any) -> dict[str, list[Candidate]]:
    """Each person's well-formed candidates; a person left with none is dropped."""
    candidates: dict[str, list[Candidate]] = {}
    for email, items in normalize_keys(raw).items():
        usable = _usable_candidates(items)
        if usable:
            candidates[email] = usable
    return candidates


# -- a rule's fields, read once when a rule set compiles ----------------------------

_DEPARTMENT_ID_KEYS = ("departmentId", "orgUnitId")
_DEPARTMENT_GROUPS = frozenset({"DEPARTMENT", "ORG_UNIT"})
_WINDOW_END = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?([+-]\d{2}:\d{2})?")


def parse_window_end(raw: Any) -> Optional[float]:
    """``windowEnd`` as epoch seconds; ``None`` (never ends) when absent or unreadable.

    ISO-8601 with up to nine fraction digits, ``Z`` or an offset and maybe a
    ``[Zone]`` suffix, read as UTC without an offset; or epoch seconds, which
    the reference SDK ignores (CONTRACT §7). An integer past float range
    (``10**400`` is valid JSON) is unreadable, as the reference has it: no end.
    """
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        try:
            return float(raw) if raw == raw else None
        except OverflowError:
            return None
    if not isinstance(raw, str):
        return None
    try:
        text = raw.strip().split("[", 1)[0]
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        match = _WINDOW_END.fullmatch(text)
        if match is None:
            return None
        seconds, fraction, offset = match.groups()
        parsed = datetime.datetime.fromisoformat(
            f"{seconds}.{(fraction or '')[:6].ljust(6, '0')}{offset or ''}"
        )
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return parsed.timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def iso_utc(epoch: float) -> Optional[str]:
    """Epoch seconds as the ISO-8601 text a ``resetsAt`` would carry; ``None`` when out of range."""
    try:
        moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.isoformat().replace("+00:00", "Z")


def deny_message(raw: Any) -> Optional[str]:
    return (raw.strip() or None) if isinstance(raw, str) else None


def action_blocks(action: Any) -> bool:
    """Only BLOCK (or no action at all) refuses a call; WARN_ONLY, THROTTLE, NOTIFY warn."""
    if action is None:
        return True
    return isinstance(action, str) and action.strip().upper() == "BLOCK"


def is_department_rule(rule: dict[str, Any]) -> bool:
    if first_present(rule, _DEPARTMENT_ID_KEYS) is not None:
        return True
    group_by = rule.get("groupBy")
    return isinstance(group_by, str) and group_by.strip().upper() in _DEPARTMENT_GROUPS


def _judged_by_breakdown(rule: dict[str, Any], breakdown: Any) -> bool:
    """Whether a rule's per-person breakdown, not its own ``breached``, holds the verdict."""
    if not isinstance(breakdown, list):
        return False
    group_by = rule.get("groupBy")
    return bool(breakdown) or (isinstance(group_by, str) and bool(group_by.strip()))


def group_index(rule: dict[str, Any]) -> Optional[dict[str, tuple[bool, Optional[float]]]]:
    """``groupValue -> (breached, currentValue)`` when the breakdown holds the verdict."""
    breakdown: Any = rule.get("groupBreakdown")
    if not _judged_by_breakdown(rule, breakdown):
        return None
    index: dict[str, tuple[bool, Optional[float]]] = {}
    for entry in breakdown:
        if isinstance(entry, dict):
            key = entry.get("groupValue")
            if isinstance(key, str) and key not in index:
                index[key] = (
                    bool(entry.get("breached", False)),
                    coerce_float(entry.get("currentValue")),
                )
    return index


def can_trip(rule: dict[str, Any]) -> bool:
    """Whether anybody is over this rule: cheap, so untripped rules cost one look each."""
    breakdown: Any = rule.get("groupBreakdown")
    if _judged_by_breakdown(rule, breakdown):
        return any(isinstance(entry, dict) and entry.get("breached", False) for entry in breakdown)
    return bool(rule.get("breached", False) or rule.get("blocked", False))
