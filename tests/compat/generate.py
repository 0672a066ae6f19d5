"""Deterministic payloads and calls for the differential test.

Every payload is drawn from its own ``random.Random(seed)``, so payload ``i`` is
the same whatever else runs, and a difference is replayed from its index alone.

A payload is what the control plane could have served, as it lands on disk
(CONTRACT §4): a rules snapshot and, maybe, the department-map envelope beside
it. The vocabulary is deliberately small (a handful of emails, ids, models,
providers, products...) so that filters often hold, breakdowns often name the
caller and department maps often hit: a generator whose rules never cover its
calls would compare nothing but "pass" with "pass".
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

BASE_URL = "http://127.0.0.1:9"
RULES_PREFIX = "revenium_enforcement_rules"
MAPS_PREFIX = "revenium_enforcement_org_unit_blocks"

# --------------------------------------------------------------------------- vocabulary

EMAILS = [
    "alice@example.com",
    "bob@example.com",
    "carol@corp.example",
    "dave@example.com",
]
SUBSCRIBER_IDS = ["u-1", "u-2", "U-1", "42", "7"]

CALL_MODELS = [
    "gpt-4o-mini",
    "gpt-4o-mini-2024-07-18",
    "GPT-4o-Mini",
    "gpt-4o",
    "gpt-4o-2024-08-06",
    "openai/gpt-4o",
    "openai/gpt-4o-mini-2024-07-18",
    "o3-mini",
    "o3-mini-2025-01-31",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-sonnet",
    "claude-3-5-sonnet-latest",
    "claude-haiku-4-5@20251001",
    "claude-haiku-4-5",
    "anthropic/claude-haiku-4-5-20251001",
    "vertex_ai/claude-haiku-4-5@20251001",
    "gemini-flash-latest",
    "gemini/gemini-flash-latest",
    "gemini-pro-latest",
    "gemini-2.5-flash",
    "vertex_ai/gemini-2.5-flash",
    "gemini/gemini-2.5-pro",
    "azure/my-gpt-deployment",
    "azure_ai/gpt-4o",
    "my-gpt-deployment",
    "grok-4.20",
    "xai/grok-4.20",
    "grok-4.20-0309-reasoning",
    "grok-4.20-beta",
    "grok-code-fast-1",
    "grok-4.3-latest",
    "grok-4.3",
    "mistral/mistral-large-latest",
    "text-embedding-3-small",
]
FILTER_MODELS = [
    "gpt-4o-mini",
    "gpt-4o-mini-2024-07-18",
    "gpt-4o",
    "gpt-4o-2024-08-06",
    "GPT-4O",
    "o3-mini",
    "o3-mini-2025-01-31",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-sonnet",
    "claude-haiku-4-5@20251001",
    "claude-haiku-4-5-20251001",
    "claude-haiku-4-5",
    "gemini-2.5-flash",
    "gemini-2.5-flash-preview-05-20",
    "gemini-2.0-flash-001",
    "gemini-2.5-flash-tts",
    "gemini-2.5-pro",
    "gemini-3-pro-preview",
    "grok-4.20-0309-reasoning",
    "grok-4.20-0309-non-reasoning",
    "grok-4.20",
    "grok-build-0.1",
    "grok-4.3",
    "my-gpt-deployment",
    "mistral-large",
]
MODEL_FRAGMENTS = [
    "gpt",
    "GPT",
    "4o",
    "mini",
    "claude",
    "sonnet",
    "-latest",
    "2024-07-18",
    "gemini",
    "grok",
    "openai/",
    "flash",
    "@20251001",
    "-20251001",
]

CALL_PROVIDERS = [
    "openai",
    "OpenAI",
    "OPENAI",
    "anthropic",
    "Anthropic",
    "ANTHROPIC",
    "FOUNDRY",
    "foundry",
    "CLAUDECODE",
    "claudecode",
    "CLAUDECOWORK",
    "CODEXCLI",
    "codexcli",
    "GEMINICLI",
    "google",
    "GOOGLE",
    "azure",
    "Azure",
    "AZURE",
    "litellm",
    "LITELLM",
    "xai",
    "XAI",
    "bedrock",
    "vertex",
]
FILTER_PROVIDERS = [
    "OPENAI",
    "ANTHROPIC",
    "GOOGLE",
    "FOUNDRY",
    "CLAUDECODE",
    "CODEXCLI",
    "GEMINICLI",
    "XAI",
    "AZURE",
    "LITELLM",
    "openai",
    "Anthropic",
    "google",
    "OPEN",
    "AI",
    "IC",
    "ai",
]

PRODUCTS = ["prod-a", "Prod-A", "prod-b", "prod"]
CALL_PRODUCTS = ["prod-a", "Prod-A", "prod-b", "PROD-B", "prod-c"]
ORGS = ["acme", "Acme", "globex", "ac"]
CALL_ORGS = ["acme", "ACME", "globex", "initech"]
CREDENTIALS = ["key-1", "key-2", "KEY-1", "sk-raw-123", "key"]
AGENTS = ["agent-x", "Agent-X", "agent-y", "agent"]
TASK_TYPES = ["chat", "summarize", "Chat", "sum"]

#: Each payload leans on one theme: model and provider filter values and call
#: models and providers that sit on either side of one matching detail of the
#: oracle (snapshot dates, Vertex ``@``, ``-latest``, routes, vendor aliases,
#: Azure deployments, provider alias buckets), so that a filter often decides.
THEMES: list[dict[str, list[Any]]] = [
    {  # OpenAI meters a dated snapshot for an undated request
        "models": [
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
            "GPT-4o-Mini",
            "openai/gpt-4o-mini",
            "gpt-4o-mini-2024-08-01",
            "gpt-4o-mini-latest",
        ],
        "model_values": ["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "GPT-4O-MINI", "gpt-4o"],
        "providers": ["openai", "OPENAI", "CODEXCLI", "azure", "litellm", None],
        "provider_values": ["OPENAI", "openai", "CODEXCLI", "AZURE", "OPEN"],
    },
    {  # four-digit snapshots
        "models": [
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-0125",
            "gpt-3.5-turbo-1106",
            "gpt-4-0613",
            "gpt-4",
        ],
        "model_values": ["gpt-3.5-turbo-0125", "gpt-3.5-turbo", "gpt-4-0613", "gpt-4"],
        "providers": ["openai", "CODEXCLI", "codexcli", None],
        "provider_values": ["OPENAI", "CODEXCLI", "openai"],
    },
    {  # Vertex ``@`` snapshots, routes and -latest
        "models": [
            "claude-haiku-4-5@20251001",
            "claude-haiku-4-5-20251001",
            "claude-haiku-4-5",
            "vertex_ai/claude-haiku-4-5@20251001",
            "anthropic/claude-haiku-4-5",
            "claude-haiku-4-5-latest",
            "Claude-Haiku-4-5",
        ],
        "model_values": [
            "claude-haiku-4-5@20251001",
            "claude-haiku-4-5-20251001",
            "claude-haiku-4-5",
            "claude-haiku-4-5@20250101",
            "claude-haiku",
        ],
        "providers": [
            "anthropic",
            "ANTHROPIC",
            "FOUNDRY",
            "CLAUDECODE",
            "CLAUDECOWORK",
            "google",
            "vertex",
            None,
        ],
        "provider_values": ["ANTHROPIC", "FOUNDRY", "CLAUDECODE", "GOOGLE", "anthropic"],
    },
    {  # Anthropic dated models and -latest
        "models": [
            "claude-3-5-sonnet-20241022",
            "claude-3-5-sonnet",
            "claude-3-5-sonnet-latest",
            "anthropic/claude-3-5-sonnet-latest",
            "claude-3-5-sonnet-20240620",
        ],
        "model_values": [
            "claude-3-5-sonnet-20241022",
            "claude-3-5-sonnet",
            "claude-3-5-sonnet-latest",
            "claude-3-5-sonnet-20240620",
        ],
        "providers": [
            "anthropic",
            "FOUNDRY",
            "foundry",
            "CLAUDECODE",
            "claudecode",
            "CLAUDECOWORK",
            "bedrock",
            None,
        ],
        "provider_values": ["ANTHROPIC", "FOUNDRY", "CLAUDECODE", "CLAUDECOWORK", "Anthropic"],
    },
    {  # Google's gemini-<tier>-latest aliases
        "models": [
            "gemini-flash-latest",
            "gemini/gemini-flash-latest",
            "vertex_ai/gemini-flash-latest",
            "gemini-pro-latest",
            "gemini-flash-lite-latest",
            "gemini-2.5-flash",
            "openai/gemini-flash-latest",
        ],
        "model_values": [
            "gemini-2.5-flash",
            "gemini-2.5-flash-preview-05-20",
            "gemini-2.0-flash-001",
            "gemini-2.5-flash-tts",
            "gemini-2.5-pro",
            "gemini-2.5-flash-lite",
            "gemini-flash-latest",
            "gemini-3-flash-preview",
            "gemini-2.5-flash-preview-05-2025",
        ],
        "providers": [
            "google",
            "GOOGLE",
            "GEMINICLI",
            "geminicli",
            "litellm",
            "LITELLM",
            "openai",
            None,
        ],
        "provider_values": ["GOOGLE", "GEMINICLI", "google", "LITELLM"],
    },
    {  # xAI's published aliases
        "models": [
            "grok-4.20",
            "xai/grok-4.20",
            "grok-4.20-beta",
            "grok-code-fast-1",
            "grok-4.3-latest",
            "grok-4.20-0309-reasoning",
            "grok-build-latest",
        ],
        "model_values": [
            "grok-4.20-0309-reasoning",
            "grok-4.20-0309-non-reasoning",
            "grok-4.20",
            "grok-build-0.1",
            "grok-4.3",
            "grok-4.5",
        ],
        "providers": ["xai", "XAI", "litellm", "openai", None],
        "provider_values": ["XAI", "xai", "LITELLM", "OPENAI"],
    },
    {  # Azure deployments say nothing about the model
        "models": [
            "my-gpt-deployment",
            "azure/my-gpt-deployment",
            "azure_ai/gpt-4o",
            "AZURE/prod-deploy",
            "gpt-4o",
        ],
        "model_values": ["gpt-4o", "my-gpt-deployment", "gpt-4o-2024-08-06"],
        "providers": ["azure", "Azure", "AZURE", "openai", "litellm", None],
        "provider_values": ["AZURE", "OPENAI", "azure"],
    },
]

KNOWN_DIMENSIONS = [
    "MODEL",
    "PROVIDER",
    "PRODUCT",
    "ORGANIZATION",
    "SUBSCRIBER",
    "CREDENTIAL",
    "AGENT",
    "TASK_TYPE",
]
ODD_DIMENSIONS = ["DEPARTMENT", "ORG_UNIT", "REGION", "model", "Provider", None, 3]
OPERATORS = [
    "IS",
    "IS_NOT",
    "CONTAINS",
    "STARTS_WITH",
    "ENDS_WITH",
    "IN",
    "EQUALS",
    "is",
    "in",
    None,
    7,
]
OPERATOR_WEIGHTS = [30, 12, 10, 8, 8, 20, 3, 2, 2, 2, 1]

RULE_NAMES = [
    "daily-cap",
    "Team budget",
    "per-person",
    "monthly $500",
    "dept-cap",
    "ünïcode cap",
    "prod cap",
]
DENY_MESSAGES = [
    "Ask finance to raise the cap.",
    "Use {placeholder} %s later",
    "Contact #ai-budget",
]


def _pick(rng: random.Random, options: Sequence[Any], weights: Sequence[float]) -> Any:
    return rng.choices(options, weights=weights)[0]


# --------------------------------------------------------------------------- window ends


def _iso(rng: random.Random, year: int) -> str:
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    hour, minute, second = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    stamp = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    fraction = _pick(rng, ["", ".5", ".123456", ".999999999", ".1234567"], [40, 10, 15, 30, 5])
    zone = _pick(
        rng,
        ["Z", "z", "+00:00", "+05:30", "-08:00", "+23:59", "", "Z[UTC]", "+01:00[Europe/Paris]"],
        [40, 3, 10, 8, 8, 2, 10, 10, 9],
    )
    text = stamp + fraction + zone
    return f" {text} " if rng.random() < 0.03 else text


def _window_end(rng: random.Random) -> tuple[bool, Any]:
    """(present, value). Numeric window ends are always in the future (CONTRACT §7)."""
    kind = _pick(
        rng,
        ["absent", "future", "past", "garbage", "numeric", "null", "odd"],
        [25, 40, 15, 7, 8, 3, 2],
    )
    if kind == "absent":
        return False, None
    if kind == "future":
        if rng.random() < 0.03:
            return True, "9999-12-31T23:59:59-05:00"
        return True, _iso(rng, rng.randint(2090, 2099))
    if kind == "past":
        if rng.random() < 0.05:
            return True, "0001-01-01T00:00:00+05:00"
        return True, _iso(rng, rng.randint(2001, 2020))
    if kind == "garbage":
        return True, rng.choice(
            [
                "tomorrow",
                "2095-10-31",
                "2095-13-45T99:00:00Z",
                "2095-10-31 23:59:59Z",
                "",
                "[UTC]",
                "2001-01-01T00:00Z",
                "2001-01-01T00:00:00+2400",
            ]
        )
    if kind == "numeric":
        return True, rng.choice([4102444800, 4102444800.5, 5_000_000_000, 4200000000.25])
    if kind == "null":
        return True, None
    return True, rng.choice([True, False, [], {}])


# --------------------------------------------------------------------------- payload context


@dataclass
class Context:
    """The few identities and ids one payload draws its rules, maps and calls from."""

    emails: list[str]
    subscriber_ids: list[str]
    rule_ids: list[int]
    theme: dict[str, list[Any]] = field(default_factory=dict)
    department_rule_ids: list[int] = field(default_factory=list)


def email_variant(rng: random.Random, email: str) -> str:
    variant: str = _pick(
        rng,
        [
            email,
            email.upper(),
            email.title(),
            f"  {email}",
            f"{email}\t",
            f" {email.capitalize()} ",
        ],
        [55, 10, 10, 10, 5, 10],
    )
    return variant


def _call_email(rng: random.Random, ctx: Context) -> Any:
    roll = rng.random()
    if roll < 0.75:
        return email_variant(rng, rng.choice(ctx.emails))
    if roll < 0.88:
        return email_variant(rng, rng.choice(EMAILS))
    return rng.choice(["", "   ", 5, "x" * 300 + "@example.com", "nobody@example.com"])


def _call_subscriber_id(rng: random.Random, ctx: Context) -> Any:
    roll = rng.random()
    if roll < 0.7:
        return rng.choice(ctx.subscriber_ids)
    if roll < 0.82:
        return rng.choice([42, 7])
    return rng.choice([0, "", True, 3.5, None, "u-9", ["u-1"]])


def _group_value(rng: random.Random, ctx: Context) -> Any:
    return _pick(
        rng,
        [
            lambda: rng.choice(ctx.subscriber_ids),
            lambda: rng.choice(ctx.emails),
            lambda: email_variant(rng, rng.choice(ctx.emails)),
            lambda: rng.choice(EMAILS),
            lambda: 42,
            lambda: None,
            lambda: "",
            lambda: rng.choice(["True", "0", "3.5"]),
        ],
        [30, 35, 12, 8, 5, 5, 5, 3],
    )()


# --------------------------------------------------------------------------- rules


def _filter_value(rng: random.Random, dimension: Any, ctx: Context) -> Any:
    if dimension == "MODEL":
        if rng.random() < 0.65:
            return rng.choice(ctx.theme["model_values"])
        return rng.choice(FILTER_MODELS if rng.random() < 0.75 else MODEL_FRAGMENTS)
    if dimension == "PROVIDER":
        if rng.random() < 0.65:
            return rng.choice(ctx.theme["provider_values"])
        return rng.choice(FILTER_PROVIDERS)
    if dimension == "PRODUCT":
        return rng.choice(PRODUCTS)
    if dimension == "ORGANIZATION":
        return rng.choice(ORGS)
    if dimension == "SUBSCRIBER":
        return _pick(
            rng,
            [
                lambda: rng.choice(ctx.emails),
                lambda: email_variant(rng, rng.choice(ctx.emails)),
                lambda: rng.choice(ctx.subscriber_ids),
                lambda: rng.choice(["@example.com", "alice", "ALICE", "u-", "example.com "]),
            ],
            [35, 20, 30, 15],
        )()
    if dimension == "CREDENTIAL":
        return rng.choice(CREDENTIALS)
    if dimension == "AGENT":
        return rng.choice(AGENTS)
    if dimension == "TASK_TYPE":
        return rng.choice(TASK_TYPES)
    return rng.choice(["x", "eu-west", "acme", "gpt-4o"])


DIMENSION_WEIGHTS = [25, 20, 8, 8, 12, 10, 9, 8]


def _filter_row(rng: random.Random, ctx: Context, weights: Optional[Sequence[float]] = None) -> Any:
    if rng.random() < 0.05:
        return rng.choice(["MODEL IS gpt-4o", None, 3, ["MODEL", "IS", "gpt-4o"]])
    if rng.random() < 0.9:
        dimension: Any = _pick(rng, KNOWN_DIMENSIONS, weights or DIMENSION_WEIGHTS)
    else:
        dimension = rng.choice(ODD_DIMENSIONS)
    operator = _pick(rng, OPERATORS, OPERATOR_WEIGHTS)
    row: dict[str, Any] = {"dimension": dimension, "operator": operator}
    if operator in ("IN", "in"):
        shape = _pick(rng, ["list", "missing", "not-list", "with-junk", "empty"], [70, 8, 6, 10, 6])
        values = [_filter_value(rng, dimension, ctx) for _ in range(rng.randint(1, 3))]
        row["value"] = ",".join(str(value) for value in values)
        if shape == "list":
            row["values"] = values
        elif shape == "not-list":
            row["values"] = row["value"]
        elif shape == "with-junk":
            row["values"] = [*values, 5, None]
        elif shape == "empty":
            row["values"] = []
    else:
        shape = _pick(
            rng, ["vocab", "empty", "null", "number", "missing", "list"], [84, 4, 3, 3, 3, 3]
        )
        if shape == "vocab":
            row["value"] = _filter_value(rng, dimension, ctx)
        elif shape == "empty":
            row["value"] = ""
        elif shape == "null":
            row["value"] = None
        elif shape == "number":
            row["value"] = 5
        elif shape == "list":
            row["value"] = [_filter_value(rng, dimension, ctx)]
    return row


def _filters(rng: random.Random, ctx: Context) -> tuple[bool, Any]:
    kind = _pick(rng, ["absent", "null", "empty", "rows", "not-list"], [42, 5, 10, 40, 3])
    if kind == "absent":
        return False, None
    if kind == "null":
        return True, None
    if kind == "empty":
        return True, []
    if kind == "not-list":
        return True, rng.choice(["MODEL", {}, {"dimension": "MODEL"}])
    return True, [_filter_row(rng, ctx) for _ in range(_pick(rng, [1, 2, 3], [60, 30, 10]))]


def _number(rng: random.Random, *, odd: bool = True) -> Any:
    plain = [100, 100.5, 0, 12.25, 250, "250.75", "1e3", " 12 ", "1_000", "-3"]
    weird = ["NaN", "Infinity", "abc", None, True, "", [1]]
    if odd and rng.random() < 0.15:
        return rng.choice(weird)
    return rng.choice(plain)


def _identity(rng: random.Random, rule: dict[str, Any], rule_id: int) -> None:
    kind = _pick(
        rng,
        ["int", "str", "id", "zero", "hash-id", "none", "bool", "hash", "both"],
        [66, 8, 6, 4, 3, 3, 2, 4, 4],
    )
    if kind == "int":
        rule["ruleId"] = rule_id
    elif kind == "str":
        rule["ruleId"] = str(rule_id)
    elif kind == "id":
        rule["id"] = rule_id
    elif kind == "zero":
        rule["ruleId"] = 0
        if rng.random() < 0.7:
            rule["id"] = rule_id
    elif kind == "hash-id":
        rule["ruleId"] = None
        rule["id"] = f"r-{rule_id}"
    elif kind == "bool":
        rule["ruleId"] = True
    elif kind == "hash":
        rule["ruleId"] = f"hash-{rule_id}"
    elif kind == "both":
        rule["ruleId"] = rule_id
        rule["id"] = rule_id + 100


def _common_fields(rng: random.Random, rule: dict[str, Any], ctx: Context) -> None:
    name_kind = _pick(
        rng, ["vocab", "absent", "null", "empty", "number", "padded"], [80, 6, 5, 4, 3, 2]
    )
    if name_kind == "vocab":
        rule["name"] = rng.choice(RULE_NAMES)
    elif name_kind == "null":
        rule["name"] = None
    elif name_kind == "empty":
        rule["name"] = ""
    elif name_kind == "number":
        rule["name"] = 123
    elif name_kind == "padded":
        rule["name"] = "  spaced cap  "

    action = _pick(
        rng,
        [
            "BLOCK",
            None,
            "NULL",
            "WARN_ONLY",
            "THROTTLE",
            "NOTIFY",
            "block",
            " Block ",
            "warn_only",
            5,
            "",
            "DENY",
        ],
        [52, 12, 5, 10, 4, 4, 4, 2, 2, 1, 2, 2],
    )
    if action == "NULL":
        rule["action"] = None
    elif action is not None:
        rule["action"] = action

    shadow = _pick(rng, ["absent", False, True, "false", 0, 1, ""], [60, 25, 7, 2, 2, 2, 2])
    if shadow != "absent":
        rule["shadowMode"] = shadow

    for key in ("threshold", "currentValue"):
        if rng.random() < 0.9:
            rule[key] = _number(rng)

    present, window_end = _window_end(rng)
    if present:
        rule["windowEnd"] = window_end
        if rng.random() < 0.5:
            rule["windowStart"] = "2026-10-01T00:00:00Z"

    resets = _pick(rng, ["absent", "iso", "null", "number", "empty"], [75, 15, 5, 2, 3])
    if resets == "iso":
        rule["resetsAt"] = "2095-11-01T00:00:00Z"
    elif resets == "null":
        rule["resetsAt"] = None
    elif resets == "number":
        rule["resetsAt"] = 1234
    elif resets == "empty":
        rule["resetsAt"] = ""

    deny = _pick(
        rng,
        ["absent", "vocab", "padded", "empty", "blank", "null", "number"],
        [50, 22, 8, 6, 5, 5, 4],
    )
    if deny == "vocab":
        rule["denyMessage"] = rng.choice(DENY_MESSAGES)
    elif deny == "padded":
        rule["denyMessage"] = "  padded message  "
    elif deny == "empty":
        rule["denyMessage"] = ""
    elif deny == "blank":
        rule["denyMessage"] = " \t "
    elif deny == "null":
        rule["denyMessage"] = None
    elif deny == "number":
        rule["denyMessage"] = 42

    if rng.random() < 0.4:
        rule["periodType"] = rng.choice(["DAILY", "MONTHLY", "WEEKLY"])
        rule["metricType"] = rng.choice(["TOTAL_COST", "TOKEN_COUNT"])
        rule["operatorType"] = "GREATER_THAN_OR_EQUAL_TO"
        rule["compiledAt"] = 1776829860.156

    present, filters = _filters(rng, ctx)
    if present:
        rule["filters"] = filters

    if rng.random() < 0.06:
        rule["credential"] = rng.choice(["key-1", "key-2", "", 5])


def _breached(rng: random.Random) -> tuple[bool, Any]:
    value = _pick(
        rng, [True, False, "absent", "true", "false", 1, 0, "", None], [45, 30, 8, 2, 2, 4, 3, 2, 4]
    )
    return (value != "absent"), value


def _pooled_rule(rng: random.Random, ctx: Context, rule_id: int) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    _identity(rng, rule, rule_id)
    _common_fields(rng, rule, ctx)
    present, breached = _breached(rng)
    if present:
        rule["breached"] = breached
    if rng.random() < 0.1:
        rule["blocked"] = rng.choice([True, False, 1, "yes"])
    breakdown = _pick(rng, ["absent", "null", "empty", "not-list"], [70, 15, 10, 5])
    if breakdown == "null":
        rule["groupBreakdown"] = None
    elif breakdown == "empty":
        rule["groupBreakdown"] = []
    elif breakdown == "not-list":
        rule["groupBreakdown"] = rng.choice(["x", {}])
    group_by = _pick(rng, ["absent", None, "", "  ", 5], [70, 20, 5, 3, 2])
    if group_by != "absent":
        rule["groupBy"] = group_by
    return rule


def _group_entry(rng: random.Random, ctx: Context) -> Any:
    if rng.random() < 0.05:
        return rng.choice(["alice@example.com", None, 5, ["u-1"]])
    entry: dict[str, Any] = {"groupValue": _group_value(rng, ctx)}
    breached = _pick(rng, [True, False, "false", 1, 0, "absent", None], [45, 35, 3, 4, 3, 8, 2])
    if breached != "absent":
        entry["breached"] = breached
    if rng.random() < 0.9:
        entry["currentValue"] = _number(rng)
    if rng.random() < 0.3:
        entry["displayName"] = "Someone"
        entry["usagePercent"] = 87.5
    return entry


def _grouped_rule(rng: random.Random, ctx: Context, rule_id: int) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    _identity(rng, rule, rule_id)
    _common_fields(rng, rule, ctx)
    group_by = _pick(
        rng,
        ["SUBSCRIBER", "subscriber", " SUBSCRIBER ", None, "absent", "", "  ", 5],
        [60, 5, 5, 10, 10, 5, 3, 2],
    )
    if group_by != "absent":
        rule["groupBy"] = group_by
    breakdown = _pick(rng, ["entries", "empty", "not-list", "null"], [80, 12, 5, 3])
    if breakdown == "entries":
        rule["groupBreakdown"] = [_group_entry(rng, ctx) for _ in range(rng.randint(1, 6))]
    elif breakdown == "empty":
        rule["groupBreakdown"] = []
    elif breakdown == "not-list":
        rule["groupBreakdown"] = rng.choice(["x", {}])
    else:
        rule["groupBreakdown"] = None
    present, breached = _breached(rng)
    if present:
        rule["breached"] = breached
    return rule


def _department_rule(rng: random.Random, ctx: Context, rule_id: int) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    # Department rules are looked up by id from the maps; keep their ids resolvable
    # most of the time.
    if rng.random() < 0.85:
        rule["ruleId"] = rule_id if rng.random() < 0.85 else str(rule_id)
    else:
        _identity(rng, rule, rule_id)
    _common_fields(rng, rule, ctx)
    kind = _pick(
        rng, ["departmentId", "orgUnitId", "both-null", "groupBy", "zero"], [40, 15, 8, 30, 7]
    )
    if kind == "departmentId":
        rule["departmentId"] = rng.choice([10, 11, "d-1"])
    elif kind == "orgUnitId":
        rule["orgUnitId"] = 12
        if rng.random() < 0.5:
            rule["departmentId"] = None
    elif kind == "both-null":
        rule["departmentId"] = None
        rule["orgUnitId"] = None
        rule["groupBy"] = rng.choice(
            ["DEPARTMENT", "department", " ORG_UNIT ", "org_unit", None, "TEAM"]
        )
    elif kind == "groupBy":
        rule["groupBy"] = rng.choice(["DEPARTMENT", "department", " ORG_UNIT ", "ORG_UNIT"])
    else:
        rule["departmentId"] = 0
    present, breached = _breached(rng)
    if present:
        rule["breached"] = breached
    if rng.random() < 0.2:
        rule["groupBreakdown"] = [_group_entry(rng, ctx) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.4:
        # Candidates judge their rule's filter rows against the call: give them some.
        rule["filters"] = [_filter_row(rng, ctx) for _ in range(rng.randint(1, 2))]
    ctx.department_rule_ids.append(rule_id)
    return rule


def _rules(rng: random.Random, ctx: Context) -> list[Any]:
    count = _pick(rng, [0, 1, 2, 3, 4, 5, 6, 8], [4, 22, 22, 18, 12, 10, 7, 5])
    rules: list[Any] = []
    for _ in range(count):
        if rng.random() < 0.03:
            rules.append(rng.choice(["not-a-rule", None, 7, ["x"]]))
            continue
        rule_id = rng.choice(ctx.rule_ids)
        kind = _pick(rng, ["pooled", "grouped", "department"], [42, 33, 25])
        if kind == "pooled":
            rules.append(_pooled_rule(rng, ctx, rule_id))
        elif kind == "grouped":
            rules.append(_grouped_rule(rng, ctx, rule_id))
        else:
            rules.append(_department_rule(rng, ctx, rule_id))
    return rules


def _filtered_rules(rng: random.Random, ctx: Context) -> list[Any]:
    """A few breached, blocking rules whose filters decide: mostly MODEL and PROVIDER rows."""
    rules: list[Any] = []
    for _ in range(_pick(rng, [1, 2, 3], [50, 35, 15])):
        rule_id = rng.choice(ctx.rule_ids)
        if rng.random() < 0.7:
            rule = _pooled_rule(rng, ctx, rule_id)
            rule["breached"] = rng.random() < 0.9
        else:
            rule = _grouped_rule(rng, ctx, rule_id)
        rule.pop("shadowMode", None)
        if rng.random() < 0.8:
            rule["action"] = "BLOCK"
        weights = [40, 30, 4, 4, 8, 8, 3, 3]
        rule["filters"] = [
            _filter_row(rng, ctx, weights) for _ in range(_pick(rng, [1, 2], [65, 35]))
        ]
        rules.append(rule)
    return rules


def _department_rules(rng: random.Random, ctx: Context) -> list[Any]:
    """Department rules with filter rows, for the candidate lists to judge."""
    rules: list[Any] = []
    for _ in range(rng.randint(1, 3)):
        rule = _department_rule(rng, ctx, rng.choice(ctx.rule_ids))
        if rng.random() < 0.7:
            rule["action"] = "BLOCK"
            rule.pop("shadowMode", None)
        if rng.random() < 0.8:
            weights = [20, 12, 8, 8, 10, 25, 10, 7]
            rule["filters"] = [
                _filter_row(rng, ctx, weights) for _ in range(_pick(rng, [1, 2], [65, 35]))
            ]
        rules.append(rule)
    if rng.random() < 0.3:
        rules.append(_pooled_rule(rng, ctx, rng.choice(ctx.rule_ids)))
    return rules


def _candidate_lists(rng: random.Random, ctx: Context) -> dict[str, Any]:
    """A candidate list for most of the payload's people."""
    candidates: dict[str, Any] = {}
    for email in ctx.emails:
        if rng.random() < 0.85:
            key = email if rng.random() < 0.85 else email_variant(rng, email)
            items = [_candidate(rng, ctx) for _ in range(rng.randint(1, 3))]
            for item in items:
                if isinstance(item, dict) and ctx.department_rule_ids and rng.random() < 0.8:
                    item["ruleId"] = rng.choice(ctx.department_rule_ids)
            candidates[key] = items
    return candidates


