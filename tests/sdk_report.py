"""Run the hook suite and say, per provider SDK, which version ran and whether it passed.

``python tests/sdk_report.py openai anthropic ... -- <pytest args>``: the
distributions to report, then pytest's arguments. A test belongs to an SDK by
its module (``tests/hooks/test_openai.py``) or its conformance id
(``[openai:chat]``). Exits as pytest does.
"""

from __future__ import annotations

import collections
import datetime
import importlib.metadata
import re
import sys
from typing import Any

import pytest

#: distribution -> the names its tests carry (module suffix, conformance table).
OWNERS: dict[str, tuple[str, ...]] = {
    "openai": ("openai",),
    "anthropic": ("anthropic",),
    "google-genai": ("google_genai",),
    "ollama": ("ollama",),
    "litellm": ("litellm",),
    "langchain-core": ("langchain",),
    "boto3": ("bedrock",),
    "google-cloud-aiplatform": ("vertexai",),
    "perplexityai": ("perplexity",),
    "fal-client": ("fal",),
}


class Tally:
    """Counts each test's outcome under the SDK it belongs to."""

    def __init__(self) -> None:
        self.outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[owner_of(report.nodeid)][report.outcome] += 1


def owner_of(nodeid: str) -> str:
    module = re.search(r"test_(\w+)\.py", nodeid)
    table = re.search(r"\[(\w+):", nodeid)
    names = {table.group(1)} if table else set()
    if module and not names:
        names.add(module.group(1))
    for distribution, owned in OWNERS.items():
        if names & set(owned):
            return distribution
    return "other"


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    distributions, pytest_args = argv[:split], argv[split + 1 :]
    tally = Tally()
    code = int(pytest.main(pytest_args, plugins=[tally]))
    print(f"\nProvider SDKs, newest releases, {datetime.date.today().isoformat()}:")
    for distribution in [*distributions, "other"]:
        counts = tally.outcomes.get(distribution, collections.Counter())
        verdict = "FAIL" if counts["failed"] else ("pass" if counts["passed"] else "no tests")
        detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        installed = "" if distribution == "other" else version(distribution)
        print(f"  {distribution:<26} {installed:<14} {verdict:<8} {detail}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
