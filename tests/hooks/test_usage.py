"""The hooks' post-call path: a held call is settled once, with the usage the provider reported.

Real SDKs against the local fake provider servers. The engine is a
:class:`RecordingEngine` that holds money for every call (``holding``), so
each test reads what the hook settled: the usage the fake server returned
for a completed call, ``None`` for an SDK error or a stream left unfinished,
nothing for a blocked call (which sends nothing) or, with ``holding`` off,
for a call the engine holds nothing for.
"""

from __future__ import annotations

import gc
import inspect
import json
from collections.abc import AsyncGenerator, Generator, Iterator
from typing import Any, Optional, TypeVar

import anthropic
import ollama
import openai
import pytest
from botocore.eventstream import EventStream
from google.genai import errors as genai_errors
from google.genai import types as genai_types

import enforcement
from enforcement import BudgetExceededError
from enforcement._usage import Usage
from enforcement.hooks._base import checked, set_hooked_engine
from enforcement.hooks._estimate import MEDIA_TOKENS
from enforcement.hooks._streams import LatestUsage, Meter

from ._fake_server import FakeServer
from .conftest import RecordingEngine, breached_rule
from .fake_anthropic import FakeAnthropic
from .fake_bedrock import FakeBedrock
from .fake_google_genai import FAILING_MODEL as GEMINI_FAILING
from .fake_google_genai import FakeGemini
from .fake_ollama import MISSING, FakeOllama
from .fake_openai import FakeOpenAI
from .fake_perplexity import FakePerplexity
from .tables import anthropic as anthropic_table
from .tables import bedrock as bedrock_table
from .tables import google_genai as genai_table
from .tables import ollama as ollama_table
from .tables import openai as openai_table
from .tables import perplexity as perplexity_table

_Fake = TypeVar("_Fake", bound=FakeServer)
MESSAGES: Any = [{"role": "user", "content": "hello there, how are you today?"}]
CHAT = Usage(12, 5, cache_read_tokens=4, model="gpt-4o")
RESPONSE = Usage(11, 6, cache_read_tokens=2, model="gpt-4o")
CLAUDE = "claude-sonnet-4-5"
MESSAGE = Usage(28, 9, cache_read_tokens=20, cache_write_tokens=5, model=CLAUDE)


def _held(recording: RecordingEngine, *providers: str) -> RecordingEngine:
    """The recording engine, holding money for every call, the ``providers`` hooked on it."""
    recording.holding = True
    enforcement.instrument(*providers, engine=recording)
    return recording


def _serving(fake: type[_Fake]) -> Iterator[_Fake]:
    with fake() as running:
        yield running


@pytest.fixture
def holding(recording: RecordingEngine) -> RecordingEngine:
    return _held(recording, "openai", "anthropic")


@pytest.fixture
def held_ollama(recording: RecordingEngine) -> RecordingEngine:
    return _held(recording, "ollama")


@pytest.fixture
def held_genai(recording: RecordingEngine) -> RecordingEngine:
    return _held(recording, "google-genai")


@pytest.fixture
def held_bedrock(recording: RecordingEngine) -> RecordingEngine:
    return _held(recording, "bedrock")


@pytest.fixture
def oai() -> Iterator[FakeOpenAI]:
    yield from _serving(FakeOpenAI)


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    yield from _serving(FakeAnthropic)


@pytest.fixture
def local() -> Iterator[FakeOllama]:
    yield from _serving(FakeOllama)


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    yield from _serving(FakeGemini)


@pytest.fixture
def aws() -> Iterator[FakeBedrock]:
    yield from _serving(FakeBedrock)


# -- openai -----------------------------------------------------------------------


def test_openai_chat_settles_with_the_reported_usage(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    with openai_table.client(oai) as client:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=50)
    assert holding.settled == [CHAT]
    assert holding.estimates[0].max_output_tokens == 50
    assert holding.estimates[0].input_tokens > 0


async def test_openai_async_chat_settles_with_the_reported_usage(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    async with openai_table.aclient(oai) as client:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert holding.settled == [CHAT]
    assert holding.estimates[0].max_output_tokens is None


def _chat_stream_with_usage(client: openai.OpenAI, **extra: Any) -> Any:
    """A streamed chat completion that asks for its usage; ``extra`` may be a hook's keyword."""
    return client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **extra,
    )


