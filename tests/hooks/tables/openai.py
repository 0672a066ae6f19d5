"""The openai SDK's costly calls for the conformance suite, against a local fake OpenAI API.

The hook checks in the SDK's request funnel, so every case (a method, its
stream, its stream manager, its raw- and streaming-response variants) sends
one request; a stream is read to the end, a stream manager to its final
object. The cases follow the release: structured outputs (``parse``, the
``stream()`` managers) since 1.40, under ``beta.chat`` before 1.92; the
Responses API since 1.66.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from openai import AsyncOpenAI, AsyncStream, OpenAI, Stream
from openai._legacy_response import HttpxBinaryResponseContent, LegacyAPIResponse
from openai._response import APIResponse
from openai.types import Completion, CreateEmbeddingResponse, ImagesResponse
from openai.types.audio import Transcription
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from enforcement import _providers

from ..conformance import Case, Table, aconsume, consume, of, pair, spans
from ..fake_openai import FakeOpenAI

MESSAGES: Any = [{"role": "user", "content": "hello"}]
AUDIO = b"RIFF0000WAVE"


def has(module: str) -> bool:
    """Whether this release of the SDK has ``openai.<module>``."""
    return importlib.util.find_spec(f"openai.{module}") is not None


@contextmanager
def client(api: FakeOpenAI) -> Iterator[OpenAI]:
    with OpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0) as built:
        yield built


@asynccontextmanager
async def aclient(api: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=api.base_url, api_key="sk-test", max_retries=0) as built:
        yield built


def structured(c: Any) -> Any:
    """The chat completions with ``parse`` and ``stream()``: ``beta.chat``'s before 1.92."""
    completions = c.chat.completions
    return completions if hasattr(completions, "parse") else c.beta.chat.completions


def chat(c: OpenAI, m: str, **kw: Any) -> Any:
    return c.chat.completions.create(model=m, messages=MESSAGES, **kw)


def chat_stream(c: OpenAI, m: str, **kw: Any) -> Any:
    stream = c.chat.completions.create(model=m, messages=MESSAGES, stream=True, **kw)
    return stream, consume(stream)


def chat_raw(c: OpenAI, m: str, **kw: Any) -> Any:
    response = c.chat.completions.with_raw_response.create(model=m, messages=MESSAGES, **kw)
    return response, response.parse()


def chat_streaming_response(c: OpenAI, m: str, **kw: Any) -> Any:
    with c.chat.completions.with_streaming_response.create(
        model=m, messages=MESSAGES, **kw
    ) as response:
        return response, response.parse()


def transcribe(c: OpenAI, m: str, **kw: Any) -> Any:
    return c.audio.transcriptions.create(model=m, file=("a.wav", io.BytesIO(AUDIO)), **kw)


def parse(c: OpenAI, m: str, **kw: Any) -> Any:
    return structured(c).parse(model=m, messages=MESSAGES, **kw)


def chat_manager(c: OpenAI, m: str, **kw: Any) -> Any:
    with structured(c).stream(model=m, messages=MESSAGES, **kw) as stream:
        consume(iter(stream))
        return stream, stream.get_final_completion()


def respond(c: OpenAI, m: str, **kw: Any) -> Any:
    return c.responses.create(model=m, input="hi", **kw)


def respond_stream(c: OpenAI, m: str, **kw: Any) -> Any:
    stream = c.responses.create(model=m, input="hi", stream=True, **kw)
    return stream, consume(stream)


def respond_manager(c: OpenAI, m: str, **kw: Any) -> Any:
    with c.responses.stream(model=m, input="hi", **kw) as stream:
        consume(iter(stream))
        return stream, stream.get_final_response()


async def achat(c: AsyncOpenAI, m: str, **kw: Any) -> Any:
    return await c.chat.completions.create(model=m, messages=MESSAGES, **kw)


async def achat_stream(c: AsyncOpenAI, m: str, **kw: Any) -> Any:
    stream = await c.chat.completions.create(model=m, messages=MESSAGES, stream=True, **kw)
    return stream, await aconsume(stream)


async def aembed(c: AsyncOpenAI, m: str, **kw: Any) -> Any:
    return await c.embeddings.create(model=m, input="hi", **kw)


async def aimages(c: AsyncOpenAI, m: str, **kw: Any) -> Any:
    return await c.images.generate(model=m, prompt="a cat", **kw)


async def aparse(c: AsyncOpenAI, m: str, **kw: Any) -> Any:
    return await structured(c).parse(model=m, messages=MESSAGES, **kw)


