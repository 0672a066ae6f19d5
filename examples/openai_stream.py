"""The openai SDK, streaming: a refused stream is never opened.

    python examples/openai_stream.py

The check runs before the SDK opens the stream, so a refused
``stream=True`` call raises BudgetExceededError at the call, not half-way
through the answer, and the provider sees nothing. An allowed stream reads
as usual (its ``include_usage`` chunk is what local spend would settle
when the stream ends).
"""

from __future__ import annotations

import openai
from _example import attempt, control_plane, expect, loaded_engine
from fake_openai import FakeOpenAI

import enforcement
from enforcement.testing import make_filter, make_rule

CAP = make_rule(
    1,
    "gpt-4o daily cap",
    breached=True,
    threshold=500.0,
    current_value=500.0,
    filters=[make_filter("MODEL", "IS", "gpt-4o")],
)


def main() -> None:
    with control_plane([CAP]), FakeOpenAI() as api:
        enforcement.instrument("openai")
        loaded_engine()
        client = openai.OpenAI(base_url=api.base_url, api_key="sk-example", max_retries=0)
        words: list[str] = []

        def stream(model: str) -> None:
            chunks = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Say hello."}],
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=64,
            )
            for chunk in chunks:
                words.extend(choice.delta.content or "" for choice in chunk.choices)

        print("A stream on the capped model:")
        expect(attempt("gpt-4o", lambda: stream("gpt-4o")) is not None, "refused at the call")
        expect(api.request_count == 0 and not words, "no stream was opened, nothing was read")

        print("A stream on another model:")
        expect(attempt("gpt-4o-mini", lambda: stream("gpt-4o-mini")) is None, "allowed")
        print(f"  streamed: {''.join(words)!r}")
        expect("".join(words) == "Hello from the fake API.", "the whole answer was read")
        counters = enforcement.stats()
        print(f"  enforcement.stats(): blocked={counters['blocked']}")
        expect(counters["blocked"] == 1, "one refusal counted")


if __name__ == "__main__":
    main()
