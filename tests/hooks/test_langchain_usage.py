"""What a LangChain run costs, and how a run settles it through the engine.

Real langchain-core runs of fake models (and of one over the real openai SDK
against the local fake server). The engine is a :class:`RecordingEngine`
that holds money for every run, so each test reads what the handler began
and settled; the batch test uses a real engine with local spend.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any, Optional

import pytest
from langchain_core.language_models import LangSmithParams
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.llms import BaseLLM
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import (
    ChatGeneration,
    ChatGenerationChunk,
    ChatResult,
    Generation,
    LLMResult,
)

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement._prices import PriceTable
from enforcement._usage import Estimate, Usage
from enforcement.hooks._langchain_runs import Run, Runs
from enforcement.hooks._reentry import Hold, already_checked
from enforcement.hooks.langchain import estimate, usage_of
from enforcement.testing import make_rule

from .conftest import RecordedSpend, RecordingEngine, breached_rule
from .fake_openai import FakeOpenAI
from .test_langchain import ChatViaOpenAI


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


# -- runs settle their spend through the engine ------------------------------------

REPORTED: UsageMetadata = {
    "input_tokens": 20,
    "output_tokens": 5,
    "total_tokens": 25,
    "input_token_details": {"cache_read": 8},
    "output_token_details": {},
}
SETTLED = Usage(20, 5, cache_read_tokens=8)
WAYS = ["invoke", "stream", "ainvoke", "astream"]


class MeteredChat(BaseChatModel):
    """A fake chat model whose replies report usage as vendors' do: on the message, or the
    last chunk of a stream."""

    model_name: str = "gpt-4o"
    max_tokens: int = 64
    failing: bool = False
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "metered"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: Optional[list[str]] = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "openai"
        return params

    def _reached(self) -> None:
        self.calls += 1
        if self.failing:
            raise KeyError("vendor down")

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self._reached()
        message = AIMessage(content="hello", usage_metadata=REPORTED)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunks(self) -> Iterator[ChatGenerationChunk]:
        self._reached()
        yield ChatGenerationChunk(message=AIMessageChunk(content="hel"))
        last = AIMessageChunk(content="lo", usage_metadata=REPORTED)
        yield ChatGenerationChunk(message=last)

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks()

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks():
            yield chunk


class MeteredLLM(BaseLLM):
    """A fake completion LLM reporting its batch's usage in ``llm_output``, as OpenAI's does."""

    model_name: str = "gpt-4o"

    @property
    def _llm_type(self) -> str:
        return "metered-llm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _generate(
        self, prompts: list[str], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> LLMResult:
        usage = {"prompt_tokens": 7 * len(prompts), "completion_tokens": 2 * len(prompts)}
        return LLMResult(
            generations=[[Generation(text="hello")] for _ in prompts],
            llm_output={"token_usage": usage, "model_name": self.model_name},
        )


async def _collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [chunk async for chunk in stream]


def run(model: Any, way: str) -> Any:
    """Run ``model`` the way a user would: sync or async, whole or streamed."""
    if way == "invoke":
        return model.invoke("hi")
    if way == "stream":
        return list(model.stream("hi"))
    if way == "ainvoke":
        return asyncio.run(model.ainvoke("hi"))
    return asyncio.run(_collect(model.astream("hi")))


@pytest.fixture
def holding(recording: RecordingEngine) -> RecordingEngine:
    """The recording engine, holding money for every run, LangChain hooked on it."""
    recording.holding = True
    enforcement.instrument("langchain", engine=recording)
    return recording


@pytest.mark.parametrize("way", WAYS)
def test_a_run_settles_once_with_the_usage_it_reports(holding: RecordingEngine, way: str) -> None:
    model = MeteredChat()
    run(model, way)
    assert model.calls == 1
    assert holding.begun == [("gpt-4o", "OPENAI")]
    assert holding.settled == [SETTLED]
    [held] = holding.estimates
    assert held == estimate([[HumanMessage("hi")]], {"max_tokens": 64})
    assert held.max_output_tokens == 64
    assert not already_checked()


@pytest.mark.parametrize("way", WAYS)
def test_a_failed_run_releases_its_hold(holding: RecordingEngine, way: str) -> None:
    with pytest.raises(KeyError, match="vendor down"):
        run(MeteredChat(failing=True), way)
    assert holding.settled == [None]


@pytest.mark.parametrize("way", WAYS)
def test_a_completion_llm_settles_from_llm_output(holding: RecordingEngine, way: str) -> None:
    assert "hello" in "".join(run(MeteredLLM(), way))
    assert holding.settled == [Usage(7, 2, model="gpt-4o")]


def test_a_batch_settles_each_run_and_counts_its_usage_once(holding: RecordingEngine) -> None:
    MeteredLLM().generate(["a", "b"])
    asyncio.run(MeteredLLM().agenerate(["a", "b"]))
    MeteredChat().generate([[HumanMessage("a")], [HumanMessage("b")]])
    # LangChain hands a batch's ``token_usage`` to its first run, an empty one to the others.
    batch = [Usage(14, 4, model="gpt-4o"), Usage(0, 0, model="gpt-4o")]
    assert holding.settled == [*batch, *batch, SETTLED, SETTLED]
    assert len(holding.begun) == 6


def test_a_stream_closed_early_releases_its_hold(holding: RecordingEngine) -> None:
    stream = MeteredChat().stream("hi")
    assert isinstance(stream, Generator)
    next(stream)
    assert holding.settled == []
    stream.close()
    assert holding.settled == [None]

    async def partly() -> None:
        astream = MeteredChat().astream("hi")
        assert isinstance(astream, AsyncGenerator)
        await astream.__anext__()
        await astream.aclose()

    asyncio.run(partly())
    assert holding.settled == [None, None]


def test_a_blocked_run_holds_and_settles_nothing(holding: RecordingEngine) -> None:
    holding.load_payload([breached_rule()])
    for way in WAYS:
        model = MeteredChat()
        with pytest.raises(BudgetExceededError):
            run(model, way)
        assert model.calls == 0
    assert holding.settled == []
    assert holding.estimates == []


def test_a_run_the_engine_holds_nothing_for_settles_nothing(recording: RecordingEngine) -> None:
    enforcement.instrument("langchain", engine=recording)
    for way in WAYS:
        run(MeteredChat(), way)
    assert len(recording.begun) == 4
    assert recording.settled == []


def test_the_run_table_releases_a_run_it_evicts() -> None:
    settled: list[Optional[Usage]] = []
    runs = Runs(limit=1)
    first, second = Hold(), Hold()
    runs.start("a", Run(first, RecordedSpend(settled), None))
    runs.start("b", Run(second, RecordedSpend(settled), None))
    assert settled == [None] and not first and second
    runs.finish("a", None)  # evicted already: settled once, not twice
    runs.finish("b", LLMResult(generations=[[_chat(3, 1)]]))
    assert settled == [None, Usage(3, 1, model="gpt-4o-2024-08-06")]
    assert not second


# -- a run over the real openai SDK, the openai hook installed too ----------------


class MeteredViaOpenAI(ChatViaOpenAI):
    """:class:`ChatViaOpenAI`, its reply carrying the usage the API reported, as
    langchain-openai's does."""

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        with self._client() as client:
            completion = client.chat.completions.create(**self._request())
        return _reply(completion)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        async with self._aclient() as client:
            completion = await client.chat.completions.create(**self._request())
        return _reply(completion)


