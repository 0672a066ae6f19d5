"""The native Perplexity SDK's calls for the conformance suite, against a local fake API."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from perplexity import AsyncPerplexity, Perplexity

from enforcement import _providers

from ..conformance import Case, Table, aconsume, consume
from ..fake_perplexity import FakePerplexity

MESSAGES = [{"role": "user", "content": "hello"}]


def has(resource: str) -> bool:
    """Whether this SDK release has ``perplexity.resources.<resource>`` (older ones lack some)."""
    return importlib.util.find_spec(f"perplexity.resources.{resource}") is not None


def named(*kinds: str) -> Any:
    """A judge: the result (or every event of a stream) is one of the SDK's ``kinds``, by name.

    By name, because the SDK's releases define their models in different modules.
    """

    def judge(result: Any) -> bool:
        items = result if isinstance(result, list) else [result]
        return bool(items) and all(type(item).__name__ in kinds for item in items)

    return judge


COMPLETION = named("CompletionResponseOutput", "CompletionCreateResponse", "StreamChunk")
RESPONSE = named("ResponsesResponseOutput", "ResponseCreateResponse")


def _stream_events(result: Any) -> bool:
    return isinstance(result, list) and len(result) == 2


@contextmanager
def client(api: FakePerplexity) -> Iterator[Perplexity]:
    with Perplexity(api_key="x", base_url=api.base_url, max_retries=0) as built:
        yield built


@asynccontextmanager
async def aclient(api: FakePerplexity) -> AsyncIterator[AsyncPerplexity]:
    async with AsyncPerplexity(api_key="x", base_url=api.base_url, max_retries=0) as built:
        yield built


def chat(c: Perplexity, m: str, **kw: Any) -> Any:
    return c.chat.completions.create(model=m, messages=MESSAGES, **kw)


def chat_stream(c: Perplexity, m: str, **kw: Any) -> Any:
    return consume(c.chat.completions.create(model=m, messages=MESSAGES, stream=True, **kw))


def chat_raw(c: Perplexity, m: str, **kw: Any) -> Any:
    return c.chat.completions.with_raw_response.create(model=m, messages=MESSAGES, **kw).parse()


def respond(c: Perplexity, m: str, **kw: Any) -> Any:
    return c.responses.create(model=m, input="hi", **kw)


def respond_stream(c: Perplexity, m: str, **kw: Any) -> Any:
    return consume(c.responses.create(model=m, input="hi", stream=True, **kw))


def async_chat(c: Perplexity, m: str, **kw: Any) -> Any:
    return c.async_.chat.completions.create(request={"model": m, "messages": MESSAGES}, **kw)


async def achat(c: AsyncPerplexity, m: str, **kw: Any) -> Any:
    return await c.chat.completions.create(model=m, messages=MESSAGES, **kw)


async def achat_stream(c: AsyncPerplexity, m: str, **kw: Any) -> Any:
    stream = await c.chat.completions.create(model=m, messages=MESSAGES, stream=True, **kw)
    return await aconsume(stream)


async def arespond(c: AsyncPerplexity, m: str, **kw: Any) -> Any:
    return await c.responses.create(model=m, input="hi", **kw)


async def arespond_stream(c: AsyncPerplexity, m: str, **kw: Any) -> Any:
    return await aconsume(await c.responses.create(model=m, input="hi", stream=True, **kw))


TABLE = Table(
    provider="perplexity",
    label=_providers.PERPLEXITY,
    model="sonar-pro",
    fake=FakePerplexity,
    client=client,
    aclient=aclient,
    cases=[
        Case("chat.completions.create", chat, COMPLETION),
        Case("chat.completions.create(stream)", chat_stream, COMPLETION),
        Case("chat.completions.with_raw_response.create", chat_raw, COMPLETION),
        Case("async_.chat.completions.create", async_chat),
        Case("async chat.completions.create", achat, COMPLETION, is_async=True),
        Case("async chat.completions.create(stream)", achat_stream, COMPLETION, is_async=True),
    ],
)
if has("responses"):  # since 0.24
    TABLE.cases += [
        Case("responses.create", respond, RESPONSE),
        Case("responses.create(stream)", respond_stream, _stream_events),
        Case("async responses.create", arespond, RESPONSE, is_async=True),
        Case("async responses.create(stream)", arespond_stream, _stream_events, is_async=True),
    ]
