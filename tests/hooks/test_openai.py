"""The openai SDK, hooked, against a local fake OpenAI API."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, Callable

import openai
import pytest
from openai import AsyncOpenAI, AsyncStream, AzureOpenAI, OpenAI, Stream
from openai._base_client import AsyncAPIClient, SyncAPIClient
from openai.resources.chat.completions.completions import Completions

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.hooks import openai as hook

from .conftest import breached_rule
from .fake_openai import FakeOpenAI

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


@pytest.fixture
def client(api: FakeOpenAI) -> Iterator[OpenAI]:
    with OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0) as built:
        yield built


@pytest.fixture
async def aclient(api: FakeOpenAI) -> Any:
    async with AsyncOpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0) as built:
        yield built


def consume(result: Any) -> Any:
    if isinstance(result, Stream):
        for _ in result:
            pass
    return result


async def aconsume(result: Any) -> Any:
    if isinstance(result, AsyncStream):
        async for _ in result:
            pass
    return result


def chat_stream_manager(c: OpenAI, model: str, **kw: Any) -> Any:
    with c.chat.completions.stream(model=model, messages=MESSAGES, **kw) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion()


def responses_stream_manager(c: OpenAI, model: str, **kw: Any) -> Any:
    with c.responses.stream(model=model, input="hi", **kw) as stream:
        for _ in stream:
            pass
        return stream.get_final_response()


def raw_response(c: OpenAI, model: str, **kw: Any) -> Any:
    return c.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, **kw)


def streaming_response(c: OpenAI, model: str, **kw: Any) -> Any:
    with c.chat.completions.with_streaming_response.create(
        model=model, messages=MESSAGES, **kw
    ) as response:
        return response.parse()


SYNC_CASES: dict[str, Callable[..., Any]] = {
    "chat.create": lambda c, m, **kw: c.chat.completions.create(model=m, messages=MESSAGES, **kw),
    "chat.create(stream)": lambda c, m, **kw: consume(
        c.chat.completions.create(model=m, messages=MESSAGES, stream=True, **kw)
    ),
    "chat.parse": lambda c, m, **kw: c.chat.completions.parse(model=m, messages=MESSAGES, **kw),
    "chat.stream()": chat_stream_manager,
    "chat.with_raw_response": raw_response,
    "chat.with_streaming_response": streaming_response,
    "completions.create": lambda c, m, **kw: c.completions.create(model=m, prompt="hi", **kw),
    "embeddings.create": lambda c, m, **kw: c.embeddings.create(model=m, input="hi", **kw),
    "responses.create": lambda c, m, **kw: c.responses.create(model=m, input="hi", **kw),
    "responses.create(stream)": lambda c, m, **kw: consume(
        c.responses.create(model=m, input="hi", stream=True, **kw)
    ),
    "responses.stream()": responses_stream_manager,
    "images.generate": lambda c, m, **kw: c.images.generate(model=m, prompt="a cat", **kw),
    "audio.speech": lambda c, m, **kw: c.audio.speech.create(
        model=m, voice="alloy", input="hi", **kw
    ),
    "audio.transcriptions": lambda c, m, **kw: c.audio.transcriptions.create(
        model=m, file=("a.wav", io.BytesIO(b"RIFF0000WAVE")), **kw
    ),
    "batches.create": lambda c, m, **kw: c.batches.create(
        input_file_id="file-1", endpoint="/v1/chat/completions", completion_window="24h", **kw
    ),
}


async def achat_stream_manager(c: AsyncOpenAI, model: str, **kw: Any) -> Any:
    async with c.chat.completions.stream(model=model, messages=MESSAGES, **kw) as stream:
        async for _ in stream:
            pass
        return await stream.get_final_completion()


async def aresponses_stream_manager(c: AsyncOpenAI, model: str, **kw: Any) -> Any:
    async with c.responses.stream(model=model, input="hi", **kw) as stream:
        async for _ in stream:
            pass
        return await stream.get_final_response()


async def achat(c: AsyncOpenAI, model: str, **kw: Any) -> Any:
    return await c.chat.completions.create(model=model, messages=MESSAGES, **kw)


async def achat_streamed(c: AsyncOpenAI, model: str, **kw: Any) -> Any:
    return await aconsume(
        await c.chat.completions.create(model=model, messages=MESSAGES, stream=True, **kw)
    )


async def aresponses(c: AsyncOpenAI, model: str, **kw: Any) -> Any:
    return await c.responses.create(model=model, input="hi", **kw)


async def aembeddings(c: AsyncOpenAI, model: str, **kw: Any) -> Any:
    return await c.embeddings.create(model=model, input="hi", **kw)


ASYNC_CASES: dict[str, Callable[..., Any]] = {
    "chat.create": achat,
    "chat.create(stream)": achat_streamed,
    "chat.stream()": achat_stream_manager,
    "responses.create": aresponses,
    "responses.stream()": aresponses_stream_manager,
    "embeddings.create": aembeddings,
}


def model_for(case: str) -> str:
    if case.startswith("audio.speech"):
        return "tts-1"
    if case.startswith("audio."):
        return "whisper-1"
    if case.startswith("images"):
        return "dall-e-3"
    if case.startswith("embeddings"):
        return "text-embedding-3-small"
    return "gpt-4o"


@pytest.mark.parametrize("case", [c for c in SYNC_CASES if not c.startswith("batches")])
def test_sync_call_is_checked_before_it_is_sent(
    case: str, engine: Engine, client: OpenAI, api: FakeOpenAI, hook_env: dict[str, str]
) -> None:
    call, model = SYNC_CASES[case], model_for(case)
    enforcement.instrument("openai", engine=engine)
    assert call(client, model) is not None
    assert api.count == 1

    engine.load_payload([breached_rule(model="some-other-model")])
    call(client, model)
    assert api.count == 2

    engine.load_payload([breached_rule(model=model)])
    with pytest.raises(BudgetExceededError):
        call(client, model)
    assert api.count == 2

    engine.load_payload([breached_rule(provider="OPENAI")])
    with pytest.raises(BudgetExceededError):
        call(client, model)
    assert api.count == 2

    hook_env["REVENIUM_BYPASS"] = "true"
    call(client, model)
    assert api.count == 3


@pytest.mark.parametrize("case", list(ASYNC_CASES))
async def test_async_call_is_checked_before_it_is_sent(
    case: str, engine: Engine, aclient: AsyncOpenAI, api: FakeOpenAI
) -> None:
    call = ASYNC_CASES[case]
    enforcement.instrument("openai", engine=engine)
    assert await call(aclient, "gpt-4o") is not None
    assert api.count == 1
    engine.load_payload([breached_rule(model="gpt-4o")])
    with pytest.raises(BudgetExceededError):
        await call(aclient, "gpt-4o")
    assert api.count == 1
    engine.load_payload([breached_rule(model="gpt-4o-mini")])
    await call(aclient, "gpt-4o")
    assert api.count == 2


def test_allowed_calls_return_the_sdks_own_objects(
    engine: Engine, client: OpenAI, api: FakeOpenAI
) -> None:
    enforcement.instrument("openai", engine=engine)
    engine.load_payload([breached_rule(model="other")])
    completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert type(completion).__name__ == "ChatCompletion"
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert type(stream) is Stream
    with stream:
        assert [chunk.choices[0].delta.content for chunk in stream] == ["h", "i"]


@pytest.mark.parametrize(
    "case",
    [
        "chat.create",
        "chat.stream()",
        "responses.stream()",
        "embeddings.create",
        "chat.with_raw_response",
    ],
)
def test_usage_metadata_keyword_is_used_and_stripped(
    case: str, engine: Engine, client: OpenAI, api: FakeOpenAI
) -> None:
    enforcement.instrument("openai", engine=engine)
    call, model = SYNC_CASES[case], model_for(case)
    engine.load_payload(
        [breached_rule(filters=[{"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}])]
    )
    call(client, model, usage_metadata={"organizationName": "beta"})
    with pytest.raises(BudgetExceededError):
        call(client, model, usage_metadata={"organizationName": "acme"})
    with enforcement.usage_metadata(organizationName="acme"), pytest.raises(BudgetExceededError):
        call(client, model)
    with enforcement.usage_metadata(organizationName="acme"):
        call(client, model, usage_metadata={"organization_name": "beta"})  # the call wins
    assert api.count == 2
    for request in api.requests:
        assert "usage_metadata" not in request["body"]
        assert "x-enforcement-call-metadata" not in request["headers"]


def test_free_endpoints_are_not_checked(engine: Engine, client: OpenAI, api: FakeOpenAI) -> None:
    enforcement.instrument("openai", engine=engine)
    engine.load_payload([breached_rule()])
    client.moderations.create(input="hi")
    client.models.list()
    assert api.count == 2


def test_batches_are_checked_without_a_model(
    engine: Engine, client: OpenAI, api: FakeOpenAI
) -> None:
    enforcement.instrument("openai", engine=engine)
    engine.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):
        SYNC_CASES["batches.create"](client, "gpt-4o")
    assert api.count == 0


def test_azure_is_checked_as_azure_on_the_methods_model(
    engine: Engine, api: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    enforcement.instrument("openai", engine=engine)
    checks: list[tuple[Any, Any]] = []
    check = engine.check

    def spy(usage_metadata: Any = None, *, model: Any = None, provider: Any = None) -> None:
        checks.append((provider, model))
        check(usage_metadata, model=model, provider=provider)

    monkeypatch.setattr(engine, "check", spy)
    with AzureOpenAI(
        azure_endpoint=api.azure_endpoint,
        azure_deployment="prod-4o",
        api_key="k",
        api_version="2024-06-01",
        max_retries=0,
    ) as azure:
        assert hook.provider_label(azure) == "Azure"
        engine.load_payload([breached_rule(provider="Azure")])
        with pytest.raises(BudgetExceededError):
            azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert api.count == 0
        assert checks == [("Azure", "gpt-4o")]  # the reference checks kwargs["model"]
        engine.load_payload([breached_rule(provider="OPENAI")])
        azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert api.count == 1
        assert "/deployments/prod-4o/" in api.requests[0]["path"]


def test_uninstrument_restores_the_original_functions(engine: Engine) -> None:
    originals = (
        SyncAPIClient.__dict__["request"],
        AsyncAPIClient.__dict__["request"],
        Completions.__dict__["create"],
        Completions.__dict__["stream"],
    )
    enforcement.instrument("openai", engine=engine)
    enforcement.instrument("openai", engine=engine)
    assert SyncAPIClient.__dict__["request"] is not originals[0]
    enforcement.uninstrument()
    assert (
        SyncAPIClient.__dict__["request"],
        AsyncAPIClient.__dict__["request"],
        Completions.__dict__["create"],
        Completions.__dict__["stream"],
    ) == originals
    assert SyncAPIClient.__dict__["request"] is originals[0]


def test_instrumenting_twice_checks_once(engine: Engine, client: OpenAI) -> None:
    enforcement.instrument("openai", engine=engine)
    enforcement.instrument("openai")
    engine.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert engine.status().counters["blocked"] == 1


def test_sdk_errors_pass_through_unchanged(engine: Engine) -> None:
    enforcement.instrument("openai", engine=engine)
    with (
        OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0) as dead,
        pytest.raises(openai.APIConnectionError),
    ):
        dead.chat.completions.create(model="gpt-4o", messages=MESSAGES)


@pytest.mark.parametrize(
    ("base_url", "chat", "other"),
    [
        ("https://api.openai.com/v1", "OPENAI", "OPENAI"),
        ("https://api.x.ai/v1", "XAI", "XAI"),
        ("https://eu.api.x.ai/v1", "XAI", "XAI"),
        ("https://api.perplexity.ai", "PERPLEXITY", "OPENAI"),
        ("https://perplexity-proxy.example.com/v1", "PERPLEXITY", "OPENAI"),
        ("http://localhost:11434/v1", "OLLAMA", "OLLAMA"),
        ("http://ollama.internal:8080/v1", "OLLAMA", "OLLAMA"),
        ("https://myco.openai.azure.com/openai/v1", "Azure", "Azure"),
        ("https://notx.ai.example.com/v1", "OPENAI", "OPENAI"),
    ],
)
def test_openai_compatible_apis_report_their_provider(base_url: str, chat: str, other: str) -> None:
    """The reference's labels: Perplexity only for chat completions and Responses calls."""
    with OpenAI(base_url=base_url, api_key="sk-test") as client:
        assert hook.provider_label(client) == chat
        assert hook.provider_label(client, chat=False) == other


