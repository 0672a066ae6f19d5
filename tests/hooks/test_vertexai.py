"""The Vertex AI SDK's details the conformance suite does not reach: names, timing, free calls."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import vertexai
from google.cloud.aiplatform import initializer
from vertexai.generative_models import GenerativeModel
from vertexai.preview import generative_models as preview

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.hooks import vertexai as hook
from enforcement.hooks._base import Call

from .conftest import breached_rule
from .fake_vertexai import FakeVertexAI
from .tables.vertexai import LOCATION, PROJECT, Models, aclient, client, configured

MODEL = "gemini-1.5-pro"
FULL = f"projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}"
ACME = {"organizationName": "acme"}


def tagged(usage_metadata: dict[str, str]) -> dict[str, Any]:
    """``usage_metadata=``, a keyword the SDK's signature lacks (the hook removes it)."""
    return {"usage_metadata": usage_metadata}


@pytest.fixture
def api() -> Iterator[FakeVertexAI]:
    with FakeVertexAI() as running:
        yield running


@pytest.fixture
def models(api: FakeVertexAI, engine: Engine) -> Iterator[Models]:
    enforcement.instrument("vertexai", engine=engine)
    with client(api) as built:
        yield built


@pytest.fixture
async def amodels(api: FakeVertexAI, engine: Engine) -> AsyncIterator[Models]:
    enforcement.instrument("vertexai", engine=engine)
    async with aclient(api) as built:
        yield built


def _built(name: str, kind: Any = GenerativeModel) -> Any:
    with warnings.catch_warnings():  # the SDK's deprecation notice
        warnings.simplefilter("ignore", UserWarning)
        return kind(name)


# -- the model a rule sees ---------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "checked_as"),
    [
        # A bare name and ``models/...`` are stored as ``publishers/google/models/...``.
        (MODEL, MODEL),
        (f"models/{MODEL}", MODEL),
        (f"publishers/google/models/{MODEL}", MODEL),
        ("gemini-2.0-flash-001", "gemini-2.0-flash-001"),
        # Another publisher's Model Garden model keeps its path, as the reference keeps it.
        ("publishers/meta/models/llama-3.1-405b", "publishers/meta/models/llama-3.1-405b"),
        # A full resource name (a tuned model's endpoint too) loses only ``projects/``.
        (FULL, f"{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}"),
        (
            f"projects/{PROJECT}/locations/{LOCATION}/endpoints/123",
            "p/locations/us-central1/endpoints/123",
        ),
    ],
)
def test_the_model_is_named_as_the_reference_names_it(
    api: FakeVertexAI, given: str, checked_as: str
) -> None:
    with configured(api):
        for kind in (GenerativeModel, preview.GenerativeModel):
            model = _built(given, kind)
            assert hook.describe(model, (), {}) == Call(enforcement._providers.GOOGLE, checked_as)
            chat = model.start_chat()
            assert hook.describe_chat(chat, (), {}) == Call(
                enforcement._providers.GOOGLE, checked_as
            )


@pytest.mark.parametrize("odd", [None, "", 42, object()])
def test_a_model_it_cannot_name_is_checked_with_no_model(odd: Any) -> None:
    class Model:
        _model_name = odd

    class Chat:
        _model = Model()

    assert hook.model_name(Model()) is None
    assert hook.describe_chat(Chat(), (), {}) == Call("Google", None)
    assert hook.describe_chat(object(), (), {}) == Call("Google", None)


def test_a_rule_on_the_full_resource_name_blocks_its_calls(
    models: Models, engine: Engine, api: FakeVertexAI
) -> None:
    name = f"{PROJECT}/locations/{LOCATION}/endpoints/123"
    engine.load_payload([breached_rule(model=name)])
    with pytest.raises(BudgetExceededError):
        models(f"projects/{name}").generate_content("hi")
    assert models(MODEL).generate_content("hi").text == "hi"
    assert api.count == 1


# -- when streams are checked ----------------------------------------------------


def test_a_stream_is_refused_at_the_call_not_at_the_first_chunk(
    models: Models, engine: Engine, api: FakeVertexAI
) -> None:
    engine.load_payload([breached_rule(provider="Google")])
    model = models(MODEL)
    with pytest.raises(BudgetExceededError):
        model.generate_content("hi", stream=True)
    with pytest.raises(BudgetExceededError):
        model.start_chat().send_message("hi", stream=True)
    assert api.count == 0