def _reply(completion: Any) -> ChatResult:
    usage = completion.usage
    reported: UsageMetadata = {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "input_token_details": {"cache_read": usage.prompt_tokens_details.cached_tokens},
        "output_token_details": {},
    }
    message = AIMessage(content=completion.choices[0].message.content, usage_metadata=reported)
    return ChatResult(generations=[ChatGeneration(message=message)])


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


@pytest.mark.parametrize("way", ["invoke", "ainvoke"])
def test_the_run_settles_and_the_sdk_hook_under_it_does_not(
    recording: RecordingEngine, api: FakeOpenAI, way: str
) -> None:
    recording.holding = True
    enforcement.instrument("langchain", "openai", engine=recording)
    chat = MeteredViaOpenAI(base_url=api.base_url)
    assert run(chat, way).content == "hi"
    assert api.count == 1
    assert recording.begun == [("gpt-4o", "OPENAI")]  # the openai hook passed it through
    assert recording.settled == [Usage(12, 5, cache_read_tokens=4)]


@pytest.mark.parametrize("way", WAYS)
def test_a_blocked_run_sends_nothing(recording: RecordingEngine, api: FakeOpenAI, way: str) -> None:
    recording.holding = True
    enforcement.instrument("langchain", "openai", engine=recording)
    recording.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):
        run(MeteredViaOpenAI(base_url=api.base_url), way)
    assert api.count == 0
    assert recording.settled == []


# -- local spend, end to end ------------------------------------------------------

MINI = "gpt-4o-mini"
PRICES = {MINI: {"input": 0.15, "output": 0.60}}  # dollars per million tokens


@pytest.fixture
def dollar_cap(hook_env: dict[str, str]) -> Iterator[Engine]:
    """A real engine with local spend: a $1.00 cap; one run of ``MINI`` may hold $0.60."""
    built = Engine(environ=hook_env, prices=PriceTable(overrides=PRICES, use_table=False))
    built.load_payload([make_rule(1, "dollar cap", threshold=1.0, current_value=0.0)])
    enforcement.instrument("langchain", engine=built)
    try:
        yield built
    finally:
        enforcement.uninstrument()
        built.close()


def _holds_open(engine: Engine) -> int:
    described = engine.status().local_spend
    assert described is not None
    return int(described["holds_open"])


def test_a_refused_prompt_of_a_batch_releases_the_prompts_before_it(dollar_cap: Engine) -> None:
    chat = MeteredChat(model_name=MINI, max_tokens=1_000_000)  # $0.60 held per run
    with pytest.raises(BudgetExceededError) as refused:
        chat.generate([[HumanMessage("a")], [HumanMessage("b")]])
    assert refused.value.source == "local"
    with pytest.raises(BudgetExceededError):
        asyncio.run(chat.agenerate([[HumanMessage("a")], [HumanMessage("b")]]))
    assert chat.calls == 0
    assert _holds_open(dollar_cap) == 0
    chat.invoke("a")  # the first prompt's hold was given back, so one run fits again
    assert chat.calls == 1
    assert _holds_open(dollar_cap) == 0
