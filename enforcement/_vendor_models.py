"""Published short names of vendor models, keyed by the name they are served as.

xAI answers and meters a request for ``grok-4.20`` as ``grok-4.20-0309-reasoning``,
so a cap written for the served id must cover a call naming the short one.
The table is xAI's published model list (the same one the reference SDK uses);
a name xAI adds later is known once this table is refreshed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["SERVED_BY_ALIAS"]

_XAI_SHORT_NAMES: Mapping[str, str] = {
    "grok-4.20-0309-non-reasoning": """
        grok-4.20-non-reasoning grok-4.20-non-reasoning-latest grok-4.20-beta-non-reasoning
        grok-4.20-beta-latest-non-reasoning grok-4.20-experimental-beta-0304-non-reasoning
        grok-4.20-experimental-beta-non-reasoning-latest grok-4.20-beta-0309-non-reasoning
        grok-4.20-non-reasoning-gv2""",
    "grok-4.20-0309-reasoning": """
        grok-4.20-reasoning-latest grok-4.20 grok-4.20-reasoning grok-4.20-0309
        grok-4.20-beta-0309-reasoning grok-4.20-beta grok-4.20-beta-0309 grok-4.20-beta-latest
        grok-4.20-beta-latest-reasoning grok-4.20-beta-reasoning
        grok-4.20-experimental-beta-0304-reasoning grok-4.20-experimental-beta-0304
        grok-4.20-experimental-beta-reasoning-latest grok-4.20-experimental-beta-latest
        grok-4.20-reasoning-gv2""",
    "grok-4.20-multi-agent-0309": """
        grok-4.20-multi-agent grok-4.20-multi-agent-latest grok-4.20-multi-agent-beta-latest
        grok-4.20-multi-agent-experimental-beta-0304
        grok-4.20-multi-agent-experimental-beta-latest grok-4.20-multi-agent-beta-0309""",
    "grok-4.3": "grok-4.3-latest",
    "grok-4.5": "grok-4.5-latest grok-build-latest",
    "grok-4.6": "",
    "grok-4.7": "",
    "grok-build-0.1": "grok-code-fast-1 grok-code-fast grok-code-fast-1-0825",
}


def _invert(short_names: Mapping[str, str]) -> Mapping[str, frozenset[str]]:
    served_by_alias: dict[str, set[str]] = {}
    for served, aliases in short_names.items():
        for alias in aliases.split():
            served_by_alias.setdefault(alias, set()).add(served)
    return MappingProxyType({alias: frozenset(s) for alias, s in served_by_alias.items()})


#: short name -> the model ids it is served (and metered) as.
SERVED_BY_ALIAS: Mapping[str, frozenset[str]] = _invert(_XAI_SHORT_NAMES)