async def test_an_async_stream_is_refused_when_awaited(
    amodels: Models, engine: Engine, api: FakeVertexAI
) -> None:
    engine.load_payload([breached_rule(provider="Google")])
    model = amodels(MODEL)
    pending = model.generate_content_async("hi", stream=True)
    with pytest.raises(BudgetExceededError):
        await pending
    chat = model.start_chat()
    with pytest.raises(BudgetExceededError):
        await chat.send_message_async("hi", stream=True)
    assert api.count == 0
    assert chat.history == []


def test_a_chat_stream_checked_at_the_call_is_not_checked_again_while_read(
    models: Models, engine: Engine, api: FakeVertexAI
) -> None:
    chat = models(MODEL).start_chat()
    stream = chat.send_message("hi", stream=True, **tagged(ACME))
    # A rule that would refuse the call, loaded after it passed: the stream it opened is read.
    engine.load_payload([breached_rule(provider="Google")])
    assert [chunk.text for chunk in stream] == ["h", "i"]
    assert len(chat.history) == 2
    assert api.count == 1


# -- what else it covers, and what is free ------------------------------------------


def test_the_preview_classes_are_checked_too(
    models: Models, engine: Engine, api: FakeVertexAI
) -> None:
    model = _built(MODEL, preview.GenerativeModel)
    try:
        assert model.generate_content("hi", usage_metadata={"organizationName": "a"}).text == "hi"
        engine.load_payload([breached_rule(model=MODEL)])
        with pytest.raises(BudgetExceededError):
            model.generate_content("hi")
        with pytest.raises(BudgetExceededError):
            model.start_chat().send_message("hi")
    finally:
        model._prediction_client.transport.close()
    assert api.paths[0].startswith(f"/v1beta1/{FULL}:generateContent")
    assert api.count == 1


def test_counting_tokens_is_free(models: Models, engine: Engine, api: FakeVertexAI) -> None:
    engine.load_payload([breached_rule()])
    assert models(MODEL).count_tokens("hi").total_tokens == 3
    assert api.paths[0].split("?")[0].endswith(f"/{FULL}:countTokens")


async def test_counting_tokens_async_is_free(
    amodels: Models, engine: Engine, api: FakeVertexAI
) -> None:
    engine.load_payload([breached_rule()])
    assert (await amodels(MODEL).count_tokens_async("hi")).total_tokens == 3
    assert api.count == 1


def test_a_grpc_call_is_refused_before_its_channel_is_used(engine: Engine) -> None:
    """The default transport is gRPC; the check sits above it, so nothing needs to listen."""
    enforcement.instrument("vertexai", engine=engine)
    engine.load_payload([breached_rule(model=MODEL)])
    with FakeVertexAI() as unused, configured(unused):
        vertexai.init(api_transport="grpc", api_endpoint="127.0.0.1:9")
        with pytest.raises(BudgetExceededError):
            _built(MODEL).generate_content("hi")
        assert unused.count == 0


async def test_an_async_grpc_call_is_refused_before_its_channel_is_made(engine: Engine) -> None:
    """The async senders are coroutines: awaiting one checks it before the client is built.

    A release without the async REST transport (before 1.7x) is tested this way only.
    """
    enforcement.instrument("vertexai", engine=engine)
    engine.load_payload([breached_rule(model=MODEL)])
    with FakeVertexAI() as unused, configured(unused):
        vertexai.init(api_transport="grpc", api_endpoint="127.0.0.1:9")
        model = _built(MODEL)
        with pytest.raises(BudgetExceededError):
            await model.generate_content_async("hi")
        with pytest.raises(BudgetExceededError):
            await model.start_chat().send_message_async("hi", stream=True)
        assert "_prediction_async_client" not in vars(model)
        assert unused.count == 0


def test_usage_metadata_is_read_per_turn_of_a_chat(
    models: Models, engine: Engine, api: FakeVertexAI
) -> None:
    acme = [{"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}]
    engine.load_payload([breached_rule(filters=acme)])
    chat = models(MODEL).start_chat()
    assert chat.send_message("hi", **tagged({"organizationName": "beta"})).text == "hi"
    with pytest.raises(BudgetExceededError):
        chat.send_message("again", **tagged(ACME))
    assert len(chat.history) == 2  # the refused turn never joined the history
    assert api.count == 1


def test_each_client_puts_the_sdk_settings_back(api: FakeVertexAI) -> None:
    config = initializer.global_config
    before = dict(vars(config))
    with client(api):
        assert config.api_endpoint == api.origin
    assert vars(config) == before