def test_openai_stream_with_usage_settles_from_its_last_chunk(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    with openai_table.client(oai) as client:
        chunks = list(_chat_stream_with_usage(client))
    assert len(chunks) == 3  # the two text chunks and the usage chunk the caller asked for
    assert holding.settled == [CHAT]


def test_openai_stream_without_usage_is_estimated_from_its_text(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    with openai_table.client(oai) as client:
        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        texts = [chunk.choices[0].delta.content for chunk in stream]
    assert texts == ["h", "i"]  # the stream the caller sees is the server's, unchanged
    assert "stream_options" not in oai.requests[0]["body"]
    estimated = holding.estimates[0].input_tokens
    assert holding.settled == [Usage(estimated, 1, model="gpt-4o")]


async def test_openai_async_stream_settles_once(holding: RecordingEngine, oai: FakeOpenAI) -> None:
    async with openai_table.aclient(oai) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            chunks = [chunk async for chunk in stream]
    assert len(chunks) == 3
    assert holding.settled == [CHAT]


def test_openai_stream_closed_early_settles_none(holding: RecordingEngine, oai: FakeOpenAI) -> None:
    with openai_table.client(oai) as client:
        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        next(iter(stream))
        stream.close()
        stream.close()
    assert holding.settled == [None]


async def test_openai_async_stream_closed_early_settles_none(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    async with openai_table.aclient(oai) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        )
        await stream.__anext__()
        await stream.close()
    assert holding.settled == [None]


def test_openai_stream_dropped_unfinished_settles_none(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    with openai_table.client(oai) as client:
        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        next(iter(stream))
        del stream
        gc.collect()
    assert holding.settled == [None]


def test_openai_stream_manager_settles_once(holding: RecordingEngine, oai: FakeOpenAI) -> None:
    with (
        openai_table.client(oai) as client,
        openai_table.structured(client).stream(
            model="gpt-4o", messages=MESSAGES, stream_options={"include_usage": True}
        ) as stream,
    ):
        stream.get_final_completion()
    assert holding.settled == [CHAT]


def test_openai_responses_settle_with_their_usage(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    with openai_table.client(oai) as client:
        client.responses.create(model="gpt-4o", input="hello", max_output_tokens=64)
        list(client.responses.create(model="gpt-4o", input="hello", stream=True))
    assert holding.settled == [RESPONSE, RESPONSE]
    assert holding.estimates[0] == (2, 64)


def test_openai_embeddings_settle_with_their_prompt_tokens(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    with openai_table.client(oai) as client:
        client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert holding.settled == [Usage(7, 0, model="text-embedding-3-small")]


def test_openai_error_settles_none_and_raises_the_sdks_own(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    with openai_table.client(oai) as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="fail", messages=MESSAGES)
    assert holding.settled == [None]
    assert oai.count == 1


def test_openai_blocked_call_sends_nothing_and_settles_nothing(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    holding.load_payload([breached_rule()])
    with openai_table.client(oai) as client, pytest.raises(BudgetExceededError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert (oai.count, holding.settled) == (0, [])


def test_openai_nothing_held_nothing_read(holding: RecordingEngine, oai: FakeOpenAI) -> None:
    holding.holding = False
    with openai_table.client(oai) as client:
        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        assert type(stream) is openai.Stream  # not wrapped: nothing to settle
        list(stream)
    assert (holding.begun, holding.settled) == ([("gpt-4o", "OPENAI")], [])


# -- anthropic --------------------------------------------------------------------


def test_anthropic_message_settles_with_cached_tokens_counted_in(
    holding: RecordingEngine, claude: FakeAnthropic
) -> None:
    with anthropic_table.client(claude) as client:
        client.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES, system="be brief")
    assert holding.settled == [MESSAGE]
    assert holding.estimates[0].max_output_tokens == 100


async def test_anthropic_async_message_settles(
    holding: RecordingEngine, claude: FakeAnthropic
) -> None:
    async with anthropic_table.aclient(claude) as client:
        await client.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES)
    assert holding.settled == [MESSAGE]


def test_anthropic_stream_settles_from_start_and_delta(
    holding: RecordingEngine, claude: FakeAnthropic
) -> None:
    with anthropic_table.client(claude) as client:
        list(client.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES, stream=True))
        with client.messages.stream(model=CLAUDE, max_tokens=100, messages=MESSAGES) as stream:
            stream.get_final_message()
    assert holding.settled == [MESSAGE, MESSAGE]


async def test_anthropic_async_stream_helper_settles(
    holding: RecordingEngine, claude: FakeAnthropic
) -> None:
    async with (
        anthropic_table.aclient(claude) as client,
        client.messages.stream(model=CLAUDE, max_tokens=100, messages=MESSAGES) as stream,
    ):
        await stream.get_final_message()
    assert holding.settled == [MESSAGE]


def test_anthropic_stream_helper_left_early_settles_none(
    holding: RecordingEngine, claude: FakeAnthropic
) -> None:
    with anthropic_table.client(claude) as client:
        with client.messages.stream(model=CLAUDE, max_tokens=100, messages=MESSAGES) as stream:
            next(iter(stream))
        del stream  # the helper closes the HTTP response, not the stream it iterates
        gc.collect()
    assert holding.settled == [None]


def test_anthropic_error_settles_none_and_raises_the_sdks_own(
    holding: RecordingEngine, claude: FakeAnthropic
) -> None:
    with anthropic_table.client(claude) as client, pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="fail", max_tokens=10, messages=MESSAGES)
    assert (claude.count, holding.settled) == (1, [None])


def test_anthropic_blocked_call_sends_nothing_and_settles_nothing(
    holding: RecordingEngine, claude: FakeAnthropic
) -> None:
    holding.load_payload([breached_rule()])
    with anthropic_table.client(claude) as client, pytest.raises(BudgetExceededError):
        client.messages.stream(model=CLAUDE, max_tokens=100, messages=MESSAGES).__enter__()
    assert (claude.count, holding.settled) == (0, [])


# -- perplexity (the same Stainless funnel) ----------------------------------------


def test_perplexity_chat_and_stream_settle_with_their_usage(recording: RecordingEngine) -> None:
    _held(recording, "perplexity")
    expected = Usage(3, 1, model="sonar")
    with FakePerplexity() as api, perplexity_table.client(api) as client:
        client.chat.completions.create(model="sonar", messages=MESSAGES)
        list(client.chat.completions.create(model="sonar", messages=MESSAGES, stream=True))
    assert [usage and usage._replace(model="sonar") for usage in recording.settled] == [
        expected,
        expected,
    ]


# -- ollama -----------------------------------------------------------------------

LLAMA = "llama3.2"
OLLAMA_CHAT = Usage(26, 8, model=LLAMA)


def test_ollama_chat_and_embed_settle_with_their_counts(
    held_ollama: RecordingEngine, local: FakeOllama
) -> None:
    with ollama_table.client(local) as client:
        client.chat(model=LLAMA, messages=MESSAGES, options={"num_predict": 64})
        client.embed(model=LLAMA, input="hello")
    assert held_ollama.settled == [OLLAMA_CHAT, Usage(4, 0, model=LLAMA)]
    assert held_ollama.estimates[0].max_output_tokens == 64


def test_ollama_images_count_as_media_not_text(
    held_ollama: RecordingEngine, local: FakeOllama
) -> None:
    picture = "iVBORw0KGgo" * 100_000  # a megabyte of base64
    with ollama_table.client(local) as client:
        client.generate(model=LLAMA, prompt="what is this?", images=[picture])
    assert held_ollama.estimates[0].input_tokens == MEDIA_TOKENS + 4


def test_ollama_stream_settles_from_its_last_chunk(
    held_ollama: RecordingEngine, local: FakeOllama
) -> None:
    with ollama_table.client(local) as client:
        chunks = list(client.chat(model=LLAMA, messages=MESSAGES, stream=True))
        early = client.generate(model=LLAMA, prompt="hi", stream=True)
        assert isinstance(early, Generator)
        next(early)
        early.close()
    assert len(chunks) == 2
    assert held_ollama.settled == [OLLAMA_CHAT, None]


async def test_ollama_async_calls_and_streams_settle(
    held_ollama: RecordingEngine, local: FakeOllama
) -> None:
    async with ollama_table.aclient(local) as client:
        await client.chat(model=LLAMA, messages=MESSAGES)
        stream = await client.chat(model=LLAMA, messages=MESSAGES, stream=True)
        assert len([chunk async for chunk in stream]) == 2
        early = await client.chat(model=LLAMA, messages=MESSAGES, stream=True)
        assert isinstance(early, AsyncGenerator)
        await early.__anext__()
        await early.aclose()
    assert held_ollama.settled == [OLLAMA_CHAT, OLLAMA_CHAT, None]


def test_ollama_error_blocked_and_unheld(held_ollama: RecordingEngine, local: FakeOllama) -> None:
    with ollama_table.client(local) as client:
        with pytest.raises(ollama.ResponseError):
            client.chat(model=MISSING, messages=MESSAGES)
        assert held_ollama.settled == [None]
        held_ollama.load_payload([breached_rule()])
        with pytest.raises(BudgetExceededError):
            client.chat(model=LLAMA, messages=MESSAGES, stream=True)
        assert (local.count, held_ollama.settled) == (1, [None])
        held_ollama.load_payload([])
        held_ollama.holding = False
        assert inspect.isgenerator(client.chat(model=LLAMA, messages=MESSAGES, stream=True))
    assert held_ollama.settled == [None]


# -- google-genai -----------------------------------------------------------------

GEMINI = "gemini-2.5-flash"
GENERATED = Usage(30, 9, cache_read_tokens=10, model=GEMINI)


def test_genai_generate_settles_with_usage_metadata(
    held_genai: RecordingEngine, gemini: FakeGemini
) -> None:
    config: genai_types.GenerateContentConfigDict = {
        "max_output_tokens": 128,
        "system_instruction": "be brief",
    }
    with genai_table.client(gemini) as client:
        client.models.generate_content(model=GEMINI, contents="hello", config=config)
    assert held_genai.settled == [GENERATED]
    assert held_genai.estimates == [(4, 128)]


def test_genai_stream_settles_from_its_last_chunk(
    held_genai: RecordingEngine, gemini: FakeGemini
) -> None:
    with genai_table.client(gemini) as client:
        chunks = list(client.models.generate_content_stream(model=GEMINI, contents="hello"))
        early = client.models.generate_content_stream(model=GEMINI, contents="hello")
        assert isinstance(early, Generator)
        next(early)
        early.close()
    assert len(chunks) == 2
    assert held_genai.settled == [GENERATED, None]


async def test_genai_async_generate_and_stream_settle(
    held_genai: RecordingEngine, gemini: FakeGemini
) -> None:
    async with genai_table.aclient(gemini) as client:
        await client.models.generate_content(model=GEMINI, contents="hello")
        stream = await client.models.generate_content_stream(model=GEMINI, contents="hello")
        assert len([chunk async for chunk in stream]) == 2
    assert held_genai.settled == [GENERATED, GENERATED]


def test_genai_error_blocked_and_unheld(held_genai: RecordingEngine, gemini: FakeGemini) -> None:
    with genai_table.client(gemini) as client:
        with pytest.raises(genai_errors.ClientError):
            client.models.generate_content(model=GEMINI_FAILING, contents="hello")
        assert held_genai.settled == [None]
        held_genai.load_payload([breached_rule()])
        with pytest.raises(BudgetExceededError):
            client.models.generate_content_stream(model=GEMINI, contents="hello")
        assert (gemini.count, held_genai.settled) == (1, [None])


# -- bedrock ----------------------------------------------------------------------

TITAN = "anthropic.claude-3-haiku-20240307-v1:0"
CONVERSED = Usage(28, 9, cache_read_tokens=20, cache_write_tokens=5)
INVOKED = Usage(14, 6)


def test_bedrock_converse_settles_with_its_usage(
    held_bedrock: RecordingEngine, aws: FakeBedrock
) -> None:
    with bedrock_table.client(aws) as client:
        client.converse(
            modelId=TITAN, messages=bedrock_table.MESSAGES, inferenceConfig={"maxTokens": 32}
        )
        assert list(
            client.converse_stream(modelId=TITAN, messages=bedrock_table.MESSAGES)["stream"]
        )
    assert held_bedrock.settled == [CONVERSED, CONVERSED]
    assert held_bedrock.estimates[0] == (3, 32)  # "user" and "hello"


def test_bedrock_invoke_settles_from_headers_and_leaves_the_body_unread(
    held_bedrock: RecordingEngine, aws: FakeBedrock
) -> None:
    with bedrock_table.client(aws) as client:
        body = json.loads(
            client.invoke_model(modelId=TITAN, body=bedrock_table.BODY)["body"].read()
        )
        events = list(
            client.invoke_model_with_response_stream(modelId=TITAN, body=bedrock_table.BODY)["body"]
        )
    assert body["content"][0]["text"] == "hi"
    assert len(events) == 7
    assert held_bedrock.settled == [INVOKED, INVOKED]
    assert held_bedrock.estimates[0].max_output_tokens is not None


def test_bedrock_stream_closed_early_settles_none(
    held_bedrock: RecordingEngine, aws: FakeBedrock
) -> None:
    with bedrock_table.client(aws) as client:
        stream = client.converse_stream(modelId=TITAN, messages=bedrock_table.MESSAGES)["stream"]
        next(iter(stream))
        stream.close()
    assert held_bedrock.settled == [None]


def test_bedrock_error_blocked_and_unheld(held_bedrock: RecordingEngine, aws: FakeBedrock) -> None:
    with bedrock_table.client(aws) as client:
        with pytest.raises(client.exceptions.ValidationException):
            client.converse(modelId="fail", messages=bedrock_table.MESSAGES)
        assert held_bedrock.settled == [None]
        held_bedrock.load_payload([breached_rule()])
        with pytest.raises(BudgetExceededError):
            client.converse_stream(modelId=TITAN, messages=bedrock_table.MESSAGES)
        assert (aws.count, held_bedrock.settled) == (1, [None])
        held_bedrock.load_payload([])
        held_bedrock.holding = False
        stream = client.converse_stream(modelId=TITAN, messages=bedrock_table.MESSAGES)["stream"]
        assert type(stream) is EventStream
        list(stream)
    assert held_bedrock.settled == [None]


# -- the kit, alone -----------------------------------------------------------------


def _unreadable(item: Any) -> Optional[Usage]:
    raise ZeroDivisionError("unreadable")


class _Broken(Meter):
    """A meter whose every reading fails: the caller must never see it."""

    def usage(self, result: Any) -> Any:
        raise ValueError("unreadable")

    def tally(self, result: Any, estimate: Any) -> Any:
        if isinstance(result, list):
            return LatestUsage(_unreadable)
        return None


def test_a_failing_reader_settles_none_and_returns_the_result(
    recording: RecordingEngine,
) -> None:
    recording.holding = True
    set_hooked_engine(recording)
    try:
        assert checked("openai", "m", None, lambda: "done", _Broken()) == "done"
        stream = checked("openai", "m", None, lambda: [1, 2], _Broken())
        assert list(stream) == [1, 2]
    finally:
        set_hooked_engine(None)
    assert recording.settled == [None, None]


def test_a_stream_is_settled_once_however_it_ends(recording: RecordingEngine) -> None:
    recording.holding = True
    set_hooked_engine(recording)
    try:
        items = (usage for usage in [Usage(1, 2)])
        stream = checked("openai", "m", None, lambda: items, _Items())
        assert list(stream) == [Usage(1, 2)]
        stream.close()
        with pytest.raises(StopIteration):
            next(stream)
        del stream
        gc.collect()
    finally:
        set_hooked_engine(None)
    assert recording.settled == [Usage(1, 2)]


class _Items(Meter):
    """Streams of :class:`Usage` items: the last one is the call's usage."""

    def tally(self, result: Any, estimate: Any) -> Any:
        return LatestUsage(lambda item: item)


def test_a_stream_given_usage_metadata_settles_through_its_carrier(
    holding: RecordingEngine, oai: FakeOpenAI
) -> None:
    with openai_table.client(oai) as client:
        stream = _chat_stream_with_usage(client, usage_metadata={"organizationName": "acme"})
        with stream:
            assert len(list(stream)) == 3
    assert holding.settled == [CHAT]
