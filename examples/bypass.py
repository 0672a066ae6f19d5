"""Bypass: ``REVENIUM_BYPASS=true`` turns every check off at once, read on every call.

    python examples/bypass.py

The incident switch for when enforcement itself is the problem: no restart,
the next call reads it. A breached rule refuses a call; with the switch on
the same call goes through and nothing is counted; with it off again the
rule is back in force.
"""

from __future__ import annotations

import os

from _example import attempt, control_plane, expect, loaded_engine

import enforcement
from enforcement.testing import make_rule

CAP = make_rule(1, "team daily cap", breached=True, threshold=100.0, current_value=130.0)


def call() -> None:
    enforcement.check_enforcement({"organizationName": "acme"}, model="gpt-4o", provider="openai")


def main() -> None:
    with control_plane([CAP]):
        loaded_engine()
        print("Switch off:")
        expect(attempt("call", call), "the breached rule refuses it")

        print("REVENIUM_BYPASS=true:")
        os.environ["REVENIUM_BYPASS"] = "true"
        expect(attempt("call", call) is None, "the same call goes through")
        expect(enforcement.default_engine().status().bypass, "status() says bypass is on")

        print("REVENIUM_BYPASS=false:")
        os.environ["REVENIUM_BYPASS"] = "false"
        expect(attempt("call", call), "refused again")
        expect(enforcement.stats()["blocked"] == 2, "two refusals counted, none while bypassed")


if __name__ == "__main__":
    main()
