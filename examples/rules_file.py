"""Rules offline: ``REVENIUM_CB_RULES_FILE`` instead of the control plane.

    python examples/rules_file.py

For tests, CI and air-gapped hosts: the rules are read from a JSON payload
file (the feed's shape: ``{"rules": [...]}`` or a bare list), and re-read
when it changes. Editing the file changes the verdict within a few seconds;
a file that does not parse keeps the last good rules and says why in
``status()``.
"""

from __future__ import annotations

import json
import os
import tempfile

from _example import attempt, clean_environment, expect, wait_for

import enforcement
from enforcement.testing import make_filter, make_rule


def write(path: str, text: str) -> None:
    """Replace the file in one step, as an editor or a deploy does."""
    with open(path + ".new", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".new", path)


def rules(breached: bool) -> str:
    cap = make_rule(
        1, "ci budget", breached=breached, filters=[make_filter("MODEL", "IS", "gpt-4o")]
    )
    return json.dumps({"rules": [cap]}, indent=2)


def call() -> None:
    enforcement.check_enforcement({"organizationName": "ci"}, model="gpt-4o", provider="openai")


def main() -> None:
    clean_environment()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rules.json")
        write(path, rules(breached=False))
        os.environ.update(
            REVENIUM_CIRCUIT_BREAKER_ENABLED="true",
            REVENIUM_CB_RULES_FILE=path,
            REVENIUM_CB_POLL_INTERVAL_SECONDS="1",
            REVENIUM_CACHE_DIR="off",
        )
        engine = enforcement.default_engine()
        print("The file says the budget is not breached:")
        expect(attempt("call", call) is None, "allowed")
        expect(engine.status().source == "file", "status() says the rules came from the file")

        print("Edit the file: breached.")
        write(path, rules(breached=True))
        wait_for(lambda: engine.status().tripped_count == 1, "the edit was picked up")
        expect(attempt("call", call), "refused")

        print("A broken edit:")
        write(path, "{ not json")
        wait_for(lambda: engine.status().last_error, "status() says why the file is not used")
        print(f"  last_error: {engine.status().last_error}")
        expect(attempt("call", call), "the last good rules still refuse")

        print("Fixed again: not breached.")
        write(path, rules(breached=False))
        wait_for(lambda: engine.status().tripped_count == 0, "the fix was picked up")
        expect(attempt("call", call) is None, "allowed")
        engine.close()


if __name__ == "__main__":
    main()
