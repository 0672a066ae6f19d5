"""Whether a call's model and provider are the ones a MODEL or PROVIDER filter names.

The server compares a model the way it meters it, so a filter on
``gpt-4o`` covers the dated snapshots it serves (``gpt-4o-2024-08-06``), a
``provider/model`` route (``openai/gpt-4o``), an Azure deployment named for
it, Gemini's ``-latest`` aliases and xAI's short names; a provider filter
covers the labels of one alias bucket. The oracle's behaviour is the
specification (CONTRACT §3); the differential test finds the cases.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ._providers import ALIAS_BUCKETS, GOOGLE_LABELS, XAI_LABELS
from ._vendor_models import SERVED_BY_ALIAS

__all__ = [
    "ModelKnownByAliases",
    "compare",
    "lowercased_model",
    "model_matches",
    "provider_matches",
]


def compare(operator: str, actual: str, expected: list[str]) -> bool:
    """One comparison made per call (model and provider forms vary with the call)."""
    if operator == "IN":
        return actual in expected
    first = expected[0]
    if operator == "IS":
        return actual == first
    if operator == "IS_NOT":
        return actual != first
    if operator == "CONTAINS":
        return first in actual
    return actual.startswith(first) if operator == "STARTS_WITH" else actual.endswith(first)


_SNAPSHOT = r"(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})"


_CARRIES_SNAPSHOT = re.compile(r"-" + _SNAPSHOT + r"(?=-|$)")


_SNAPSHOT_TAIL = re.compile(r"-" + _SNAPSHOT + r"$")


_VERTEX_AT_SNAPSHOT = re.compile(r"@(?=" + _SNAPSHOT + r"$)")


_LATEST = "-latest"


_GEMINI_LATEST = re.compile(r"gemini-([a-z][a-z-]*?)-latest")


_GEMINI_VERSION = r"gemini-\d+(?:\.\d+)*-"


_GEMINI_REVISION = r"(?:-preview(?:-\d{2}-\d{2}(?:\d{2})?)?|-\d{3})?"


_AZURE_ROUTES = ("azure/", "azure_ai/")


_GOOGLE_ROUTES = ("gemini/", "vertex_ai/", "vertex_ai_beta/")


_XAI_ROUTES = ("xai/",)


def _via_alias(actual: str, expected: str) -> bool:
    return expected.upper() in ALIAS_BUCKETS.get(actual.upper(), ())


def provider_matches(operator: str, actual: str, expected: list[str]) -> bool:
    """Case-blind, and an aliased label is inside filters naming its alias target."""
    if operator == "IN":
        low = actual.lower()
        return any(value.lower() == low or _via_alias(actual, value) for value in expected)
    if operator in ("IS", "IS_NOT") and _via_alias(actual, expected[0]):
        return operator == "IS"
    return compare(operator, actual.lower(), [value.lower() for value in expected])


class ModelKnownByAliases(str):
    """A model string with the other names the same model is known by."""

    aliases: frozenset[str]

    def __new__(cls, model: str, *aliases: str) -> ModelKnownByAliases:
        instance = super().__new__(cls, model)
        instance.aliases = frozenset(aliases)
        return instance


def _aliases(model: str) -> Iterable[str]:
    aliases = getattr(model, "aliases", None)
    return aliases if aliases is not None else ()


def lowercased_model(model: str) -> str:
    aliases = getattr(model, "aliases", None)
    if aliases is None:
        return model.lower()
    return ModelKnownByAliases(model.lower(), *(alias.lower() for alias in aliases))


def _dash_dated(model: str) -> str:
    """Vertex's ``name@20251001`` written ``name-20251001``."""
    return _VERTEX_AT_SNAPSHOT.sub("-", model)


def _metered_forms(model: str) -> set[str]:
    """Names the server may meter a requested model under."""
    forms = {model, *_aliases(model)}
    if "/" in model:
        forms.add(model.split("/", 1)[1])
    forms.update([_dash_dated(form) for form in forms])
    forms.update([form[: -len(_LATEST)] for form in forms if form.endswith(_LATEST)])
    return forms


def _may_reach(provider: Any, model: str, labels: frozenset[str], routes: tuple[str, ...]) -> bool:
    if not isinstance(provider, str):
        return True
    label = provider.upper()
    if label == "LITELLM" and "/" not in model:
        return True
    return label in labels or model.lower().startswith(routes)


def _candidates(model: str, expected: list[str], provider: Any) -> set[str]:
    """Metered forms, widened by the expected value's snapshot date and vendor aliases."""
    forms = _metered_forms(model)
    tails = {m.group(0) for m in map(_SNAPSHOT_TAIL.search, expected) if m}
    undated = [form for form in forms if not _CARRIES_SNAPSHOT.search(form)]
    candidates = forms | {form + tail for form in undated for tail in tails}
    if _may_reach(provider, model, GOOGLE_LABELS, _GOOGLE_ROUTES):
        candidates |= _gemini_latest_served(forms, expected)
    if _may_reach(provider, model, XAI_LABELS, _XAI_ROUTES):
        candidates |= {
            served for form in forms for served in SERVED_BY_ALIAS.get(form.rsplit("/", 1)[-1], ())
        }
    return candidates


def _gemini_latest_served(forms: set[str], expected: list[str]) -> set[str]:
    """Expected values that ``gemini-<tier>-latest`` may currently be served as."""
    served = []
    for form in forms:
        alias = _GEMINI_LATEST.fullmatch(form.rsplit("/", 1)[-1])
        if alias:
            served.append(
                re.compile(_GEMINI_VERSION + re.escape(alias.group(1)) + _GEMINI_REVISION)
            )
    if not served:
        return set()
    return {value for value in expected if any(name.fullmatch(value) for name in served)}


def _spellings(operator: str, expected: list[str]) -> list[list[str]]:
    if operator not in ("IS", "IN"):
        return [expected]
    dashed = [_dash_dated(value) for value in expected]
    return [expected] if dashed == expected else [expected, dashed]


def model_matches(operator: str, expected: list[str], model: str, provider: Any) -> bool:
    """Judge the model the server will meter; an Azure deployment name always matches."""
    if (isinstance(provider, str) and provider.lower() == "azure") or model.lower().startswith(
        _AZURE_ROUTES
    ):
        return True
    if operator == "IS_NOT":
        # An undated request may be metered under a date the filter does not name.
        if not _CARRIES_SNAPSHOT.search(model):
            return True
        return not any(form == expected[0] for form in _metered_forms(str(model)))
    return any(
        compare(operator, candidate, values)
        for values in _spellings(operator, expected)
        for candidate in _candidates(model, values, provider)
    )
