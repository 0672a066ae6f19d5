"""A department budget: the server lists who is over (and who is close), by email.

    python examples/department_budget.py

A department cap is a rule with a ``departmentId``; the payload's
``departmentBudgetBlocks`` maps each member the server found over it to the
rule, ``departmentBudgetBlockBalances`` to their department's balance, and
``departmentBudgetWarnings`` lists who is close (a warn tier: logged once,
never refused). Emails are matched normalized (``strip().lower()``).
"""

from __future__ import annotations

from _example import attempt, control_plane, expect, loaded_engine

import enforcement
from enforcement.testing import make_rule

DEPARTMENT = make_rule(9, "engineering monthly", period_type="MONTHLY", threshold=5000.0)
DEPARTMENT["departmentId"] = 3
MAPS = {
    "departmentBudgetBlocks": {"ann@example.com": 9},
    "departmentBudgetBlockBalances": {"ann@example.com": "5012.75"},
    "departmentBudgetWarnings": {"bob@example.com": 9},
}


def call(email: str) -> None:
    enforcement.check_enforcement({"subscriber": {"email": email}}, model="gpt-4o")


def main() -> None:
    heard: list[enforcement.Decision] = []
    with control_plane([DEPARTMENT], MAPS):
        engine = loaded_engine()
        engine.add_listener(heard.append)
        refusal = attempt("Ann (over)", lambda: call("Ann@Example.com "))
        expect(refusal is not None and refusal.rule_name == "engineering monthly", "Ann refused")
        assert refusal is not None
        print(f"  her department's balance: {refusal.current_value} of {refusal.threshold}")
        expect(
            attempt("Bob (close)", lambda: call("bob@example.com")) is None, "Bob is warned only"
        )
        expect(attempt("Cy (neither)", lambda: call("cy@example.com")) is None, "Cy goes through")
        engine.flush_listeners()
        print(f"  decisions heard: {[d.kind for d in heard]}")
        expect([d.kind for d in heard] == ["block", "warn_tier"], "a block and a warn tier")


if __name__ == "__main__":
    main()
