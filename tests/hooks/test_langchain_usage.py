"""What a LangChain run costs, read from langchain-core's own result and message objects."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, Generation, LLMResult

from enforcement._usage import Estimate, Usage
from enforcement.hooks.langchain import estimate, usage_of


def _chat(input_tokens: int, output_tokens: int, **details: int) -> ChatGeneration:
    message = AIMessage(
        content="hi",
        usage_metadata={
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "input_token_details": details,
        },
        response_metadata={"model_name": "gpt-4o-2024-08-06"},
    )
    return ChatGeneration(message=message)


def test_message_usage_metadata_with_cache_details() -> None:
    result = LLMResult(generations=[[_chat(10, 4, cache_read=6, cache_creation=2)]])
    assert usage_of(result) == Usage(10, 4, 6, 2, "gpt-4o-2024-08-06")


def test_a_batch_adds_its_prompts_and_candidates_are_counted_once() -> None:
    result = LLMResult(generations=[[_chat(10, 4), _chat(10, 4)], [_chat(5, 1)]])
    assert usage_of(result) == Usage(15, 5, model="gpt-4o-2024-08-06")


def test_llm_output_token_usage_when_no_message_carries_usage() -> None:
    result = LLMResult(
        generations=[[Generation(text="hi")]],
        llm_output={
            "token_usage": {
                "prompt_tokens": 12,
                "completion_tokens": 3,
                "prompt_tokens_details": {"cached_tokens": 8},
            },
            "model_name": "gpt-4o-mini",
        },
    )
    assert usage_of(result) == Usage(12, 3, cache_read_tokens=8, model="gpt-4o-mini")


def test_a_result_that_says_nothing_reads_as_none() -> None:
    assert usage_of(LLMResult(generations=[[Generation(text="hi")]])) is None
    assert usage_of(LLMResult(generations=[], llm_output={"token_usage": "junk"})) is None
    assert usage_of(None) is None


def test_estimate_from_chat_messages_and_the_output_limit() -> None:
    messages = [[SystemMessage("s" * 40), HumanMessage("h" * 80)]]
    assert estimate(messages, {"model": "gpt-4o", "max_tokens": 64}) == Estimate(30, 64)
    assert estimate(messages, {"max_output_tokens": 9}).max_output_tokens == 9
    assert estimate(messages, None) == Estimate(30, None)


def test_estimate_from_llm_prompts() -> None:
    assert estimate(["p" * 40, "q" * 40], {"num_predict": 5}) == Estimate(20, 5)
