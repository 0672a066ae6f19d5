"""LangChain, hooked: real langchain-core runs of fake models, counted where they would call out."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, Optional

import openai
import pytest
from langchain_core.callbacks.manager import AsyncCallbackManager, CallbackManager
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.language_models.llms import BaseLLM
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, GenerationChunk
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.hooks import _reentry
from enforcement.hooks._langchain_labels import run_facts
from enforcement.hooks.langchain import (
    INSTRUMENTOR,
    AsyncEnforcementCallbackHandler,
    EnforcementCallbackHandler,
)

from .conftest import breached_rule
from .fake_openai import FakeOpenAI

ACME = {"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}
NOT_ACME = {"dimension": "ORGANIZATION", "operator": "IS_NOT", "value": "acme"}
ACME_RUN: RunnableConfig = {"metadata": {"usage_metadata": {"organizationName": "acme"}}}
WAYS = ["invoke", "stream", "ainvoke", "astream"]


class CountingChat(FakeListChatModel):
    """A fake chat model that counts how often it would have called its vendor."""

    model_name: str = "gpt-4o"
    provider: str = "openai"
    calls: int = 0
    guarded: list[bool] = []  # noqa: RUF012 -- a pydantic field, copied per instance

    def _reached(self) -> None:
        self.calls += 1
        self.guarded.append(bool(_reentry.already_checked()))

    def _call(self, *args: Any, **kwargs: Any) -> str:
        self._reached()
        return super()._call(*args, **kwargs)

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self._reached()
        yield from super()._stream(*args, **kwargs)

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        self._reached()
        async for chunk in super()._astream(*args, **kwargs):
            yield chunk

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _get_ls_params(self, stop: Optional[list[str]] = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider
        return params


class CountingLLM(FakeListLLM):
    """A fake completion LLM that counts how often it would have called its vendor."""

    model_name: str = "gpt-4o"
    calls: int = 0
    guarded: list[bool] = []  # noqa: RUF012

    def _reached(self) -> None:
        self.calls += 1
        self.guarded.append(bool(_reentry.already_checked()))

    def _call(self, *args: Any, **kwargs: Any) -> str:
        self._reached()
        return super()._call(*args, **kwargs)

    async def _acall(self, *args: Any, **kwargs: Any) -> str:
        self._reached()
        return await super()._acall(*args, **kwargs)

    def _stream(self, prompt: str, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        self._reached()
        for piece in ("he", "llo"):
            if run_manager is not None:
                run_manager.on_llm_new_token(piece)
            yield GenerationChunk(text=piece)

    async def _astream(
        self, prompt: str, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        self._reached()
        for piece in ("he", "llo"):
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece)
            yield GenerationChunk(text=piece)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}


async def _collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [chunk async for chunk in stream]


def call(model: Any, way: str, config: Optional[RunnableConfig] = None, **kwargs: Any) -> Any:
    """Run ``model`` the way a user would: sync or async, whole or streamed."""
    if way == "invoke":
        return model.invoke("hi", config, **kwargs)
    if way == "stream":
        return list(model.stream("hi", config, **kwargs))
    if way == "ainvoke":
        return asyncio.run(model.ainvoke("hi", config, **kwargs))
    return asyncio.run(_collect(model.astream("hi", config, **kwargs)))


@pytest.fixture(params=["chat", "llm"])
def model(request: pytest.FixtureRequest) -> Any:
    if request.param == "chat":
        return CountingChat(responses=["hello"])
    return CountingLLM(responses=["hello"])


@pytest.fixture
def hooked(engine: Engine) -> Engine:
    enforcement.instrument("langchain", engine=engine)
    return engine


def blocked(engine: Engine) -> int:
    return engine.status().counters["blocked"]


@pytest.mark.parametrize("way", WAYS)
def test_allowed_runs_return_langchains_own_results(hooked: Engine, model: Any, way: str) -> None:
    result = call(model, way)
    assert model.calls == 1
    assert model.guarded == [True]  # the vendor SDK's own hook would pass straight through
    chat = isinstance(model, CountingChat)
    if way in ("invoke", "ainvoke"):
        assert isinstance(result, AIMessage) if chat else result == "hello"
    else:
        assert all(isinstance(c, AIMessageChunk) if chat else isinstance(c, str) for c in result)
        assert "".join(c.content if chat else c for c in result) == "hello"
    assert not _reentry.already_checked()  # nothing left behind in the caller's context


@pytest.mark.parametrize("way", WAYS)
def test_breached_rule_blocks_before_the_model_runs(hooked: Engine, model: Any, way: str) -> None:
    hooked.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError) as caught:
        call(model, way)
    assert type(caught.value) is BudgetExceededError
    assert caught.value.rule_name == "cap-1"
    assert model.calls == 0
    assert blocked(hooked) == 1
    assert not _reentry.already_checked()


@pytest.mark.parametrize("way", WAYS)
def test_bypass_lets_the_run_through(
    hooked: Engine, hook_env: dict[str, str], model: Any, way: str
) -> None:
    hooked.load_payload([breached_rule()])
    hook_env["REVENIUM_BYPASS"] = "true"
    call(model, way)
    assert model.calls == 1


@pytest.mark.parametrize("way", WAYS)
def test_model_filter_sees_the_runs_model(hooked: Engine, model: Any, way: str) -> None:
    hooked.load_payload([breached_rule(model="claude-3-opus")])
    call(model, way)
    assert model.calls == 1
    hooked.load_payload([breached_rule(model="gpt-4o")])
    with pytest.raises(BudgetExceededError):
        call(model, way)
    assert model.calls == 1


@pytest.mark.parametrize("way", ["invoke", "astream"])
def test_provider_filter_sees_the_runs_provider(hooked: Engine, way: str) -> None:
    chat = CountingChat(responses=["hello"])
    hooked.load_payload([breached_rule(provider="ANTHROPIC")])
    call(chat, way)
    hooked.load_payload([breached_rule(provider="OPENAI")])
    with pytest.raises(BudgetExceededError):
        call(chat, way)
    gemini = CountingChat(responses=["hello"], provider="google_genai", model_name="gemini-2.0")
    hooked.load_payload([breached_rule(provider="GOOGLE", model="gemini-2.0")])
    with pytest.raises(BudgetExceededError):
        call(gemini, way)
    assert (chat.calls, gemini.calls) == (1, 0)


def test_per_call_model_override_is_the_model_checked(hooked: Engine) -> None:
    chat = CountingChat(responses=["hello"])
    hooked.load_payload([breached_rule(model="gpt-4o-mini")])
    chat.invoke("hi")
    with pytest.raises(BudgetExceededError):
        chat.invoke("hi", model="gpt-4o-mini")
    assert chat.calls == 1


@pytest.mark.parametrize("way", WAYS)
def test_usage_metadata_from_the_run_and_from_scopes(hooked: Engine, model: Any, way: str) -> None:
    hooked.load_payload([breached_rule(filters=[ACME])])
    call(model, way)
    call(model, way, {"metadata": {"usage_metadata": {"organizationName": "globex"}}})
    assert model.calls == 2
    with pytest.raises(BudgetExceededError):
        call(model, way, ACME_RUN)
    with enforcement.usage_metadata(organizationName="acme"), pytest.raises(BudgetExceededError):
        call(model, way)
    # The run's own metadata wins over the enclosing scope, field by field.
    with enforcement.usage_metadata(organizationName="acme"):
        call(model, way, {"metadata": {"usage_metadata": {"organization_name": "globex"}}})
    assert model.calls == 3
    assert blocked(hooked) == 2


def test_usage_metadata_of_a_chain_reaches_its_model(hooked: Engine) -> None:
    chat = CountingChat(responses=["hello"])
    chain = ChatPromptTemplate.from_messages([("user", "{question}")]) | chat
    hooked.load_payload([breached_rule(filters=[ACME])])
    assert isinstance(chain.invoke({"question": "hi"}), AIMessage)
    with pytest.raises(BudgetExceededError):
        chain.invoke({"question": "hi"}, ACME_RUN)
    with pytest.raises(BudgetExceededError):
        asyncio.run(chain.ainvoke({"question": "hi"}, ACME_RUN))
    assert chat.calls == 1
    assert blocked(hooked) == 2  # one check per run, though two managers carry the handler


def test_usage_metadata_keyword_and_handler_metadata(engine: Engine) -> None:
    chat = CountingChat(responses=["hello"])
    engine.load_payload([breached_rule(filters=[ACME])])
    with pytest.raises(BudgetExceededError):
        chat.invoke(
            "hi",
            {"callbacks": [EnforcementCallbackHandler(engine=engine)]},
            usage_metadata={"organizationName": "acme"},
        )
    acme = EnforcementCallbackHandler({"organizationName": "acme"}, engine=engine)
    with pytest.raises(BudgetExceededError):
        chat.invoke("hi", {"callbacks": [acme]})
    # The run's metadata overrides the handler's.
    globex = {"usage_metadata": {"organizationName": "globex"}}
    chat.invoke("hi", {"callbacks": [acme], "metadata": globex})
    assert chat.calls == 1


@pytest.mark.parametrize("way", WAYS)
def test_explicit_handler_without_instrument(engine: Engine, model: Any, way: str) -> None:
    handlers: list[Any] = [EnforcementCallbackHandler(engine=engine)]
    if way.startswith("a"):  # an async handler only sees async runs
        handlers.append(AsyncEnforcementCallbackHandler(engine=engine))
    engine.load_payload([breached_rule(model="gpt-4o")])
    for handler in handlers:
        with pytest.raises(BudgetExceededError):
            call(model, way, {"callbacks": [handler]})
    assert model.calls == 0
    engine.load_payload([])
    for handler in handlers:
        call(model, way, {"callbacks": [handler]})
    assert model.calls == len(handlers)


@pytest.mark.parametrize("way", WAYS)
def test_explicit_handler_and_instrument_check_once(hooked: Engine, model: Any, way: str) -> None:
    hooked.load_payload([breached_rule()])
    for handler in (EnforcementCallbackHandler(), AsyncEnforcementCallbackHandler()):
        with pytest.raises(BudgetExceededError):
            call(model, way, {"callbacks": [handler]})
    assert blocked(hooked) == 2
    assert model.calls == 0


def test_instrument_picks_the_handler_flavour_per_manager(hooked: Engine) -> None:
    sync_manager = CallbackManager.configure()
    async_manager = AsyncCallbackManager.configure()
    assert [type(h) for h in sync_manager.handlers] == [EnforcementCallbackHandler]
    assert [type(h) for h in async_manager.handlers] == [AsyncEnforcementCallbackHandler]
    # An async handler inherited by a sync run would be ignored: the sync twin replaces it.
    mine = AsyncEnforcementCallbackHandler({"organizationName": "acme"})
    twin = CallbackManager.configure([mine]).handlers
    assert [type(h) for h in twin] == [EnforcementCallbackHandler]
    assert getattr(twin[0], "usage_metadata", None) == {"organizationName": "acme"}
    hooked.load_payload([breached_rule(filters=[ACME])])
    chat = CountingChat(responses=["hello"])
    with pytest.raises(BudgetExceededError):
        chat.invoke("hi", {"callbacks": [mine]})
    assert chat.calls == 0


def test_batches_check_every_prompt_and_guard_each_request(hooked: Engine) -> None:
    chat, llm = CountingChat(responses=["hello"]), CountingLLM(responses=["hello"])
    assert len(chat.generate([[HumanMessage("a")], [HumanMessage("b")]]).generations) == 2
    assert len(llm.generate(["a", "b"]).generations) == 2
    assert len(asyncio.run(llm.agenerate(["a", "b"])).generations) == 2
    assert len(chat.batch(["a", "b"])) == 2
    assert len(asyncio.run(chat.abatch(["a", "b"]))) == 2
    assert chat.guarded == [True] * 6
    assert llm.guarded == [True] * 4
    assert not _reentry.already_checked()
    hooked.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):
        llm.generate(["a", "b"])
    with pytest.raises(BudgetExceededError):
        asyncio.run(llm.agenerate(["a", "b"]))
    with pytest.raises(BudgetExceededError):
        chat.batch(["a", "b"])
    assert (chat.calls, llm.calls) == (6, 4)


# -- the vendor SDK under the model is hooked too -----------------------------


class ChatViaOpenAI(BaseChatModel):
    """A chat model that calls the real openai SDK, as langchain-openai does."""

    base_url: str
    model_name: str = "gpt-4o"

    @property
    def _llm_type(self) -> str:
        return "via-openai"

    def _get_ls_params(self, stop: Optional[list[str]] = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "openai"
        return params

    def _request(self) -> dict[str, Any]:
        return {"model": self.model_name, "messages": [{"role": "user", "content": "hi"}]}

    def _client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key="sk-test", max_retries=0)

    def _aclient(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key="sk-test", max_retries=0)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        with self._client() as client:
            completion = client.chat.completions.create(**self._request())
        text = completion.choices[0].message.content or ""
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        async with self._aclient() as client:
            completion = await client.chat.completions.create(**self._request())
        text = completion.choices[0].message.content or ""
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        with self._client() as client:
            stream = client.chat.completions.create(**self._request(), stream=True)
            with stream:
                for chunk in stream:
                    text = chunk.choices[0].delta.content or ""
                    yield ChatGenerationChunk(message=AIMessageChunk(content=text))

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        async with self._aclient() as client:
            stream = await client.chat.completions.create(**self._request(), stream=True)
            async with stream:
                async for chunk in stream:
                    text = chunk.choices[0].delta.content or ""
                    yield ChatGenerationChunk(message=AIMessageChunk(content=text))


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


@pytest.fixture
def direct(api: FakeOpenAI) -> Iterator[openai.OpenAI]:
    """A plain openai client, called outside any LangChain run."""
    with openai.OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.mark.parametrize("way", WAYS)
def test_vendor_sdk_under_the_run_is_not_checked_again(
    engine: Engine, api: FakeOpenAI, direct: openai.OpenAI, way: str
) -> None:
    """The openai hook would refuse what the handler allowed: it lacks the run's metadata."""
    enforcement.instrument("langchain", "openai", engine=engine)
    engine.load_payload([breached_rule(filters=[NOT_ACME])])
    chat = ChatViaOpenAI(base_url=api.base_url)
    result = call(chat, way, ACME_RUN)
    text = "".join(c.content for c in result) if isinstance(result, list) else result.content
    assert text == "hi"
    assert api.count == 1
    with pytest.raises(BudgetExceededError):
        call(chat, way)  # refused by the handler, once
    assert (api.count, blocked(engine)) == (1, 1)
    # Once the run is over, a direct call in the same context is checked again.
    with pytest.raises(BudgetExceededError):
        direct.chat.completions.create(**chat._request())
    assert api.count == 1