# --------------------------------------------------------------------------- department maps


def _map_key(rng: random.Random, ctx: Context) -> str:
    roll = rng.random()
    if roll < 0.65:
        return rng.choice(ctx.emails)
    if roll < 0.9:
        return email_variant(rng, rng.choice(ctx.emails))
    return rng.choice(["u-1", "nobody@example.com", "", " "])


def _map_rule_id(rng: random.Random, ctx: Context) -> Any:
    pool = ctx.department_rule_ids or ctx.rule_ids
    return _pick(
        rng,
        [
            lambda: rng.choice(pool),
            lambda: rng.choice(ctx.rule_ids),
            lambda: 99,
            lambda: True,
            lambda: str(rng.choice(pool)),
            lambda: float(rng.choice(pool)),
            lambda: None,
        ],
        [70, 10, 8, 3, 3, 3, 3],
    )()


def _balance(rng: random.Random) -> Any:
    return rng.choice(
        [12.5, "40.25", 0, -3, 1e3, "NaN", "Infinity", "-Infinity", True, "abc", None, " 7 "]
    )


def _candidate(rng: random.Random, ctx: Context) -> Any:
    if rng.random() < 0.1:
        return rng.choice(
            [
                "x",
                None,
                {"ruleId": "3", "tier": "BLOCK"},
                {"ruleId": True, "tier": "BLOCK"},
                {"tier": "BLOCK"},
                5,
            ]
        )
    item: dict[str, Any] = {"ruleId": _map_rule_id(rng, ctx)}
    tier = _pick(
        rng,
        ["BLOCK", "WARN", "block", " warn ", "NOTIFY", None, 5, "absent"],
        [45, 30, 5, 5, 5, 4, 3, 3],
    )
    if tier != "absent":
        item["tier"] = tier
    if rng.random() < 0.8:
        item["departmentId"] = rng.choice([10, 11, "d-1", None, True])
    if rng.random() < 0.8:
        item["balance"] = _balance(rng)
    return item


