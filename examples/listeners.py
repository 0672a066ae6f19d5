"""Listeners, the decision log and ``enforcement.stats()``: decisions your metrics stack sees.

    python examples/listeners.py

``enforcement.add_listener(fn)`` hears every block, shadow would-block,
warn-only and warn-tier decision as an ``enforcement.Decision``, on a worker
thread: a slow listener never delays a call and a failing one never breaks
it (it is counted). ``REVENIUM_CB_DECISION_LOG=path`` adds a ready listener
writing JSON lines; ``stats()`` are counters cheap enough to leave on.
"""

from __future__ import annotations

import json
import os
import tempfile

from _example import attempt, control_plane, expect, loaded_engine

import enforcement
from enforcement.testing import make_filter, make_rule

RULES = [
    make_rule(1, "gpt-4o cap", breached=True, filters=[make_filter("MODEL", "IS", "gpt-4o")]),
    make_rule(2, "mini warning", breached=True, action="WARN_ONLY",
              filters=[make_filter("MODEL", "IS", "gpt-4o-mini")]),
]  # fmt: skip


def call(model: str) -> None:
    metadata = {"organizationName": "acme", "subscriber": {"email": "dev@acme.example"}}
    enforcement.check_enforcement(metadata, model=model, provider="openai")


def main() -> None:
    heard: list[enforcement.Decision] = []

    def broken(decision: enforcement.Decision) -> None:
        raise RuntimeError("a listener with a bug")

    with tempfile.TemporaryDirectory() as logs:
        log = os.path.join(logs, "decisions.jsonl")
        with control_plane(RULES, REVENIUM_CB_DECISION_LOG=log):
            enforcement.add_listener(heard.append)
            enforcement.add_listener(broken)
            engine = loaded_engine()
            expect(attempt("gpt-4o", lambda: call("gpt-4o")), "refused, and not by the listener")
            expect(attempt("gpt-4o-mini", lambda: call("gpt-4o-mini")) is None, "warned only")
            expect(engine.flush_listeners(), "every listener heard every decision")

            for decision in heard:
                print(f"  heard {decision.kind}: rule {decision.rule_name!r} on {decision.model}")
                print(f"    callers, hashed: {dict(decision.callers)}")
            expect([d.kind for d in heard] == ["block", "warn_only"], "a block and a warning")
            with open(log, encoding="utf-8") as lines:
                logged = [json.loads(line)["kind"] for line in lines]
            expect(logged == ["block", "warn_only"], "the decision log holds both")

            counters = enforcement.stats()
            print(f"  enforcement.stats(): {counters}")
            expect(counters["blocked"] == 1 and counters["warn_only"] == 1, "counted")
            expect(counters["listener_failed"] == 2, "the broken listener failed twice, harmlessly")


if __name__ == "__main__":
    main()