def test_a_streams_consumer_is_outside_the_guard(
    engine: Engine, api: FakeOpenAI, direct: openai.OpenAI
) -> None:
    enforcement.instrument("langchain", "openai", engine=engine)
    engine.load_payload([breached_rule(filters=[NOT_ACME])])
    chat = ChatViaOpenAI(base_url=api.base_url)
    for _ in chat.stream("hi", ACME_RUN):
        assert not _reentry.already_checked()
        with pytest.raises(BudgetExceededError):
            direct.chat.completions.create(**chat._request())
    assert api.count == 1


# -- instrumenting ---------------------------------------------------------------


PATCHED = [
    (CallbackManager, "configure"),
    (AsyncCallbackManager, "configure"),
    (BaseLLM, "_agenerate_helper"),
]


def test_uninstrument_restores_the_original_functions(engine: Engine) -> None:
    originals = {(owner, name): owner.__dict__[name] for owner, name in PATCHED}
    enforcement.instrument("langchain", engine=engine)
    enforcement.instrument("langchain", engine=engine)
    for (owner, attribute), original in originals.items():
        wrapper = owner.__dict__[attribute]
        assert wrapper is not original
        assert wrapper.__wrapped__ is original  # wrapped once, not twice
    enforcement.uninstrument("langchain")
    for (owner, attribute), original in originals.items():
        assert owner.__dict__[attribute] is original
    assert CallbackManager.configure().handlers == []
    enforcement.instrument("langchain", engine=engine)
    assert INSTRUMENTOR.patched


