"""The google-genai SDK's costly calls for the conformance suite, against a local fake Gemini API.

The client talks to the Gemini Developer API; the async cases use its
``aio`` client. A stream (a generator, and in ``aio`` a coroutine returning
an async generator) sends its request when it is first iterated, so each
case reads it to the end. ``Chat.send_message`` takes no ``usage_metadata=``,
so a chat's metadata comes from a scope, as a caller's would.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import AsyncGeneratorType, GeneratorType
from typing import Any, Optional

from google import genai
from google.genai import client as genai_client
from google.genai import types as gtypes

import enforcement
from enforcement import _providers

from ..conformance import Case, Table, aconsume, consume, of, pair
from ..fake_google_genai import FakeGemini

RESPONSE = of(gtypes.GenerateContentResponse)
STREAM = pair(of(GeneratorType), RESPONSE)
ASTREAM = pair(of(AsyncGeneratorType), RESPONSE)

# The fake speaks plain HTTP; one shared TLS context spares each client loading the CA bundle.
_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def http_options(api: FakeGemini, under: str = "", **options: Any) -> gtypes.HttpOptions:
    """The SDK's HTTP options for the fake (at ``under`` below its root).

    With the shared TLS context where the release takes its clients' arguments (1.x does not).
    """
    tls: dict[str, Any] = {
        "client_args": {"verify": _TLS},
        "async_client_args": {"ssl": _TLS, "verify": _TLS},
    }
    fields = gtypes.HttpOptions.model_fields
    return gtypes.HttpOptions(
        base_url=api.base_url + under,
        **{name: value for name, value in tls.items() if name in fields},
        **options,
    )


@contextmanager
def client(api: FakeGemini) -> Iterator[genai.Client]:
    built = genai.Client(api_key="k", http_options=http_options(api))
    try:
        yield built
    finally:
        if hasattr(built, "close"):  # since 1.30
            built.close()


@asynccontextmanager
async def aclient(api: FakeGemini) -> AsyncIterator[genai_client.AsyncClient]:
    with client(api) as built, warnings.catch_warnings():
        # the SDK's own warning, not ours: it subclasses aiohttp's session
        warnings.filterwarnings("ignore", "Inheritance class", DeprecationWarning)
        aio = built.aio
        try:
            yield aio
        finally:
            if hasattr(aio, "aclose"):
                await aio.aclose()


def streamed(stream: Any) -> Any:
    return stream, consume(stream)


async def astreamed(stream: Any) -> Any:
    return stream, await aconsume(stream)


def chat(c: genai.Client, m: str, usage_metadata: Optional[dict[str, Any]] = None) -> Any:
    with enforcement.usage_metadata(usage_metadata):
        return c.chats.create(model=m).send_message("hi")


def chat_stream(c: genai.Client, m: str, usage_metadata: Optional[dict[str, Any]] = None) -> Any:
    with enforcement.usage_metadata(usage_metadata):
        return streamed(c.chats.create(model=m).send_message_stream("hi"))


async def agenerate(c: genai_client.AsyncClient, m: str, **kw: Any) -> Any:
    return await c.models.generate_content(model=m, contents="hi", **kw)


async def astream(c: genai_client.AsyncClient, m: str, **kw: Any) -> Any:
    return await astreamed(await c.models.generate_content_stream(model=m, contents="hi", **kw))


async def aembed(c: genai_client.AsyncClient, m: str, **kw: Any) -> Any:
    return await c.models.embed_content(model=m, contents="hi", **kw)


async def achat(
    c: genai_client.AsyncClient, m: str, usage_metadata: Optional[dict[str, Any]] = None
) -> Any:
    with enforcement.usage_metadata(usage_metadata):
        return await c.chats.create(model=m).send_message("hi")


async def achat_stream(
    c: genai_client.AsyncClient, m: str, usage_metadata: Optional[dict[str, Any]] = None
) -> Any:
    with enforcement.usage_metadata(usage_metadata):
        return await astreamed(await c.chats.create(model=m).send_message_stream("hi"))


TABLE = Table(
    provider="google-genai",
    label=_providers.GOOGLE,
    model="gemini-2.5-flash",
    fake=FakeGemini,
    client=client,
    aclient=aclient,
    cases=[
        Case(
            "models.generate_content",
            lambda c, m, **kw: c.models.generate_content(model=m, contents="hi", **kw),
            RESPONSE,
        ),
        Case(
            "models.generate_content_stream",
            lambda c, m, **kw: streamed(
                c.models.generate_content_stream(model=m, contents="hi", **kw)
            ),
            STREAM,
        ),
        Case(
            "models.embed_content",
            lambda c, m, **kw: c.models.embed_content(model=m, contents="hi", **kw),
            of(gtypes.EmbedContentResponse),
        ),
        Case("chats.send_message", chat, RESPONSE),
        Case("chats.send_message_stream", chat_stream, STREAM),
        Case("aio models.generate_content", agenerate, RESPONSE, is_async=True),
        Case("aio models.generate_content_stream", astream, ASTREAM, is_async=True),
        Case(
            "aio models.embed_content",
            aembed,
            of(gtypes.EmbedContentResponse),
            is_async=True,
        ),
        Case("aio chats.send_message", achat, RESPONSE, is_async=True),
        Case("aio chats.send_message_stream", achat_stream, ASTREAM, is_async=True),
    ],
)