def _maps(rng: random.Random, ctx: Context) -> dict[str, Any]:
    blocks: dict[str, Any] = {}
    for _ in range(rng.randint(0, 3)):
        blocks.setdefault(_map_key(rng, ctx), _map_rule_id(rng, ctx))
    if rng.random() < 0.1:
        # Two spellings of one address: the first one written wins.
        email = rng.choice(ctx.emails)
        blocks[email.upper()] = _map_rule_id(rng, ctx)
        blocks[email] = _map_rule_id(rng, ctx)
    balances: dict[str, Any] = {}
    for _ in range(rng.randint(0, 3)):
        balances.setdefault(_map_key(rng, ctx), _balance(rng))
    if rng.random() < 0.1:
        email = rng.choice(ctx.emails)
        balances[f" {email.upper()}"] = _balance(rng)
        balances[email] = _balance(rng)
    warnings: dict[str, Any] = {}
    for _ in range(rng.randint(0, 2)):
        warnings.setdefault(_map_key(rng, ctx), _map_rule_id(rng, ctx))
    candidates: dict[str, Any] = {}
    if rng.random() < 0.6:
        for _ in range(rng.randint(1, 2)):
            key = _map_key(rng, ctx)
            if rng.random() < 0.08:
                candidates[key] = rng.choice(["x", {}, None, []])
            else:
                candidates[key] = [_candidate(rng, ctx) for _ in range(rng.randint(1, 3))]
    envelope: dict[str, Any] = {"blocks": blocks}
    for name, value in (("balances", balances), ("warnings", warnings), ("candidates", candidates)):
        roll = rng.random()
        if roll < 0.08:
            continue  # an envelope written before this map existed
        envelope[name] = value if roll < 0.95 else rng.choice([[], "x", None])
    return envelope