def test_instrumenting_twice_checks_once(engine: Engine) -> None:
    enforcement.instrument("langchain", engine=engine)
    enforcement.instrument("langchain", engine=engine)
    engine.load_payload([breached_rule()])
    chat = CountingChat(responses=["hello"])
    with pytest.raises(BudgetExceededError):
        chat.invoke("hi")
    assert blocked(engine) == 1
    assert len(CallbackManager.configure().handlers) == 1


def test_model_errors_pass_through_unchanged(hooked: Engine) -> None:
    class Broken(CountingChat):
        def _call(self, *args: Any, **kwargs: Any) -> str:
            raise KeyError("vendor down")

    with pytest.raises(KeyError, match="vendor down"):
        Broken(responses=["x"]).invoke("hi")
    assert not _reentry.already_checked()


@pytest.mark.parametrize(
    ("serialized", "metadata", "params", "expected"),
    [
        (None, None, None, ("OPENAI", None, None)),
        ({"id": "x"}, [], 3, ("OPENAI", None, None)),
        ({"id": ["langchain", "ChatAnthropic"]}, {}, {"model": 7}, ("ANTHROPIC", None, None)),
        ({}, {"ls_provider": "OpenAI", "ls_model_name": "gpt-4o"}, {}, ("OPENAI", None, None)),
        (
            {},
            {"ls_provider": "azure", "usage_metadata": "junk"},
            {"model": "gpt-4o", "deployment_name": "my-deploy"},
            ("Azure", "gpt-4o", None),
        ),
        ({}, {"ls_provider": "amazon_bedrock"}, {"model_id": "m"}, ("AWS", None, None)),
        ({}, {"ls_provider": "mistral"}, {"model_name": "m"}, ("MISTRAL", "m", None)),
        ({}, {}, {"model": "m", "model_name": "n"}, ("OPENAI", "m", None)),
    ],
)
def test_reading_a_run_never_raises(
    serialized: Any, metadata: Any, params: Any, expected: tuple[Any, ...]
) -> None:
    assert run_facts(serialized, metadata, params, None) == expected


