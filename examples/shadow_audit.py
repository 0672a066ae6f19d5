"""Shadow mode and its audit: see what a rule would have blocked, then enforce it.

    python examples/shadow_audit.py

1. A new cap is turned on with ``shadowMode: true``; it is already breached,
   so it would block, but shadow rules only report: every call goes through.
2. ``REVENIUM_CB_DECISION_LOG`` makes each would-block one JSON line, with
   the rule, model and provider, and the callers only as digests.
3. ``enforcement audit FILE`` summarizes the log per rule, caller and model.
4. Content with what it would have blocked, the rule is flipped to enforce
   on the control plane; the poller brings it in and calls are refused.
"""

from __future__ import annotations

import json
import os
import tempfile

from _example import attempt, control_plane, expect, loaded_engine, run_cli, wait_for

import enforcement
from enforcement.testing import make_filter, make_rule

TRIAL = make_rule(
    7,
    "gpt-4o trial cap",
    breached=True,
    shadow_mode=True,
    threshold=50.0,
    current_value=75.0,
    filters=[make_filter("MODEL", "IS", "gpt-4o")],
)
CALLERS = ["ana@example.com", "bob@example.com", "ana@example.com"]


def call(email: str, model: str = "gpt-4o") -> None:
    enforcement.check_enforcement({"subscriber": {"email": email}}, model=model, provider="openai")


def main() -> None:
    with tempfile.TemporaryDirectory() as logs:
        log = os.path.join(logs, "decisions.jsonl")
        with control_plane([TRIAL], REVENIUM_CB_DECISION_LOG=log) as server:
            engine = loaded_engine()
            print("1. The cap runs in shadow mode:")
            for email in CALLERS:
                expect(attempt(email, lambda email=email: call(email)) is None, "goes through")
            expect(engine.stats()["shadow"] == 3, "three would-blocks counted")

            print("2. The decision log:")
            expect(engine.flush_listeners(), "the log heard every decision")
            with open(log, encoding="utf-8") as lines:
                text = lines.read()
            print("  " + text.splitlines()[0])
            kinds = [json.loads(line)["kind"] for line in text.splitlines()]
            expect(kinds == ["shadow"] * 3, "three shadow lines")
            expect("@example.com" not in text, "no email in the file")

            print("3. What it would have blocked:")
            status, summary = run_cli("audit", log)
            expect(status == 0 and "gpt-4o trial cap" in summary, "audit names the rule")

            print("4. Flip it to enforce:")
            server.update_rule(7, shadow_mode=False)
            wait_for(lambda: engine.status().tripped_count == 1, "the poller brought it in")
            expect(attempt("ana", lambda: call("ana@example.com")), "now it refuses")


if __name__ == "__main__":
    main()
