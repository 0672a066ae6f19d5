"""End to end: the real openai SDK, a local rules server, a call that gets blocked.

    bash examples/run_demo.sh

1. A cost control "gpt-4o daily cap" is served by a local control plane and
   an allowed call goes to a (local, fake) OpenAI API.
2. The cap is breached on the server; the poller picks it up within a second.
3. The next call raises BudgetExceededError before the SDK sends a byte: the
   fake API's request counter does not move.
4. A shadow-mode rule on another model only reports what it would have blocked.
5. REVENIUM_BYPASS=true turns everything off at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import openai
from _example import clean_environment, expect, wait_for
from fake_openai import FakeOpenAI

import enforcement
from enforcement.testing import RulesServer, make_filter, make_rule

CUSTOMER = {"organizationName": "acme", "subscriber": {"email": "dev@acme.example"}}


def chat(client: openai.OpenAI, model: str) -> str:
    """A plain SDK call: the hook checks it before the SDK sends anything."""
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], usage_metadata=CUSTOMER
    )
    return reply.choices[0].message.content or ""


def attempt(
    label: str, client: openai.OpenAI, api: FakeOpenAI, model: str
) -> Optional[enforcement.BudgetExceededError]:
    """One call; prints what happened and how many requests it sent, returns its refusal."""
    before = api.request_count
    refusal = None
    try:
        text = chat(client, model)
        print(f"  {label}: allowed -> {text!r}")
    except enforcement.BudgetExceededError as err:
        refusal = err
        print(f"  {label}: BLOCKED -> {err}")
        print(
            f"      rule={err.rule_name!r} id={err.rule_id} spent={err.current_value} "
            f"of {err.threshold}, resets {err.resets_at}"
        )
    sent = api.request_count - before
    print(f"      requests that reached the provider: {sent}")
    expect((refusal is None) == (sent == 1), "a blocked call sends nothing, an allowed one sends")
    return refusal


def main() -> None:
    clean_environment()
    with contextlib.ExitStack() as stack:
        rules = stack.enter_context(RulesServer(team_id="demo-team"))
        api = stack.enter_context(FakeOpenAI())
        cache = stack.enter_context(tempfile.TemporaryDirectory())
        cap = make_rule(
            1,
            "gpt-4o daily cap",
            threshold=500.0,
            current_value=120.0,
            filters=[make_filter("MODEL", "IS", "gpt-4o")],
            deny_message="Ask finance to raise the cap.",
        )
        shadow = make_rule(
            2,
            "mini trial cap",
            threshold=50.0,
            current_value=75.0,
            breached=True,
            shadow_mode=True,
            filters=[make_filter("MODEL", "IS", "gpt-4o-mini")],
        )
        rules.set_rules([cap, shadow])
        os.environ.update(
            rules.env(REVENIUM_CACHE_DIR=cache, REVENIUM_CB_POLL_INTERVAL_SECONDS="1")
        )
        enforcement.instrument("openai")  # or: import enforcement.auto
        engine = enforcement.default_engine()
        engine.add_listener(lambda d: print(f"      [event] {d.kind}: rule {d.rule_name!r}"))
        client = openai.OpenAI(base_url=api.base_url, api_key="sk-demo", max_retries=0)

        print("1. The cap is under its threshold")
        enforcement.check_enforcement(CUSTOMER)  # first call: starts the poller
        wait_for(lambda: engine.status().loaded, "the rules are loaded")
        expect(attempt("gpt-4o", client, api, "gpt-4o") is None, "under the cap: allowed")

        print("2. Spend crosses the cap on the control plane")
        rules.update_rule(1, breached=True, current_value=512.4)
        wait_for(lambda: engine.status().tripped_count == 1, "the poller picked up the breach")
        expect(attempt("gpt-4o", client, api, "gpt-4o"), "over the cap: blocked")

        print("3. A shadow-mode rule only reports")
        expect(attempt("gpt-4o-mini", client, api, "gpt-4o-mini") is None, "shadow: allowed")

        print("4. Incident bypass: REVENIUM_BYPASS=true")
        os.environ["REVENIUM_BYPASS"] = "true"
        expect(attempt("gpt-4o", client, api, "gpt-4o") is None, "bypassed: allowed")
        os.environ["REVENIUM_BYPASS"] = "false"

        print("5. Why? enforcement.explain()")
        explanation = enforcement.explain(CUSTOMER, model="gpt-4o", provider="openai")
        for verdict in explanation.rules:
            print(f"      {verdict.name!r}: {verdict.reason}")
        expect(explanation.blocked, "explain() names the verdict: blocked")
        enforcement.default_engine().close()  # before its cache directory is removed


if __name__ == "__main__":
    main()
