"""The openai SDK, asynchronous: concurrent calls, each judged on its own caller.

    python examples/openai_async.py

``AsyncOpenAI`` is hooked like the sync client. Three calls run at once
under ``asyncio.gather``; the one for the subscriber whose cap is breached
raises BudgetExceededError before it is sent, the others complete. The check
never waits on the network, so it never stalls the event loop.
"""

from __future__ import annotations

import asyncio

import openai
from _example import control_plane, expect, loaded_engine
from fake_openai import FakeOpenAI

import enforcement
from enforcement.testing import make_filter, make_rule

CAP = make_rule(
    1,
    "ana's daily cap",
    breached=True,
    threshold=20.0,
    current_value=21.5,
    filters=[make_filter("SUBSCRIBER", "IS", "ana@example.com")],
)
CALLERS = ["ana@example.com", "bob@example.com", "cy@example.com"]


async def chat(client: openai.AsyncOpenAI, email: str) -> str:
    with enforcement.usage_metadata(subscriber={"email": email}):
        reply = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Say hello."}]
        )
    return reply.choices[0].message.content or ""


async def run(api: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(base_url=api.base_url, api_key="sk-example", max_retries=0)
    results = await asyncio.gather(*(chat(client, e) for e in CALLERS), return_exceptions=True)
    for email, result in zip(CALLERS, results):
        print(f"  {email}: {'BLOCKED -> ' if isinstance(result, Exception) else ''}{result}")
    expect(isinstance(results[0], enforcement.BudgetExceededError), "ana is refused")
    expect(all(isinstance(r, str) for r in results[1:]), "bob and cy get their answers")
    expect(api.request_count == 2, "two requests reached the provider, none of ana's")
    await client.close()


def main() -> None:
    with control_plane([CAP]), FakeOpenAI() as api:
        enforcement.instrument("openai")
        loaded_engine()
        print("Three subscribers at once:")
        asyncio.run(run(api))


if __name__ == "__main__":
    main()