# --------------------------------------------------------------------------- payloads


@dataclass
class Payload:
    """One snapshot pair as it will be written to disk."""

    rules: list[Any]
    #: ``None``: no map file. Else the envelope minus its fingerprint.
    maps: Optional[dict[str, Any]]
    #: ``list`` (the normal bare list), ``object`` ({"rules": [...]}), ``garbage`` (not
    #: JSON), ``wrong-shape`` (JSON that holds no rules list).
    rules_file: str = "list"
    #: ``ok``, ``stale`` (fingerprint of other rules), ``blocks-not-dict``,
    #: ``not-object``, ``garbage``. Ignored when ``maps`` is None.
    maps_file: str = "ok"
    ctx: Optional[Context] = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rules": self.rules}
        if self.maps is not None:
            out["maps"] = self.maps
            if self.maps_file != "ok":
                out["maps_file"] = self.maps_file
        if self.rules_file != "list":
            out["rules_file"] = self.rules_file
        return out


def generate_payload(seed: int) -> Payload:
    rng = random.Random(seed)
    ctx = Context(
        emails=rng.sample(EMAILS, rng.randint(1, 3)),
        subscriber_ids=rng.sample(SUBSCRIBER_IDS, 2),
        rule_ids=rng.sample(range(1, 10), rng.randint(2, 4)),
        theme=rng.choice(THEMES),
    )
    style = _pick(rng, ["mixed", "filters", "departments"], [57, 25, 18])
    if style == "mixed":
        rules = _rules(rng, ctx)
        maps = _maps(rng, ctx) if rng.random() < 0.45 else None
    elif style == "filters":
        rules = _filtered_rules(rng, ctx)
        maps = _maps(rng, ctx) if rng.random() < 0.15 else None
    else:
        rules = _department_rules(rng, ctx)
        maps = _maps(rng, ctx)
        maps["candidates"] = _candidate_lists(rng, ctx)
    rules_file = _pick(rng, ["list", "object", "garbage", "wrong-shape"], [95, 3, 1, 1])
    maps_file = _pick(
        rng, ["ok", "stale", "blocks-not-dict", "not-object", "garbage"], [88, 4, 3, 3, 2]
    )
    return Payload(rules, maps, rules_file, maps_file, ctx)


