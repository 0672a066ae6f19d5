"""The ollama SDK's calls for the conformance suite, against a local fake Ollama server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from ollama import (
    AsyncClient,
    ChatResponse,
    Client,
    EmbeddingsResponse,
    EmbedResponse,
    GenerateResponse,
    SystemOneResponse,
)

from enforcement import _providers

from ..conformance import Case, Table, aconsume, consume
from ..fake_ollama import FakeOllama

MESSAGES = [{"role": "user", "content": "hello"}]
QUESTIONS = {"ok": {"type": "noul", "instructions": "Is it fine?"}}


def of(kind: type) -> Any:
    """A judge: the result (or every chunk of a stream) is the SDK's own ``kind``."""

    def judge(result: Any) -> bool:
        chunks = result if isinstance(result, list) else [result]
        return bool(chunks) and all(type(chunk) is kind for chunk in chunks)

    return judge


@contextmanager
def client(api: FakeOllama) -> Iterator[Client]:
    with Client(host=api.base_url) as built:
        yield built


@asynccontextmanager
async def aclient(api: FakeOllama) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(host=api.base_url) as built:
        yield built


async def achat(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await c.chat(model=m, messages=MESSAGES, **kw)


async def achat_stream(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await aconsume(await c.chat(model=m, messages=MESSAGES, stream=True, **kw))


async def agenerate(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await c.generate(model=m, prompt="hi", **kw)


async def aembed(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await c.embed(model=m, input="hi", **kw)


TABLE = Table(
    provider="ollama",
    label=_providers.OLLAMA,
    model="llama3.2",
    fake=FakeOllama,
    client=client,
    aclient=aclient,
    cases=[
        Case("chat", lambda c, m, **kw: c.chat(model=m, messages=MESSAGES, **kw), of(ChatResponse)),
        Case(
            "chat(stream)",
            lambda c, m, **kw: consume(c.chat(model=m, messages=MESSAGES, stream=True, **kw)),
            of(ChatResponse),
        ),
        Case("generate", lambda c, m, **kw: c.generate(m, "hi", **kw), of(GenerateResponse)),
        Case("embed", lambda c, m, **kw: c.embed(model=m, input="hi", **kw), of(EmbedResponse)),
        Case("embeddings", lambda c, m, **kw: c.embeddings(m, "hi", **kw), of(EmbeddingsResponse)),
        Case(
            "systemone",
            lambda c, m, **kw: c.systemone(model=m, state="s", questions=QUESTIONS, **kw),
            of(SystemOneResponse),
        ),
        Case("async chat", achat, of(ChatResponse), is_async=True),
        Case("async chat(stream)", achat_stream, of(ChatResponse), is_async=True),
        Case("async generate", agenerate, of(GenerateResponse), is_async=True),
        Case("async embed", aembed, of(EmbedResponse), is_async=True),
    ],
)