def test_a_client_class_named_for_azure_is_azure(api: FakeOpenAI) -> None:
    class AzureGateway(OpenAI):
        pass

    with AzureGateway(base_url=api.base_url, api_key="k") as client:
        assert hook.provider_label(client) == "Azure"


def test_azure_by_endpoint_only_for_a_class_whose_path_names_azure(
    api: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = type("Gateway", (OpenAI,), {"__module__": "corp.AzureGateways"})
    with (
        gateway(base_url=api.base_url, api_key="k") as client,
        OpenAI(base_url=api.base_url, api_key="k") as plain,
    ):
        assert hook.provider_label(client) == "OPENAI"
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://myco.openai.azure.com")
        assert hook.provider_label(client) == "Azure"
        assert hook.provider_label(plain) == "OPENAI"


def test_perplexity_labels_chat_and_responses_but_not_embeddings(
    engine: Engine, api: FakeOpenAI
) -> None:
    enforcement.instrument("openai", engine=engine)
    engine.load_payload([breached_rule(provider="PERPLEXITY")])
    with OpenAI(base_url=f"{api.origin}/perplexity/v1", api_key="k", max_retries=0) as pplx:
        with pytest.raises(BudgetExceededError):
            pplx.chat.completions.create(model="sonar", messages=MESSAGES)
        with pytest.raises(BudgetExceededError):
            pplx.responses.create(model="sonar", input="hi")
        assert api.count == 0
        pplx.embeddings.create(model="text-embedding-3-small", input="hi")  # OPENAI there
        assert api.count == 1
        engine.load_payload([breached_rule(provider="OPENAI")])
        pplx.chat.completions.create(model="sonar", messages=MESSAGES)
        assert api.count == 2


def test_a_rule_on_an_openai_compatible_provider_stops_the_call(
    engine: Engine, api: FakeOpenAI
) -> None:
    enforcement.instrument("openai", engine=engine)
    engine.load_payload([breached_rule(provider="XAI")])
    xai = OpenAI(base_url="https://api.x.ai/v1", api_key="sk-test", max_retries=0)
    with xai, pytest.raises(BudgetExceededError):
        xai.chat.completions.create(model="grok-4", messages=MESSAGES)
    with OpenAI(base_url=api.base_url, api_key="sk-test") as openai_client:
        openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert api.count == 1
    with OpenAI(base_url=api.base_url, api_key="sk-test") as moved:
        moved.base_url = "https://api.x.ai/v1"  # type: ignore[assignment]
        with pytest.raises(BudgetExceededError):
            moved.chat.completions.create(model="grok-4", messages=MESSAGES)
