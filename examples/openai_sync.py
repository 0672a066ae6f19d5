"""The openai SDK, synchronous: a breached cap refuses the call before a byte is sent.

    python examples/openai_sync.py

A rule "acme gpt-4o cap" (model gpt-4o, organization acme) is over its
threshold on the control plane. Acme's gpt-4o call raises BudgetExceededError
and the provider sees no request; Acme's gpt-4o-mini call and another
organization's gpt-4o call go through. The caller is named per call
(``usage_metadata=``, stripped before sending) or for a block of code
(``with enforcement.usage_metadata(...)``).
"""

from __future__ import annotations

import openai
from _example import attempt, control_plane, expect, loaded_engine
from fake_openai import FakeOpenAI

import enforcement
from enforcement.testing import make_filter, make_rule

CAP = make_rule(
    1,
    "acme gpt-4o cap",
    breached=True,
    threshold=500.0,
    current_value=512.4,
    filters=[make_filter("MODEL", "IS", "gpt-4o"), make_filter("ORGANIZATION", "IS", "acme")],
    deny_message="Ask finance to raise the cap.",
)


def main() -> None:
    with control_plane([CAP]), FakeOpenAI() as api:
        enforcement.instrument("openai")
        loaded_engine()
        client = openai.OpenAI(base_url=api.base_url, api_key="sk-example", max_retries=0)

        def chat(model: str, **extra: object) -> object:
            messages = [{"role": "user", "content": "Say hello."}]
            return client.chat.completions.create(model=model, messages=messages, **extra)

        print("Acme on gpt-4o, named per call:")
        refusal = attempt(
            "gpt-4o", lambda: chat("gpt-4o", usage_metadata={"organizationName": "acme"})
        )
        expect(refusal is not None and refusal.rule_name == "acme gpt-4o cap", "the cap refuses it")
        expect(api.request_count == 0, "the provider received nothing")
        assert refusal is not None
        print(f"  rule_id={refusal.rule_id} current={refusal.current_value} of {refusal.threshold}")

        print("Acme, named for a block of code:")
        with enforcement.usage_metadata(organizationName="acme"):
            expect(attempt("gpt-4o", lambda: chat("gpt-4o")) is not None, "gpt-4o is refused")
            expect(attempt("gpt-4o-mini", lambda: chat("gpt-4o-mini")) is None, "mini is not")
        expect(api.request_count == 1, "only the allowed call reached the provider")

        print("Another organization on gpt-4o:")
        globex = {"organizationName": "globex"}
        expect(attempt("gpt-4o", lambda: chat("gpt-4o", usage_metadata=globex)) is None, "allowed")
        sent = api.requests[-1]["body"]
        expect("usage_metadata" not in sent, "usage_metadata was stripped before sending")


if __name__ == "__main__":
    main()
