"""The anthropic SDK's costly calls for the conformance suite, against a local fake Anthropic API.

The hook checks in the SDK's request funnel, so every case sends one
request: a stream read to its ``message_stop``, a stream manager entered and
read to its final message, a batch of one request.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from anthropic import Anthropic, APIResponse, AsyncAnthropic, AsyncAPIResponse, AsyncStream, Stream
from anthropic.lib.streaming import (
    AsyncMessageStream,
    BetaAsyncMessageStream,
    BetaMessageStream,
    MessageStream,
)
from anthropic.types import Message, RawMessageStartEvent, RawMessageStopEvent
from anthropic.types.beta import (
    BetaDream,
    BetaMessage,
    BetaRawMessageStartEvent,
    BetaRawMessageStopEvent,
)
from anthropic.types.beta.messages import BetaMessageBatch
from anthropic.types.messages import MessageBatch

from enforcement import _providers

from ..conformance import Case, Table, aconsume, consume, of, pair, spans
from ..fake_anthropic import FakeAnthropic

MESSAGES: Any = [{"role": "user", "content": "hi"}]
#: what ``with_raw_response`` returns: a LegacyAPIResponse before 1.0.
RAW: tuple[type, ...] = (APIResponse,)
ARAW: tuple[type, ...] = (AsyncAPIResponse,)
if importlib.util.find_spec("anthropic._legacy_response") is not None:  # before 1.0 only
    legacy: type = importlib.import_module("anthropic._legacy_response").LegacyAPIResponse
    RAW, ARAW = (*RAW, legacy), (*ARAW, legacy)
EVENTS = spans(RawMessageStartEvent, RawMessageStopEvent)
BETA_EVENTS = spans(BetaRawMessageStartEvent, BetaRawMessageStopEvent)


def batch(*models: str) -> Any:
    """A message batch: one request for each model."""
    return [
        {"custom_id": f"r{i}", "params": {"model": m, "max_tokens": 8, "messages": MESSAGES}}
        for i, m in enumerate(models)
    ]


@contextmanager
def client(api: FakeAnthropic) -> Iterator[Anthropic]:
    with Anthropic(base_url=api.base_url, api_key="sk-test", max_retries=0) as built:
        yield built


@asynccontextmanager
async def aclient(api: FakeAnthropic) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(base_url=api.base_url, api_key="sk-test", max_retries=0) as built:
        yield built


def messages(c: Any, beta: bool) -> Any:
    return c.beta.messages if beta else c.messages


def create(beta: bool = False) -> Any:
    def call(c: Anthropic, m: str, **kw: Any) -> Any:
        return messages(c, beta).create(model=m, max_tokens=8, messages=MESSAGES, **kw)

    return call


def create_stream(beta: bool = False) -> Any:
    def call(c: Anthropic, m: str, **kw: Any) -> Any:
        stream = messages(c, beta).create(
            model=m, max_tokens=8, messages=MESSAGES, stream=True, **kw
        )
        with stream:
            return stream, consume(stream)

    return call


def stream_manager(beta: bool = False) -> Any:
    def call(c: Anthropic, m: str, **kw: Any) -> Any:
        with messages(c, beta).stream(model=m, max_tokens=8, messages=MESSAGES, **kw) as stream:
            return stream, stream.get_final_message()

    return call


def batches(beta: bool = False) -> Any:
    def call(c: Anthropic, m: str, **kw: Any) -> Any:
        return messages(c, beta).batches.create(requests=batch(m), **kw)

    return call


def parse(c: Anthropic, m: str, **kw: Any) -> Any:
    return c.messages.parse(model=m, max_tokens=8, messages=MESSAGES, **kw)


def raw_response(c: Anthropic, m: str, **kw: Any) -> Any:
    response = c.messages.with_raw_response.create(model=m, max_tokens=8, messages=MESSAGES, **kw)
    return response, response.parse()


def streaming_response(c: Anthropic, m: str, **kw: Any) -> Any:
    with c.messages.with_streaming_response.create(
        model=m, max_tokens=8, messages=MESSAGES, **kw
    ) as response:
        return response, response.parse()


def dream(c: Anthropic, m: str, **kw: Any) -> Any:
    return c.beta.dreams.create(inputs=[], model={"id": m}, **kw)


def acreate(beta: bool = False) -> Any:
    async def call(c: AsyncAnthropic, m: str, **kw: Any) -> Any:
        return await messages(c, beta).create(model=m, max_tokens=8, messages=MESSAGES, **kw)

    return call


def acreate_stream(beta: bool = False) -> Any:
    async def call(c: AsyncAnthropic, m: str, **kw: Any) -> Any:
        stream = await messages(c, beta).create(
            model=m, max_tokens=8, messages=MESSAGES, stream=True, **kw
        )
        async with stream:
            return stream, await aconsume(stream)

    return call


def astream_manager(beta: bool = False) -> Any:
    async def call(c: AsyncAnthropic, m: str, **kw: Any) -> Any:
        manager = messages(c, beta).stream(model=m, max_tokens=8, messages=MESSAGES, **kw)
        async with manager as stream:
            return stream, await stream.get_final_message()

    return call


def abatches(beta: bool = False) -> Any:
    async def call(c: AsyncAnthropic, m: str, **kw: Any) -> Any:
        return await messages(c, beta).batches.create(requests=batch(m), **kw)

    return call


async def aparse(c: AsyncAnthropic, m: str, **kw: Any) -> Any:
    return await c.messages.parse(model=m, max_tokens=8, messages=MESSAGES, **kw)


async def araw_response(c: AsyncAnthropic, m: str, **kw: Any) -> Any:
    response = await c.messages.with_raw_response.create(
        model=m, max_tokens=8, messages=MESSAGES, **kw
    )
    return response, await aconsume(response.parse())  # a LegacyAPIResponse parses at once


async def astreaming_response(c: AsyncAnthropic, m: str, **kw: Any) -> Any:
    async with c.messages.with_streaming_response.create(
        model=m, max_tokens=8, messages=MESSAGES, **kw
    ) as response:
        return response, await response.parse()


TABLE = Table(
    provider="anthropic",
    label=_providers.ANTHROPIC,
    model="claude-sonnet-5",  # not in the SDK's deprecated list, so no warning
    fake=FakeAnthropic,
    client=client,
    aclient=aclient,
    cases=[
        Case("messages.create", create(), of(Message)),
        Case("messages.create(stream)", create_stream(), pair(of(Stream), EVENTS)),
        Case("messages.stream()", stream_manager(), pair(of(MessageStream), of(Message))),
        Case("messages.parse", parse, of(Message)),
        Case("messages.with_raw_response.create", raw_response, pair(of(*RAW), of(Message))),
        Case(
            "messages.with_streaming_response.create",
            streaming_response,
            pair(of(APIResponse), of(Message)),
        ),
        Case("messages.batches.create", batches(), of(MessageBatch)),
        Case("beta.messages.create", create(beta=True), of(BetaMessage)),
        Case(
            "beta.messages.create(stream)", create_stream(beta=True), pair(of(Stream), BETA_EVENTS)
        ),
        Case(
            "beta.messages.stream()",
            stream_manager(beta=True),
            pair(of(BetaMessageStream), of(BetaMessage)),
        ),
        Case("beta.messages.batches.create", batches(beta=True), of(BetaMessageBatch)),
        Case("beta.dreams.create", dream, of(BetaDream)),
        Case("async messages.create", acreate(), of(Message), is_async=True),
        Case(
            "async messages.create(stream)",
            acreate_stream(),
            pair(of(AsyncStream), EVENTS),
            is_async=True,
        ),
        Case(
            "async messages.stream()",
            astream_manager(),
            pair(of(AsyncMessageStream), of(Message)),
            is_async=True,
        ),
        Case("async messages.parse", aparse, of(Message), is_async=True),
        Case(
            "async messages.with_raw_response.create",
            araw_response,
            pair(of(*ARAW), of(Message)),
            is_async=True,
        ),
        Case(
            "async messages.with_streaming_response.create",
            astreaming_response,
            pair(of(AsyncAPIResponse), of(Message)),
            is_async=True,
        ),
        Case("async messages.batches.create", abatches(), of(MessageBatch), is_async=True),
        Case("async beta.messages.create", acreate(beta=True), of(BetaMessage), is_async=True),
        Case(
            "async beta.messages.create(stream)",
            acreate_stream(beta=True),
            pair(of(AsyncStream), BETA_EVENTS),
            is_async=True,
        ),
        Case(
            "async beta.messages.stream()",
            astream_manager(beta=True),
            pair(of(BetaAsyncMessageStream), of(BetaMessage)),
            is_async=True,
        ),
        Case(
            "async beta.messages.batches.create",
            abatches(beta=True),
            of(BetaMessageBatch),
            is_async=True,
        ),
    ],
)
