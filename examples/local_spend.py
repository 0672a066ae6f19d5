"""Local spend: a runaway loop stopped by this host's own accounting, between polls.

    python examples/local_spend.py

The control plane's figures are up to a poll interval old, and a loop can
spend a lot in that time. With local accrual (on unless
``REVENIUM_CB_LOCAL_ACCRUAL=off``) each hooked call holds its worst-case
cost before it is sent and settles what it used when it completes, priced
from the price table (``REVENIUM_CB_PRICES_FILE`` overrides, in dollars per
million tokens). Once the server's figure plus what this host spent since
reaches the threshold, the next call is refused with ``source="local"``,
although the server still says "not breached".
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional

import openai
from _example import control_plane, expect, loaded_engine
from fake_openai import FakeOpenAI

import enforcement
from enforcement.testing import make_filter, make_rule

CAP = make_rule(
    1,
    "batch job cap",
    threshold=0.002,
    current_value=0.0,
    filters=[make_filter("MODEL", "IS", "gpt-4o")],
)
PRICES = {"gpt-4o": {"input": 2.50, "output": 10.00}}  # dollars per million tokens
LOOP = 200


def runaway(client: openai.OpenAI) -> tuple[int, Optional[enforcement.BudgetExceededError]]:
    """A loop with a bug: it never stops by itself. Returns the calls made and the refusal."""
    for made in range(LOOP):
        try:
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Again."}], max_tokens=16
            )
        except enforcement.BudgetExceededError as refusal:
            return made, refusal
    return LOOP, None


def run(prices: str, accrual: str) -> tuple[int, Optional[enforcement.BudgetExceededError]]:
    settings = {"REVENIUM_CB_PRICES_FILE": prices, "REVENIUM_CB_LOCAL_ACCRUAL": accrual}
    with control_plane([CAP], **settings), FakeOpenAI() as api:
        enforcement.instrument("openai")
        engine = loaded_engine()
        client = openai.OpenAI(base_url=api.base_url, api_key="sk-example", max_retries=0)
        made, refusal = runaway(client)
        print(f"  {made} calls reached the provider ({api.request_count} requests)")
        spend = engine.status().local_spend
        if spend is not None:
            print(f"  ledger scope: {spend['ledger']}; per rule: {spend['rules']}")
        return made, refusal


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        prices = os.path.join(folder, "prices.json")
        with open(prices, "w", encoding="utf-8") as handle:
            json.dump(PRICES, handle)

        print("Local accrual off: only the server's figures count")
        made, refusal = run(prices, "off")
        expect(refusal is None and made == LOOP, f"the loop ran all {LOOP} calls")

        print("Local accrual on (the default):")
        made, refusal = run(prices, "on")
        expect(refusal is not None and 0 < made < LOOP, "the loop was stopped")
        assert refusal is not None
        print(f"  {refusal}")
        expect(refusal.source == "local", "by local spend, source='local'")
        expect(enforcement.stats()["blocked_local"] == 1, "counted as blocked_local")


if __name__ == "__main__":
    main()
