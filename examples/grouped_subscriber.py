"""A subscriber-grouped rule: one cap per person, one person over it.

    python examples/grouped_subscriber.py

``groupBy: SUBSCRIBER`` rules carry a ``groupBreakdown``, each caller's own
spend against the threshold. The caller is judged by their own entry (ids
before emails): Ana is over and refused, Bob is under and goes through, and
someone with no entry yet has spent nothing.
"""

from __future__ import annotations

from _example import attempt, control_plane, expect, loaded_engine

import enforcement
from enforcement.testing import make_group_entry, make_rule

PER_PERSON = make_rule(
    1,
    "$25 a day per person",
    threshold=25.0,
    group_by="SUBSCRIBER",
    group_breakdown=[
        make_group_entry("ana@example.com", 27.10, breached=True),
        make_group_entry("bob@example.com", 3.20),
    ],
)


def call(email: str) -> None:
    enforcement.check_enforcement({"subscriber": {"email": email}}, model="gpt-4o")


def main() -> None:
    with control_plane([PER_PERSON]):
        loaded_engine()
        refusal = attempt("ana", lambda: call("ana@example.com"))
        expect(refusal is not None and refusal.current_value == 27.1, "Ana, over, is refused")
        expect(attempt("bob", lambda: call("bob@example.com")) is None, "Bob, under, is not")
        expect(attempt("cy", lambda: call("cy@example.com")) is None, "nor is a new caller")
        expect(
            attempt("ANA, spelled loudly", lambda: call(" ANA@Example.com")),
            "emails are normalized",
        )


if __name__ == "__main__":
    main()
