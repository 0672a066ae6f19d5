"""LiteLLM: ``litellm.completion`` and a ``Router``, checked once, before retries and fallbacks.

    python examples/litellm_completion.py

LiteLLM reports the model as routed (``openai/gpt-4o``); a rule on
``gpt-4o`` covers it. The call goes LiteLLM -> openai SDK -> the local fake
OpenAI API, and is checked once, by the outermost layer. A Router refuses
before its retries and fallbacks, so a refusal reaches the caller at once.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price map

import litellm
from _example import attempt, control_plane, expect, loaded_engine
from fake_openai import FakeOpenAI

import enforcement
from enforcement.testing import make_filter, make_rule

CAP = make_rule(
    1,
    "gpt-4o daily cap",
    breached=True,
    threshold=500.0,
    current_value=640.0,
    filters=[make_filter("MODEL", "IS", "gpt-4o")],
)
HELLO = [{"role": "user", "content": "Say hello."}]


def main() -> None:
    with control_plane([CAP]), FakeOpenAI() as api:
        enforcement.instrument()  # every installed SDK: litellm and the openai SDK under it
        engine = loaded_engine()
        reach = {"api_base": api.base_url, "api_key": "sk-example"}

        def complete(model: str) -> object:
            return litellm.completion(model=model, messages=HELLO, num_retries=0, **reach)

        print("litellm.completion:")
        expect(attempt("openai/gpt-4o", lambda: complete("openai/gpt-4o")), "refused")
        expect(api.request_count == 0, "nothing was sent")
        expect(
            attempt("openai/gpt-4o-mini", lambda: complete("openai/gpt-4o-mini")) is None,
            "mini goes through",
        )
        expect(engine.stats()["blocked"] == 1, "checked once per call: one refusal counted")

        print("A Router with retries and a fallback:")
        deployments = [
            {"model_name": "smart", "litellm_params": {"model": "openai/gpt-4o", **reach}},
            {"model_name": "cheap", "litellm_params": {"model": "openai/gpt-4o-mini", **reach}},
        ]
        router = litellm.Router(
            model_list=deployments, num_retries=3, fallbacks=[{"smart": ["cheap"]}]
        )
        before = api.request_count
        refusal = attempt("smart", lambda: router.completion(model="smart", messages=HELLO))
        expect(refusal is not None, "the Router passes the refusal on, unchanged")
        expect(api.request_count == before, "no retry and no fallback was sent")


if __name__ == "__main__":
    main()