async def achat_manager(c: AsyncOpenAI, m: str, **kw: Any) -> Any:
    async with structured(c).stream(model=m, messages=MESSAGES, **kw) as stream:
        await aconsume(stream.__aiter__())
        return stream, await stream.get_final_completion()


async def arespond(c: AsyncOpenAI, m: str, **kw: Any) -> Any:
    return await c.responses.create(model=m, input="hi", **kw)


async def arespond_stream(c: AsyncOpenAI, m: str, **kw: Any) -> Any:
    stream = await c.responses.create(model=m, input="hi", stream=True, **kw)
    return stream, await aconsume(stream)


async def arespond_manager(c: AsyncOpenAI, m: str, **kw: Any) -> Any:
    async with c.responses.stream(model=m, input="hi", **kw) as stream:
        await aconsume(stream.__aiter__())
        return stream, await stream.get_final_response()


TABLE = Table(
    provider="openai",
    label=_providers.OPENAI,
    model="gpt-4o",
    fake=FakeOpenAI,
    client=client,
    aclient=aclient,
    cases=[
        Case("chat.completions.create", chat, of(ChatCompletion)),
        Case(
            "chat.completions.create(stream)",
            chat_stream,
            pair(of(Stream), of(ChatCompletionChunk)),
        ),
        Case(
            "chat.completions.with_raw_response.create",
            chat_raw,
            pair(of(LegacyAPIResponse), of(ChatCompletion)),
        ),
        Case(
            "chat.completions.with_streaming_response.create",
            chat_streaming_response,
            pair(of(APIResponse), of(ChatCompletion)),
        ),
        Case(
            "completions.create",
            lambda c, m, **kw: c.completions.create(model=m, prompt="hi", **kw),
            of(Completion),
        ),
        Case(
            "embeddings.create",
            lambda c, m, **kw: c.embeddings.create(model=m, input="hi", **kw),
            of(CreateEmbeddingResponse),
        ),
        Case(
            "images.generate",
            lambda c, m, **kw: c.images.generate(model=m, prompt="a cat", **kw),
            of(ImagesResponse),
        ),
        Case(
            "audio.speech.create",
            lambda c, m, **kw: c.audio.speech.create(model=m, voice="alloy", input="hi", **kw),
            of(HttpxBinaryResponseContent),
        ),
        Case("audio.transcriptions.create", transcribe, of(Transcription)),
        Case("async chat.completions.create", achat, of(ChatCompletion), is_async=True),
        Case(
            "async chat.completions.create(stream)",
            achat_stream,
            pair(of(AsyncStream), of(ChatCompletionChunk)),
            is_async=True,
        ),
        Case("async embeddings.create", aembed, of(CreateEmbeddingResponse), is_async=True),
        Case("async images.generate", aimages, of(ImagesResponse), is_async=True),
    ],
)

if has("lib.streaming.chat"):  # structured outputs: since 1.40
    from openai.lib.streaming.chat import AsyncChatCompletionStream, ChatCompletionStream
    from openai.types.chat import ParsedChatCompletion

    PARSED = of(ParsedChatCompletion)
    TABLE.cases += [
        Case("chat.completions.parse", parse, PARSED),
        Case("chat.completions.stream()", chat_manager, pair(of(ChatCompletionStream), PARSED)),
        Case("async chat.completions.parse", aparse, PARSED, is_async=True),
        Case(
            "async chat.completions.stream()",
            achat_manager,
            pair(of(AsyncChatCompletionStream), PARSED),
            is_async=True,
        ),
    ]

if has("resources.responses"):  # the Responses API: since 1.66
    from openai.lib.streaming.responses import AsyncResponseStream, ResponseStream
    from openai.types.responses import (
        ParsedResponse,
        Response,
        ResponseCompletedEvent,
        ResponseCreatedEvent,
    )

    EVENTS = spans(ResponseCreatedEvent, ResponseCompletedEvent)
    TABLE.cases += [
        Case("responses.create", respond, of(Response)),
        Case("responses.create(stream)", respond_stream, pair(of(Stream), EVENTS)),
        Case("responses.stream()", respond_manager, pair(of(ResponseStream), of(ParsedResponse))),
        Case("async responses.create", arespond, of(Response), is_async=True),
        Case(
            "async responses.create(stream)",
            arespond_stream,
            pair(of(AsyncStream), EVENTS),
            is_async=True,
        ),
        Case(
            "async responses.stream()",
            arespond_manager,
            pair(of(AsyncResponseStream), of(ParsedResponse)),
            is_async=True,
        ),
    ]