# --------------------------------------------------------------------------- calls


@dataclass
class Call:
    metadata: Any
    model: Any
    provider: Any

    def summary(self) -> dict[str, Any]:
        metadata = self.metadata
        if isinstance(metadata, types.MappingProxyType):
            metadata = {"<MappingProxyType>": dict(metadata)}
        return {"metadata": metadata, "model": self.model, "provider": self.provider}


def _credential(rng: random.Random) -> Any:
    if rng.random() < 0.08:
        return rng.choice(["key-1", 5, None])
    credential: dict[str, Any] = {}
    if rng.random() < 0.6:
        credential["name"] = rng.choice([*CREDENTIALS, "", None])
    if rng.random() < 0.6:
        credential["value"] = rng.choice(["sk-raw-123", "key-2", "", None])
    return credential


def _metadata(rng: random.Random, ctx: Context) -> Any:
    roll = rng.random()
    if roll < 0.03:
        return None
    if roll < 0.05:
        return {}
    md: dict[str, Any] = {}
    style = _pick(rng, ["nested", "flat", "both", "none"], [40, 30, 15, 15])
    if style in ("nested", "both"):
        if rng.random() < 0.04:
            md["subscriber"] = rng.choice(["alice@example.com", ["u-1"], None])
        else:
            nested: dict[str, Any] = {}
            if rng.random() < 0.55:
                nested["id"] = _call_subscriber_id(rng, ctx)
            if rng.random() < 0.7:
                nested["email"] = _call_email(rng, ctx)
            if rng.random() < 0.35:
                nested["credential"] = _credential(rng)
            md["subscriber"] = nested
    if style in ("flat", "both"):
        if rng.random() < 0.5:
            md["subscriber_id"] = _call_subscriber_id(rng, ctx)
        if rng.random() < 0.7:
            md["subscriber_email"] = _call_email(rng, ctx)
        if rng.random() < 0.2:
            md["subscriber_credential_name"] = rng.choice([*CREDENTIALS, ""])
    if rng.random() < 0.3:
        # Also the legacy rule-level ``credential`` match key.
        md["subscriber_credential"] = rng.choice(["key-1", "key-2", "sk-raw-123", ""])
    if rng.random() < 0.35:
        keys = ["organization_name", "organizationName", "organization_id", "organizationId"]
        for key in rng.sample(keys, _pick(rng, [1, 2], [80, 20])):
            md[key] = rng.choice([*CALL_ORGS, 5, None, ""])
    if rng.random() < 0.35:
        keys = ["product_name", "productName", "product_id", "productId"]
        for key in rng.sample(keys, _pick(rng, [1, 2], [80, 20])):
            md[key] = rng.choice([*CALL_PRODUCTS, 17, None, ""])
    if rng.random() < 0.35:
        md["agent"] = rng.choice([*AGENTS, "agent-z", 3, None, ""])
    if rng.random() < 0.3:
        md[rng.choice(["task_type", "taskType"])] = rng.choice([*TASK_TYPES, "embed", None, 1])
    if rng.random() < 0.1:
        md[rng.choice(["credentialAlias", "credential_alias"])] = rng.choice(
            ["key-1", "KEY-2", "  key-1  ", "", 5]
        )
    if rng.random() < 0.1:
        md["trace_id"] = "trace-1"
    if rng.random() < 0.03:
        return types.MappingProxyType(md)
    return md


