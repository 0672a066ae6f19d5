"""LiteLLM's calls for the conformance suite: its module functions and a Router's methods.

Every call goes to a local fake OpenAI API on LiteLLM's ``openai/`` route: a
module function is given it as ``api_base``, and the Router's one model group
is a deployment over it. The group is named after its deployment's model, so a
Router call is checked under the same model as a module call (a group's name
resolving to its model is tested in ``test_litellm.py``). A stream is read to
the end, so its request is really sent.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from enforcement import _providers
from enforcement.hooks._instrumentor import release

from ..conformance import Case, Table, aconsume, consume, of, pair
from ..fake_openai import FakeOpenAI
from ..litellm_clients import async_calls, litellm, quiet, settings, sync_calls

with quiet():
    from litellm import Router
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    from litellm.types import utils as types

MODEL = "openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "hello"}]
#: what a stream yields: its own chunk type where the release has one, else a ModelResponse.
CHUNK = getattr(types, "ModelResponseStream", types.ModelResponse)
STREAM = pair(of(CustomStreamWrapper), of(CHUNK))
LITELLM_RELEASE = release(importlib.metadata.version("litellm"))


@dataclass(frozen=True)
class LiteLLM:
    """What a case calls: the litellm module (``routed`` to the fake) and a Router over it."""

    module: ModuleType
    routed: dict[str, str]
    router: Any


def _router(api: FakeOpenAI) -> Any:
    params = {"model": MODEL, "api_base": api.base_url, "api_key": "sk-x"}
    with quiet():  # the first Router imports the rest of LiteLLM's router
        return Router(model_list=[{"model_name": MODEL, "litellm_params": params}], num_retries=0)


def _built(api: FakeOpenAI) -> LiteLLM:
    routed = {"api_base": api.base_url, "api_key": "sk-x"}
    return LiteLLM(litellm, routed, _router(api))


@contextmanager
def client(api: FakeOpenAI) -> Iterator[LiteLLM]:
    routers: list[Any] = []
    with settings(), sync_calls(routers):
        built = _built(api)
        routers.append(built.router)
        yield built


@asynccontextmanager
async def aclient(api: FakeOpenAI) -> AsyncIterator[LiteLLM]:
    routers: list[Any] = []
    with settings():
        async with async_calls(routers):
            built = _built(api)
            routers.append(built.router)
            yield built


def quietly(call: Callable[..., Any]) -> Callable[..., Any]:
    """``call``, sync or async, under :func:`quiet`: LiteLLM imports some modules on first use."""
    if inspect.iscoroutinefunction(call):

        @functools.wraps(call)
        async def acall(*args: Any, **kwargs: Any) -> Any:
            with quiet():
                return await call(*args, **kwargs)

        return acall

    @functools.wraps(call)
    def sync_call(*args: Any, **kwargs: Any) -> Any:
        with quiet():
            return call(*args, **kwargs)

    return sync_call


# -- the module's functions ---------------------------------------------------------


@quietly
def completion(c: LiteLLM, m: str, **kw: Any) -> Any:
    return c.module.completion(model=m, messages=MESSAGES, **c.routed, **kw)


@quietly
def completion_stream(c: LiteLLM, m: str, **kw: Any) -> Any:
    stream = c.module.completion(model=m, messages=MESSAGES, stream=True, **c.routed, **kw)
    return stream, consume(stream)


@quietly
def text_completion(c: LiteLLM, m: str, **kw: Any) -> Any:
    return c.module.text_completion(model=m, prompt="hi", **c.routed, **kw)


@quietly
def embedding(c: LiteLLM, m: str, **kw: Any) -> Any:
    return c.module.embedding(model=m, input="hi", **c.routed, **kw)


@quietly
def image_generation(c: LiteLLM, m: str, **kw: Any) -> Any:
    return c.module.image_generation(prompt="a cat", model=m, **c.routed, **kw)


@quietly
async def acompletion(c: LiteLLM, m: str, **kw: Any) -> Any:
    return await c.module.acompletion(model=m, messages=MESSAGES, **c.routed, **kw)


@quietly
async def acompletion_stream(c: LiteLLM, m: str, **kw: Any) -> Any:
    stream = await c.module.acompletion(model=m, messages=MESSAGES, stream=True, **c.routed, **kw)
    return stream, await aconsume(stream)


@quietly
async def atext_completion(c: LiteLLM, m: str, **kw: Any) -> Any:
    return await c.module.atext_completion(model=m, prompt="hi", **c.routed, **kw)


@quietly
async def aembedding(c: LiteLLM, m: str, **kw: Any) -> Any:
    return await c.module.aembedding(model=m, input="hi", **c.routed, **kw)


@quietly
async def aimage_generation(c: LiteLLM, m: str, **kw: Any) -> Any:
    return await c.module.aimage_generation(prompt="a cat", model=m, **c.routed, **kw)


# -- the Router's methods -----------------------------------------------------------


@quietly
def router_completion(c: LiteLLM, m: str, **kw: Any) -> Any:
    return c.router.completion(model=m, messages=MESSAGES, **kw)


@quietly
def router_completion_stream(c: LiteLLM, m: str, **kw: Any) -> Any:
    stream = c.router.completion(model=m, messages=MESSAGES, stream=True, **kw)
    return stream, consume(stream)


@quietly
def router_text_completion(c: LiteLLM, m: str, **kw: Any) -> Any:
    return c.router.text_completion(model=m, prompt="hi", **kw)


@quietly
def router_embedding(c: LiteLLM, m: str, **kw: Any) -> Any:
    return c.router.embedding(model=m, input="hi", **kw)


@quietly
def router_image_generation(c: LiteLLM, m: str, **kw: Any) -> Any:
    return c.router.image_generation(prompt="a cat", model=m, **kw)


@quietly
async def router_acompletion(c: LiteLLM, m: str, **kw: Any) -> Any:
    return await c.router.acompletion(model=m, messages=MESSAGES, **kw)


@quietly
async def router_acompletion_stream(c: LiteLLM, m: str, **kw: Any) -> Any:
    stream = await c.router.acompletion(model=m, messages=MESSAGES, stream=True, **kw)
    return stream, await aconsume(stream)


@quietly
async def router_atext_completion(c: LiteLLM, m: str, **kw: Any) -> Any:
    return await c.router.atext_completion(model=m, prompt="hi", **kw)


@quietly
async def router_aembedding(c: LiteLLM, m: str, **kw: Any) -> Any:
    return await c.router.aembedding(model=m, input="hi", **kw)


@quietly
async def router_aimage_generation(c: LiteLLM, m: str, **kw: Any) -> Any:
    return await c.router.aimage_generation(prompt="a cat", model=m, **kw)


CHAT = of(types.ModelResponse)
TEXT = of(types.TextCompletionResponse)
EMBEDDINGS = of(types.EmbeddingResponse)
IMAGES = of(types.ImageResponse)

TABLE = Table(
    provider="litellm",
    label=_providers.LITELLM,
    model=MODEL,
    fake=FakeOpenAI,
    client=client,
    aclient=aclient,
    cases=[
        Case("completion", completion, CHAT),
        Case("completion(stream)", completion_stream, STREAM),
        Case("text_completion", text_completion, TEXT),
        Case("embedding", embedding, EMBEDDINGS),
        Case("image_generation", image_generation, IMAGES),
        Case("acompletion", acompletion, CHAT, is_async=True),
        Case("acompletion(stream)", acompletion_stream, STREAM, is_async=True),
        Case("atext_completion", atext_completion, TEXT, is_async=True),
        Case("aembedding", aembedding, EMBEDDINGS, is_async=True),
        Case("aimage_generation", aimage_generation, IMAGES, is_async=True),
        Case("Router.completion", router_completion, CHAT),
        Case("Router.completion(stream)", router_completion_stream, STREAM),
        Case("Router.text_completion", router_text_completion, TEXT),
        Case("Router.embedding", router_embedding, EMBEDDINGS),
        *(
            # LiteLLM's own sync Router.image_generation fails here (1.61.20 and older).
            [Case("Router.image_generation", router_image_generation, IMAGES)]
            if LITELLM_RELEASE >= (1, 63, 14)
            else []
        ),
        Case("Router.acompletion", router_acompletion, CHAT, is_async=True),
        Case("Router.acompletion(stream)", router_acompletion_stream, STREAM, is_async=True),
        Case("Router.atext_completion", router_atext_completion, TEXT, is_async=True),
        Case("Router.aembedding", router_aembedding, EMBEDDINGS, is_async=True),
        Case("Router.aimage_generation", router_aimage_generation, IMAGES, is_async=True),
    ],
)
