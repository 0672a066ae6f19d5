"""What the examples share: a clean environment, a local control plane, and checks that speak.

Every example runs offline: its rules come from an ``enforcement.testing.RulesServer``
(or a rules file) on 127.0.0.1, its provider is a fake on 127.0.0.1, and its
cache is a temporary directory. It prints what happens and exits 1 at the first
thing that did not behave as documented (:func:`expect`), so
``bash examples/run_all.sh`` and ``tests/test_examples.py`` can tell.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable, Optional

import enforcement
from enforcement.testing import RulesServer

TEAM = "examples-team"
# A second between polls, so a rule changed on the server shows within a few seconds.
FAST_POLL = "1"
WAIT_SECONDS = 30.0


def clean_environment() -> None:
    """Forget any ``REVENIUM_*`` the shell had: an example must never reach a real control plane."""
    for name in [name for name in os.environ if name.startswith("REVENIUM_")]:
        del os.environ[name]


def expect(condition: object, what: str) -> None:
    """Say that ``what`` held, or stop the example with exit status 1."""
    if not condition:
        print(f"  FAILED: {what}", flush=True)
        raise SystemExit(1)
    print(f"  ok: {what}", flush=True)


def wait_for(predicate: Callable[[], object], what: str, timeout: float = WAIT_SECONDS) -> None:
    """Poll ``predicate`` until it holds; a loaded machine only makes this slower, never wrong."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            expect(False, what)
        time.sleep(0.05)
    expect(True, what)


def attempt(label: str, call: Callable[[], object]) -> Optional[enforcement.BudgetExceededError]:
    """Run one call, print whether it went through, and return its refusal if it had one."""
    try:
        call()
    except enforcement.BudgetExceededError as refusal:
        print(f"  {label}: BLOCKED -> {refusal}")
        return refusal
    print(f"  {label}: allowed")
    return None


@contextlib.contextmanager
def control_plane(
    rules: Sequence[Mapping[str, Any]],
    maps: Optional[Mapping[str, Any]] = None,
    **environment: str,
) -> Iterator[RulesServer]:
    """A local control plane serving ``rules``, with the process environment pointed at it.

    The environment is what an application sets (key, team, base URL, enabled),
    plus a temporary cache directory, a one-second poll and ``environment``.
    The default engine is stopped on the way out.
    """
    clean_environment()
    with RulesServer(team_id=TEAM) as server, tempfile.TemporaryDirectory() as cache:
        server.set_rules(rules, **(maps or {}))
        settings = {"REVENIUM_CACHE_DIR": cache, "REVENIUM_CB_POLL_INTERVAL_SECONDS": FAST_POLL}
        os.environ.update(server.env(**{**settings, **environment}))
        try:
            yield server
        finally:
            enforcement.uninstrument()
            enforcement.default_engine().close()


def loaded_engine() -> enforcement.Engine:
    """The default engine once its first rule set is in (the first check starts the poller)."""
    engine = enforcement.default_engine()
    enforcement.check_enforcement({"organizationName": "warm-up"}, model="none", provider="none")
    wait_for(lambda: engine.status().loaded, "the rules are loaded from the control plane")
    return engine


def run_cli(*arguments: str, environ: Optional[Mapping[str, str]] = None) -> tuple[int, str]:
    """``python -m enforcement ARGUMENTS``, as an operator runs it; its exit status and output."""
    finished = subprocess.run(
        [sys.executable, "-m", "enforcement", *arguments],
        env=dict(environ if environ is not None else os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = finished.stdout + finished.stderr
    print(f"  $ enforcement {' '.join(arguments)}   (exit {finished.returncode})")
    for line in output.rstrip().splitlines():
        print(f"    {line}")
    return finished.returncode, output