def generate_calls(seed: int, payload: Payload, count: int) -> list[Call]:
    rng = random.Random(seed * 7919 + 17)
    ctx = payload.ctx
    assert ctx is not None
    calls = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.6:
            model: Any = rng.choice(ctx.theme["models"])
        elif roll < 0.87:
            model = rng.choice(CALL_MODELS)
        elif roll < 0.95:
            model = None
        else:
            model = rng.choice(["", 123])
        roll = rng.random()
        if roll < 0.6:
            provider: Any = rng.choice(ctx.theme["providers"])
        elif roll < 0.88:
            provider = rng.choice(CALL_PROVIDERS)
        else:
            provider = None if roll < 0.97 else ""
        calls.append(Call(_metadata(rng, ctx), model, provider))
    return calls


# --------------------------------------------------------------------------- snapshot files


def snapshot_scope(base_url: str, team_id: str) -> str:
    return hashlib.sha256(f"{base_url.rstrip('/')}|{team_id}".encode()).hexdigest()[:16]


def rules_fingerprint(rules: list[Any]) -> str:
    canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_snapshot(cache_dir: str, base_url: str, team_id: str, payload: Payload) -> list[str]:
    """Write the payload's files for ``team_id``; return every path written."""
    scope = snapshot_scope(base_url, team_id)
    rules_path = os.path.join(cache_dir, f"{RULES_PREFIX}.{scope}.json")
    maps_path = os.path.join(cache_dir, f"{MAPS_PREFIX}.{scope}.json")
    # What a reader will hold after json.load, which is what it fingerprints.
    rules = json.loads(json.dumps(payload.rules))
    if payload.rules_file == "object":
        rules_text = json.dumps({"rules": rules, "compiledAt": 1776829860.156})
    elif payload.rules_file == "garbage":
        rules_text = '{"rules": ['
    elif payload.rules_file == "wrong-shape":
        rules_text = json.dumps(rng_choice_by_rules(rules))
    else:
        rules_text = json.dumps(rules)
    written = [rules_path]
    _write(rules_path, rules_text)
    if payload.maps is not None:
        envelope: Any = {"rules_fingerprint": rules_fingerprint(rules), **payload.maps}
        if payload.maps_file == "stale":
            envelope["rules_fingerprint"] = rules_fingerprint([*rules, {"ruleId": 1}])
        elif payload.maps_file == "blocks-not-dict":
            envelope["blocks"] = list(payload.maps.get("blocks") or {})
        elif payload.maps_file == "not-object":
            envelope = [envelope]
        text = '{"blocks": ' if payload.maps_file == "garbage" else json.dumps(envelope)
        _write(maps_path, text)
        written.append(maps_path)
    return written


def rng_choice_by_rules(rules: list[Any]) -> Any:
    """A JSON document that is not a rules list, chosen by the rules' count."""
    shapes: list[Any] = [
        "just a string",
        {"rules": None},
        {"rules": {"0": rules}},
        7,
        {"error": "bad gateway"},
    ]
    return shapes[len(rules) % len(shapes)]


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
