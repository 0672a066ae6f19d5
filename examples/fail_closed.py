"""Fail-closed: with ``REVENIUM_CB_FAIL_MODE=closed``, no rules ever loaded means no calls.

    python examples/fail_closed.py

The control plane is down (HTTP 503) and the process has no disk snapshot.
In the default fail-open mode calls go on; in fail-closed mode every covered
call raises EnforcementUnavailableError (a BudgetExceededError) until a rule
set is loaded. While nothing was ever loaded the poller retries within
seconds, so the process recovers soon after the control plane does. Once
rules are loaded, a later outage changes nothing: the last good rules stay
in force.
"""

from __future__ import annotations

from _example import attempt, control_plane, expect, wait_for

import enforcement
from enforcement.testing import Fault

CALLER = {"organizationName": "acme"}


def call() -> None:
    enforcement.check_enforcement(CALLER, model="gpt-4o", provider="openai")


def main() -> None:
    with control_plane([]) as server:
        server.set_fault(Fault.status(503))
        print("Fail open (the default), control plane down:")
        expect(attempt("call", call) is None, "the call goes on")
        enforcement.default_engine().close()

    with control_plane([], REVENIUM_CB_FAIL_MODE="closed") as server:
        server.set_fault(Fault.status(503))
        engine = enforcement.default_engine()
        print("Fail closed, control plane down, nothing ever loaded:")
        refusal = attempt("call", call)
        expect(isinstance(refusal, enforcement.EnforcementUnavailableError), "refused")
        wait_for(lambda: server.request_count >= 2, "the poller keeps asking, seconds apart")
        expect(not engine.status().loaded, "status() says no rules are loaded")

        print("The control plane comes back:")
        server.set_fault(None)
        wait_for(lambda: engine.status().loaded, "the poller retried and loaded the rules")
        expect(attempt("call", call) is None, "calls go on again")

        print("It goes down again:")
        server.set_fault(Fault.status(503))
        expect(attempt("call", call) is None, "the last good rules stay in force")


if __name__ == "__main__":
    main()
