"""Run the hook suite and say, per provider SDK, which version ran and whether it passed.

``python tests/sdk_report.py openai anthropic ... -- <pytest args>``: the
distributions to report, then pytest's arguments. A test belongs to an SDK by
its conformance id (``[openai:chat]``), else by a word of its module's name
(``test_openai.py``, ``test_fal_usage.py``, ``test_usage_litellm.py``), else,
in a module shared by several SDKs (``test_usage.py``), by the first word of
its name (``test_ollama_stream_...``). Exits as pytest does.

Each row also names the newest release the package index lists when the
resolver installed an older one: a dependency the index lacks, or another
SDK's cap, holds an SDK back without an error, and a table headed "newest
releases" must not pass that off as the newest. The index is asked through
pip, once per SDK; offline, the note is left out.
"""

from __future__ import annotations

import collections
import datetime
import importlib.metadata
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import pytest

#: distribution -> the names its tests carry (conformance table, module or test name words).
OWNERS: dict[str, tuple[str, ...]] = {
    "openai": ("openai",),
    "anthropic": ("anthropic",),
    "google-genai": ("google_genai", "genai"),
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
    """The distribution a test belongs to, by the most specific name it carries."""
    table = re.search(r"\[(\w+):", nodeid)
    module = re.search(r"test_(\w+)\.py", nodeid)
    function = re.search(r"::test_([a-z0-9]+)", nodeid)
    for found in (table, module, function):
        owner = _owner_named(found.group(1)) if found else None
        if owner is not None:
            return owner
    return "other"


def _owner_named(name: str) -> Optional[str]:
    """The distribution one of whose names is ``name`` or a ``_``-separated run of words in it."""
    padded = f"_{name}_"
    for distribution, owned in OWNERS.items():
        if any(f"_{word}_" in padded for word in owned):
            return distribution
    return None


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


#: the first line of ``pip index versions NAME``: ``NAME (1.8.4)``.
_LISTED = re.compile(r"^\S+ \(([^)\s]+)\)", re.MULTILINE)


def newest_listed(pip_output: str) -> Optional[str]:
    """The newest version in ``pip index versions`` output; None when it lists none."""
    match = _LISTED.search(pip_output)
    return match.group(1) if match else None


def newest_published(distribution: str) -> Optional[str]:
    """The newest release the configured index lists (pip's view); None when it cannot say."""
    command = [sys.executable, "-m", "pip", "index", "versions", distribution]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return newest_listed(done.stdout) if done.returncode == 0 else None


def held_back(installed: str, published: Optional[str]) -> str:
    """A note for a row whose installed version is not the newest the index lists."""
    if published is None or published == installed or installed == "not installed":
        return ""
    return f" (newest listed {published}, held back by the resolver)"


def reported(distributions: list[str], tally: Tally) -> list[str]:
    """The rows: the distributions asked for, any other SDK whose tests ran, then "other".

    ``-k vertexai`` also selects langchain's ``google_vertexai`` cases: their
    row must show, or a failure there would hide behind a table of passes.
    """
    ran = sorted(set(tally.outcomes) - {*distributions, "other"})
    return [*distributions, *ran, "other"]


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    distributions, pytest_args = argv[:split], argv[split + 1 :]
    tally = Tally()
    code = int(pytest.main(pytest_args, plugins=[tally]))
    with ThreadPoolExecutor(max_workers=8) as pool:
        published = dict(zip(distributions, pool.map(newest_published, distributions)))
    print(f"\nProvider SDKs, newest releases, {datetime.date.today().isoformat()}:")
    for distribution in reported(distributions, tally):
        counts = tally.outcomes.get(distribution, collections.Counter())
        verdict = "FAIL" if counts["failed"] else ("pass" if counts["passed"] else "no tests")
        detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        installed = "" if distribution == "other" else version(distribution)
        note = held_back(installed, published.get(distribution))
        print(f"  {distribution:<26} {installed:<14} {verdict:<8} {detail}{note}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