def _served(base_url: str) -> dict[str, Any]:
    return {
        "id": ["langchain", "chat_models", "ChatOpenAI"],
        "kwargs": {"openai_api_base": base_url},
    }


@pytest.mark.parametrize(
    ("serialized", "metadata", "params", "chat", "text"),
    [
        # The reference's callback labels, read from ls_provider; any other is OPENAI.
        ({}, {"ls_provider": "anthropic"}, {}, "ANTHROPIC", "ANTHROPIC"),
        ({}, {"ls_provider": "anthropicvertex"}, {}, "ANTHROPIC", "ANTHROPIC"),
        ({}, {"ls_provider": "anthropic-bedrock"}, {}, "AWS", "AWS"),
        ({}, {"ls_provider": "amazon_bedrock"}, {}, "AWS", "AWS"),
        ({}, {"ls_provider": "google_genai"}, {}, "Google", "Google"),
        ({}, {"ls_provider": "google_vertexai"}, {}, "Google", "Google"),
        ({}, {"ls_provider": "ollama"}, {}, "OLLAMA", "OLLAMA"),
        ({}, {"ls_provider": "litellm"}, {}, "LITELLM", "LITELLM"),
        ({}, {"ls_provider": "perplexity"}, {}, "PERPLEXITY", "PERPLEXITY"),
        ({}, {"ls_provider": "cohere"}, {}, "COHERE", "COHERE"),
        ({}, {"ls_provider": "huggingface"}, {}, "HUGGINGFACE", "HUGGINGFACE"),
        ({}, {"ls_provider": "groq"}, {}, "OPENAI", "OPENAI"),
        ({}, {"ls_provider": "anthropic-mantle"}, {}, "OPENAI", "OPENAI"),
        # No ls_provider: a marker in the run's type or class name, azure first.
        ({"id": ["x", "AzureChatOpenAI"]}, {}, {}, "Azure", "Azure"),
        ({}, {}, {"_type": "chat-ollama"}, "OLLAMA", "OLLAMA"),
        ({"id": ["x", "ChatGoogleGenerativeAI"]}, {}, {}, "OPENAI", "OPENAI"),
        # Chat models on the openai SDK: the reference's openai hook labels them by client.
        ({}, {"ls_provider": "xai"}, {}, "XAI", "OPENAI"),
        (_served("https://api.x.ai/v1"), {"ls_provider": "openai"}, {}, "XAI", "OPENAI"),
        (_served("http://localhost:11434/v1"), {"ls_provider": "openai"}, {}, "OLLAMA", "OPENAI"),
        (
            _served("https://api.perplexity.ai"),
            {"ls_provider": "openai"},
            {},
            "PERPLEXITY",
            "PERPLEXITY",
        ),
        (_served("https://api.x.ai/v1"), {"ls_provider": "azure"}, {}, "Azure", "Azure"),
        (_served("https://api.deepseek.com"), {"ls_provider": "deepseek"}, {}, "OPENAI", "OPENAI"),
        (
            _served("https://api.x.ai/v1"),
            {"ls_provider": "openai", "ls_model_type": "llm"},
            {},
            "OPENAI",
            "OPENAI",
        ),
    ],
)
def test_runs_are_labelled_as_the_reference_labels_them(
    serialized: Any, metadata: Any, params: Any, chat: str, text: str
) -> None:
    assert run_facts(serialized, metadata, params, None, chat=True)[0] == chat
    assert run_facts(serialized, metadata, params, None, chat=False)[0] == text


