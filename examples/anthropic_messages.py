"""The anthropic SDK: ``messages.create`` and ``messages.stream`` refused before sending.

    python examples/anthropic_messages.py

A rule on one Claude model for the "research" product is breached. Its
calls (plain and streamed) raise BudgetExceededError with nothing sent; the
same model for another product, and another model, go through.
"""

from __future__ import annotations

import anthropic
from _example import attempt, control_plane, expect, loaded_engine
from fake_anthropic import FakeAnthropic

import enforcement
from enforcement.testing import make_filter, make_rule

CAPPED = "claude-sonnet-4-5"
CAP = make_rule(
    1,
    "research sonnet cap",
    breached=True,
    threshold=300.0,
    current_value=301.0,
    filters=[make_filter("MODEL", "IS", CAPPED), make_filter("PRODUCT", "IS", "research")],
)
HELLO = [{"role": "user", "content": "Say hello."}]


def main() -> None:
    with control_plane([CAP]), FakeAnthropic() as api:
        enforcement.instrument("anthropic")
        loaded_engine()
        client = anthropic.Anthropic(base_url=api.base_url, api_key="sk-ant-example", max_retries=0)

        def create(model: str, product: str) -> object:
            with enforcement.usage_metadata(productName=product):
                return client.messages.create(model=model, max_tokens=64, messages=HELLO)

        def stream(model: str, product: str) -> None:
            scope = enforcement.usage_metadata(productName=product)
            with (
                scope,
                client.messages.stream(model=model, max_tokens=64, messages=HELLO) as events,
            ):
                print(f"    streamed: {events.get_final_text()!r}")

        print("The research product on the capped model:")
        expect(attempt("messages.create", lambda: create(CAPPED, "research")), "create refused")
        expect(attempt("messages.stream", lambda: stream(CAPPED, "research")), "stream refused")
        expect(api.request_count == 0, "the provider received nothing")

        print("Another product, and another model:")
        expect(attempt("support, create", lambda: create(CAPPED, "support")) is None, "allowed")
        expect(attempt("support, stream", lambda: stream(CAPPED, "support")) is None, "allowed")
        haiku = "claude-haiku-4-5"
        expect(attempt("research, haiku", lambda: create(haiku, "research")) is None, "allowed")
        expect(api.request_count == 3, "the three allowed calls reached the provider")


if __name__ == "__main__":
    main()
