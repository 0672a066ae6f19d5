"""Every example in ``examples/`` runs and behaves as its docstring says.

Each example is its own process, as ``bash examples/run_all.sh`` runs it: the
current Python, a time limit, exit status 0 only when every ``expect`` in it
held. They are independent (their own servers on free ports, their own
temporary directories), so two run at a time; a failure names the example
and shows its output. An example that imports a provider SDK this Python lacks
is skipped: the core suite (``tests/run.sh --pythons``) installs none of them.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# Generous: a limit only stops a hung example; a slow machine must not fail a working one.
TIME_LIMIT = 300
AT_ONCE = 2
# The top-level modules of the provider SDKs in the ``test`` extra (not in ``test-core``).
PROVIDER_SDKS = frozenset(
    {"openai", "anthropic", "google", "ollama", "litellm", "langchain_core", "boto3"}
    | {"vertexai", "perplexity", "fal_client"}
)


def example_names() -> list[str]:
    """Every runnable example: ``examples/*.py`` but the shared helper and the fakes."""
    scripts = EXAMPLES.glob("*.py")
    return sorted(p.stem for p in scripts if not p.name.startswith(("_", "fake_")))


def missing_sdks(name: str) -> list[str]:
    """The provider SDKs ``examples/<name>.py`` imports that are not installed here."""
    tree = ast.parse((EXAMPLES / f"{name}.py").read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.partition(".")[0])
    needed = imported & PROVIDER_SDKS
    return sorted(sdk for sdk in needed if importlib.util.find_spec(sdk) is None)


def _environment() -> dict[str, str]:
    """The test run's environment without any ``REVENIUM_*`` a developer's shell had."""
    return {name: value for name, value in os.environ.items() if not name.startswith("REVENIUM_")}


def _run(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
        check=False,
    )


def _selected(session: pytest.Session) -> list[str]:
    """The examples this pytest run will ask for (all of them, or what ``-k`` kept)."""
    names = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if item.path == Path(__file__) and callspec is not None and "name" in callspec.params:
            names.append(str(callspec.params["name"]))
    return names


@pytest.fixture(scope="session")
def example_runs(
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """Every selected example, started ``AT_ONCE`` at a time; each test waits for its own."""
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        runnable = [name for name in _selected(request.session) if not missing_sdks(name)]
        runs = {name: pool.submit(_run, name) for name in runnable}
        yield runs
        for run in runs.values():
            run.cancel()


@pytest.mark.parametrize("name", example_names())
def test_example_behaves_as_documented(
    name: str, example_runs: dict[str, Future[subprocess.CompletedProcess[str]]]
) -> None:
    missing = missing_sdks(name)
    if missing:
        pytest.skip(f"examples/{name}.py needs {', '.join(missing)}, not installed")
    finished = example_runs[name].result()
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, f"examples/{name}.py failed:\n{output}"
    assert "ok: " in finished.stdout, f"examples/{name}.py checked nothing:\n{output}"
    assert "FAILED" not in finished.stdout, output


def _run_all(*names: str) -> subprocess.CompletedProcess[str]:
    environment = {**_environment(), "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(EXAMPLES / "run_all.sh"), *names],
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
        check=False,
    )


def test_run_all_prints_a_line_per_example_and_passes() -> None:
    finished = _run_all("bypass", "grouped_subscriber")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    lines = finished.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["pass", "bypass"],
        ["pass", "grouped_subscriber"],
    ]


def test_run_all_fails_and_says_which_when_an_example_fails() -> None:
    finished = _run_all("bypass", "no_such_example")
    assert finished.returncode == 1
    assert "FAIL  no_such_example" in finished.stdout
    assert "no example named no_such_example" in finished.stdout


def test_run_all_and_the_readme_list_every_example() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in example_names() if f"examples/{name}.py" not in readme]
    assert not missing, f"README.md does not list {missing}"