@pytest.mark.parametrize(
    ("ls_provider", "label", "other"),
    [
        ("google_vertexai", "Google", "vertex"),  # "vertex" and "bedrock": our labels before
        ("amazon_bedrock", "AWS", "bedrock"),
        ("xai", "XAI", "OPENAI"),
    ],
)
@pytest.mark.parametrize("way", ["invoke", "astream"])
def test_a_rule_on_the_reference_label_stops_the_run(
    hooked: Engine, ls_provider: str, label: str, other: str, way: str
) -> None:
    chat = CountingChat(responses=["hello"], provider=ls_provider)
    hooked.load_payload([breached_rule(provider=other)])
    call(chat, way)
    hooked.load_payload([breached_rule(provider=label)])
    with pytest.raises(BudgetExceededError):
        call(chat, way)
    assert chat.calls == 1


class _Explosive(dict):  # type: ignore[type-arg]
    def get(self, *args: Any) -> Any:
        raise RuntimeError("odd mapping")


def test_odd_metadata_falls_back_to_no_model() -> None:
    assert run_facts({}, _Explosive(), {}, {"a": 1}) == (None, None, {"a": 1})


def test_importing_the_hooks_never_imports_langchain() -> None:
    script = (
        "import sys, enforcement, enforcement.hooks.langchain as hook\n"
        "enforcement.instrument('langchain')\n"
        "assert 'langchain_core' not in sys.modules\n"
        "from langchain_core.callbacks.manager import CallbackManager\n"
        "assert hook.INSTRUMENTOR.patched\n"
        "assert 'langchain_core.language_models.llms' not in sys.modules\n"
        "assert type(CallbackManager.configure().handlers[0]).__name__ "
        "== 'EnforcementCallbackHandler'\n"
        "from langchain_core.language_models.llms import BaseLLM\n"
        "assert hasattr(BaseLLM.__dict__['_agenerate_helper'], '__wrapped__')\n"
    )
    env = {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "false", "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
