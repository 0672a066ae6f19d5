"""The Vertex AI SDK's Gemini calls for the conformance suite, against a local fake service.

The SDK keeps its settings in one process-wide object (``vertexai.init``), so
each client here sets it for the fake and puts every setting back when it
closes: no test sees another's project, endpoint or credentials.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import vertexai
from google.auth.aio.credentials import AnonymousCredentials as AsyncAnonymousCredentials
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform import initializer
from vertexai.generative_models import GenerationResponse, GenerativeModel

from enforcement import _providers

from ..conformance import Case, Table, aconsume, consume
from ..fake_vertexai import FakeVertexAI

PROJECT, LOCATION = "p", "us-central1"


class Models:
    """The ``GenerativeModel`` for a name, made once per client and closed with it.

    A model makes its transport on first use and never closes it; closing
    here keeps a socket from reaching the garbage collector, which the suite
    treats as an error.
    """

    def __init__(self) -> None:
        self._built: dict[str, GenerativeModel] = {}

    def __call__(self, name: str) -> GenerativeModel:
        if name not in self._built:
            with warnings.catch_warnings():  # the SDK's notice that this API is deprecated
                warnings.simplefilter("ignore", UserWarning)
                self._built[name] = GenerativeModel(name)
        return self._built[name]

    def close(self) -> None:
        for model in self._built.values():
            for made in _made(model, "_prediction_client", "_llm_utility_client"):
                made.transport.close()

    async def aclose(self) -> None:
        for model in self._built.values():
            for made in _made(model, "_prediction_async_client", "_llm_utility_async_client"):
                await made.transport.close()
        self.close()


def _made(model: GenerativeModel, *clients: str) -> list[Any]:
    """The model's clients already made (each is made on first use, and cached)."""
    return [vars(model)[name] for name in clients if name in vars(model)]


@contextmanager
def configured(api: FakeVertexAI, *, asynchronous: bool = False) -> Iterator[None]:
    """``vertexai.init`` pointed at the fake over REST, the global config restored after."""
    config = initializer.global_config
    saved = dict(vars(config))
    try:
        vertexai.init(
            project=PROJECT,
            location=LOCATION,
            api_transport="rest",
            api_endpoint=api.origin,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call,unused-ignore]
        )
        if asynchronous:  # else the async client falls back to gRPC
            if not hasattr(initializer, "_set_async_rest_credentials"):
                pytest.skip("async REST came between 1.70 and 1.80; this release's is gRPC only")
            initializer._set_async_rest_credentials(
                AsyncAnonymousCredentials()  # type: ignore[no-untyped-call,unused-ignore]
            )
        yield
    finally:
        vars(config).clear()
        vars(config).update(saved)


@contextmanager
def client(api: FakeVertexAI) -> Iterator[Models]:
    models = Models()
    with configured(api):
        try:
            yield models
        finally:
            models.close()


@asynccontextmanager
async def aclient(api: FakeVertexAI) -> AsyncIterator[Models]:
    models = Models()
    with configured(api, asynchronous=True):
        try:
            yield models
        finally:
            await models.aclose()


def answered(result: Any) -> bool:
    """The SDK's own responses: one, or every chunk of a stream, each with the fake's text."""
    chunks = result if isinstance(result, list) else [result]
    return bool(chunks) and all(
        type(chunk) is GenerationResponse and chunk.text in ("hi", "h", "i") for chunk in chunks
    )


def generate(c: Models, m: str, **kw: Any) -> Any:
    return c(m).generate_content("hello", **kw)


def generate_stream(c: Models, m: str, **kw: Any) -> Any:
    return consume(c(m).generate_content("hello", stream=True, **kw))


def chat(c: Models, m: str, **kw: Any) -> Any:
    return c(m).start_chat().send_message("hello", **kw)


def chat_stream(c: Models, m: str, **kw: Any) -> Any:
    return consume(c(m).start_chat().send_message("hello", stream=True, **kw))


async def agenerate(c: Models, m: str, **kw: Any) -> Any:
    return await c(m).generate_content_async("hello", **kw)


async def agenerate_stream(c: Models, m: str, **kw: Any) -> Any:
    return await aconsume(await c(m).generate_content_async("hello", stream=True, **kw))


async def achat(c: Models, m: str, **kw: Any) -> Any:
    return await c(m).start_chat().send_message_async("hello", **kw)


async def achat_stream(c: Models, m: str, **kw: Any) -> Any:
    stream = await c(m).start_chat().send_message_async("hello", stream=True, **kw)
    return await aconsume(stream)


TABLE = Table(
    provider="vertexai",
    label=_providers.GOOGLE,
    model="gemini-1.5-pro",
    fake=FakeVertexAI,
    client=client,
    aclient=aclient,
    cases=[
        Case("generate_content", generate, answered),
        Case("generate_content(stream)", generate_stream, answered),
        Case("send_message", chat, answered),
        Case("send_message(stream)", chat_stream, answered),
        Case("async generate_content", agenerate, answered, is_async=True),
        Case("async generate_content(stream)", agenerate_stream, answered, is_async=True),
        Case("async send_message", achat, answered, is_async=True),
        Case("async send_message(stream)", achat_stream, answered, is_async=True),
    ],
)
