"""What a Vertex AI call costs: estimates and usage read from the SDK's own objects."""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest
from google.api_core import exceptions as google_errors
from vertexai.generative_models import (
    Content,
    GenerationConfig,
    GenerationResponse,
    GenerativeModel,
    Part,
)

import enforcement
from enforcement import BudgetExceededError
from enforcement._usage import Estimate, Usage
from enforcement.hooks.vertexai import estimate, usage_of

from .conftest import RecordingEngine, breached_rule
from .fake_vertexai import FAILING_MODEL, FakeVertexAI
from .tables.vertexai import Models, aclient, client, configured

MODEL = "gemini-1.5-pro"
REPORTED = Usage(3, 1, model=MODEL)  # what the fake reports for every call


def _response(usage: dict[str, Any], **fields: Any) -> GenerationResponse:
    candidate = {"content": {"role": "model", "parts": [{"text": "hi"}]}}
    return GenerationResponse.from_dict(
        {"candidates": [candidate], "usage_metadata": usage, **fields}
    )


def _reports_thoughts() -> bool:
    """Whether this SDK's UsageMetadata has ``thoughts_token_count`` (added after 1.91)."""
    try:
        _response({"thoughts_token_count": 1})
    except Exception:
        return False
    return True


def test_usage_counts_thoughts_as_output_and_reads_the_cache() -> None:
    usage = {"prompt_token_count": 10, "candidates_token_count": 5, "cached_content_token_count": 4}
    thoughts = 2 if _reports_thoughts() else 0
    if thoughts:
        usage["thoughts_token_count"] = thoughts
    response = _response(usage, model_version="gemini-2.0-flash-001")
    expected = Usage(10, 5 + thoughts, cache_read_tokens=4, model="gemini-2.0-flash-001")
    assert usage_of(response) == expected


def test_a_response_without_usage_reads_as_none() -> None:
    assert usage_of(_response({})) is None
    assert usage_of(object()) is None


@pytest.fixture
def api() -> Iterator[FakeVertexAI]:
    with FakeVertexAI() as running:
        yield running


@pytest.fixture
def project(api: FakeVertexAI) -> Iterator[None]:
    """A project configured, as the SDK needs one to build a model."""
    with configured(api):
        yield


def _model(**options: Any) -> Any:
    with warnings.catch_warnings():  # the SDK's deprecation notice
        warnings.simplefilter("ignore", UserWarning)
        return GenerativeModel(MODEL, **options)


@pytest.mark.usefixtures("project")
def test_estimate_reads_contents_and_the_calls_output_limit() -> None:
    contents = [Content(role="user", parts=[Part.from_text("x" * 400)])]
    config = GenerationConfig(max_output_tokens=64)
    guess = estimate(_model(), (contents,), {"generation_config": config})
    assert guess == Estimate(100, 64)


@pytest.mark.usefixtures("project")
def test_estimate_falls_back_to_the_models_config_and_counts_its_system_instruction() -> None:
    model = _model(generation_config={"max_output_tokens": 32}, system_instruction="s" * 40)
    assert estimate(model, ("q" * 40,), {}) == Estimate(20, 32)
    assert estimate(_model(), (), {}) == Estimate(0, None)


@pytest.fixture
def holding(recording: RecordingEngine) -> RecordingEngine:
    recording.holding = True
    enforcement.instrument("vertexai", engine=recording)
    return recording


@pytest.fixture
def models(api: FakeVertexAI, holding: RecordingEngine) -> Iterator[Models]:
    with client(api) as built:
        yield built


@pytest.fixture
async def amodels(api: FakeVertexAI, holding: RecordingEngine) -> AsyncIterator[Models]:
    async with aclient(api) as built:
        yield built


def test_a_call_settles_with_the_reported_usage(holding: RecordingEngine, models: Models) -> None:
    config = GenerationConfig(max_output_tokens=50)
    assert models(MODEL).generate_content("hi", generation_config=config).text == "hi"
    assert holding.settled == [REPORTED]
    assert holding.estimates == [Estimate(1, 50)]


def test_a_stream_settles_once_from_its_last_chunk(
    holding: RecordingEngine, models: Models
) -> None:
    chunks = list(models(MODEL).generate_content("hi", stream=True))
    assert "".join(chunk.text for chunk in chunks) == "hi"
    assert holding.settled == [REPORTED]


def test_a_chat_round_settles_once(holding: RecordingEngine, models: Models) -> None:
    chat = models(MODEL).start_chat()
    assert chat.send_message("hi").text == "hi"
    assert "".join(chunk.text for chunk in chat.send_message("again", stream=True)) == "hi"
    assert holding.settled == [REPORTED, REPORTED]


async def test_async_calls_and_streams_settle(holding: RecordingEngine, amodels: Models) -> None:
    model = amodels(MODEL)
    assert (await model.generate_content_async("hi")).text == "hi"
    stream = await model.generate_content_async("hi", stream=True)
    assert "".join([chunk.text async for chunk in stream]) == "hi"
    assert holding.settled == [REPORTED, REPORTED]


def test_a_failed_call_or_stream_releases_its_hold(
    holding: RecordingEngine, models: Models
) -> None:
    with pytest.raises(google_errors.BadRequest):
        models(FAILING_MODEL).generate_content("hi")
    with pytest.raises(google_errors.BadRequest):
        list(models(FAILING_MODEL).generate_content("hi", stream=True))
    assert holding.settled == [None, None]


def test_a_stream_closed_early_releases_its_hold(holding: RecordingEngine, models: Models) -> None:
    stream = models(MODEL).generate_content("hi", stream=True)
    assert isinstance(stream, Generator)
    next(stream)
    stream.close()
    assert holding.settled == [None]
    del stream
    with warnings.catch_warnings():  # the SDK leaves an abandoned stream's socket to the collector
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_a_blocked_call_sends_and_settles_nothing(
    holding: RecordingEngine, models: Models, api: FakeVertexAI
) -> None:
    holding.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):
        models(MODEL).generate_content("hi")
    with pytest.raises(BudgetExceededError):
        models(MODEL).generate_content("hi", stream=True)
    assert api.count == 0
    assert holding.settled == []
