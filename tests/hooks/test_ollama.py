"""The ollama SDK, hooked, against a local fake Ollama server: what conformance does not cover.

The checks every provider shares (blocked calls send nothing, ``usage_metadata=``
stripped, bypass, stacked layers, restore by identity) run from ``tables/ollama.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable

import pytest
from ollama import (
    AsyncClient,
    ChatResponse,
    Client,
    EmbeddingsResponse,
    EmbedResponse,
    GenerateResponse,
    ResponseError,
    SystemOneResponse,
)

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.hooks._base import Call, read_call
from enforcement.hooks.ollama import describe

from .conftest import breached_rule
from .fake_ollama import MISSING, FakeOllama

MODEL = "llama3.2"
MESSAGES = [{"role": "user", "content": "hello"}]
QUESTIONS = {"ok": {"type": "noul", "instructions": "Is it fine?"}}
ACME = [
    {
        **breached_rule(),
        "filters": [{"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}],
    }
]
ACME_CALL = {"organizationName": "acme"}
BETA_CALL = {"organizationName": "beta"}
AS_BETA: dict[str, Any] = {"usage_metadata": BETA_CALL}  # a keyword the SDK's types do not know
UNKNOWN: dict[str, Any] = {"no_such_argument": 1}
PUBLIC = ("chat", "generate", "embed", "embeddings", "systemone")


@pytest.fixture
def api() -> Iterator[FakeOllama]:
    with FakeOllama() as running:
        yield running


@pytest.fixture
def client(api: FakeOllama) -> Iterator[Client]:
    with Client(host=api.base_url) as built:
        yield built


@pytest.fixture
async def aclient(api: FakeOllama) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(host=api.base_url) as built:
        yield built


def read(stream: Iterator[Any]) -> list[Any]:
    assert isinstance(stream, types.GeneratorType)  # the SDK's own generator, not a proxy
    return list(stream)


async def aread(stream: AsyncIterator[Any]) -> list[Any]:
    assert isinstance(stream, types.AsyncGeneratorType)
    return [chunk async for chunk in stream]


# case -> (call, the type of what it returns, or of each chunk it streams)
SYNC_CASES: dict[str, tuple[Callable[..., Any], type]] = {
    "chat": (lambda c, m, **kw: c.chat(model=m, messages=MESSAGES, **kw), ChatResponse),
    "chat(stream)": (
        lambda c, m, **kw: read(c.chat(model=m, messages=MESSAGES, stream=True, **kw)),
        ChatResponse,
    ),
    "generate": (lambda c, m, **kw: c.generate(model=m, prompt="hi", **kw), GenerateResponse),
    "generate(stream)": (
        lambda c, m, **kw: read(c.generate(m, "hi", stream=True, **kw)),
        GenerateResponse,
    ),
    "embed": (lambda c, m, **kw: c.embed(model=m, input="hi", **kw), EmbedResponse),
    "embeddings": (lambda c, m, **kw: c.embeddings(m, "hi", **kw), EmbeddingsResponse),
    "systemone": (
        lambda c, m, **kw: c.systemone(model=m, state="s", questions=QUESTIONS, **kw),
        SystemOneResponse,
    ),
}


async def achat(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await c.chat(model=m, messages=MESSAGES, **kw)


async def achat_streamed(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await aread(await c.chat(model=m, messages=MESSAGES, stream=True, **kw))


async def agenerate(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await c.generate(model=m, prompt="hi", **kw)


async def agenerate_streamed(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await aread(await c.generate(m, "hi", stream=True, **kw))


async def aembed(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await c.embed(model=m, input="hi", **kw)


async def aembeddings(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await c.embeddings(m, "hi", **kw)


async def asystemone(c: AsyncClient, m: str, **kw: Any) -> Any:
    return await c.systemone(model=m, state="s", questions=QUESTIONS, **kw)


ASYNC_CASES: dict[str, tuple[Callable[..., Any], type]] = {
    "chat": (achat, ChatResponse),
    "chat(stream)": (achat_streamed, ChatResponse),
    "generate": (agenerate, GenerateResponse),
    "generate(stream)": (agenerate_streamed, GenerateResponse),
    "embed": (aembed, EmbedResponse),
    "embeddings": (aembeddings, EmbeddingsResponse),
    "systemone": (asystemone, SystemOneResponse),
}


def assert_returns(result: Any, expected: type) -> None:
    chunks = result if isinstance(result, list) else [result]
    assert chunks and all(type(chunk) is expected for chunk in chunks)


def path_of(case: str) -> str:
    name = case.split("(", 1)[0]
    return "/v1/systemone" if name == "systemone" else f"/api/{name}"


def test_a_stream_is_checked_when_it_is_made_not_when_it_is_read(
    engine: Engine, client: Client, api: FakeOllama
) -> None:
    enforcement.instrument("ollama", engine=engine)
    engine.load_payload([breached_rule(model=MODEL)])
    with pytest.raises(BudgetExceededError):
        client.chat(model=MODEL, messages=MESSAGES, stream=True)  # never iterated
    with pytest.raises(BudgetExceededError):
        client.generate(model=MODEL, prompt="hi", stream=True)
    assert engine.status().counters["blocked"] == 2

    engine.load_payload(ACME)
    with enforcement.usage_metadata(organizationName="acme"), pytest.raises(BudgetExceededError):
        client.chat(model=MODEL, messages=MESSAGES, stream=True)
    stream = client.chat(model=MODEL, messages=MESSAGES, stream=True)
    assert api.count == 0  # the SDK opens the request on the first next()
    with enforcement.usage_metadata(organizationName="acme"):
        chunks = read(stream)  # judged where it was made, and not judged again
    assert [chunk.message.content for chunk in chunks] == ["h", "i"]
    assert api.count == 1


async def test_an_async_stream_is_checked_when_it_is_awaited(
    engine: Engine, aclient: AsyncClient, api: FakeOllama
) -> None:
    enforcement.instrument("ollama", engine=engine)
    engine.load_payload([breached_rule(model=MODEL)])
    with pytest.raises(BudgetExceededError):
        await aclient.chat(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(BudgetExceededError):
        await aclient.generate(model=MODEL, prompt="hi", stream=True)

    engine.load_payload(ACME)
    stream = await aclient.generate(model=MODEL, prompt="hi", stream=True, **AS_BETA)
    assert api.count == 0
    with enforcement.usage_metadata(organizationName="acme"):
        chunks = await aread(stream)
    assert [chunk.response for chunk in chunks] == ["h", "i"]
    assert api.count == 1
    assert engine.status().counters["blocked"] == 2


def test_methods_bound_before_instrumenting_are_checked_in_the_funnel(
    engine: Engine, client: Client, api: FakeOllama
) -> None:
    # ``ollama.chat`` and friends are bound methods of a client made at import,
    # as these are: bound before the hook existed, they reach the class funnel.
    bound = {name: getattr(client, name) for name in PUBLIC}
    enforcement.instrument("ollama", engine=engine)
    engine.load_payload([breached_rule(model=MODEL)])
    with pytest.raises(BudgetExceededError):
        bound["chat"](model=MODEL, messages=MESSAGES)
    with pytest.raises(BudgetExceededError):
        bound["chat"](model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(BudgetExceededError):
        bound["generate"](model=MODEL, prompt="hi")
    with pytest.raises(BudgetExceededError):
        bound["embed"](model=MODEL, input="hi")
    with pytest.raises(BudgetExceededError):
        bound["embeddings"](model=MODEL, prompt="hi")
    with pytest.raises(BudgetExceededError):
        bound["systemone"](model=MODEL, state="s", questions=QUESTIONS)
    assert api.count == 0
    assert type(bound["chat"](model="other", messages=MESSAGES)) is ChatResponse
    assert api.count == 1


_MODULE_FUNCTIONS_SCRIPT = """
import json, sys, types
import enforcement
from enforcement import BudgetExceededError, Engine

rules = json.loads(sys.argv[1])
engine = Engine(environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"})
engine.load_payload([])
enforcement.instrument("ollama", engine=engine)  # before the SDK is imported
assert "ollama" not in sys.modules
import ollama
from ollama import chat

def blocked(call):
    try:
        call()
    except BudgetExceededError:
        return
    raise AssertionError("not blocked")

m = [{"role": "user", "content": "hello"}]
q = {"ok": {"type": "noul", "instructions": "Is it fine?"}}
assert type(chat(model="llama3.2", messages=m)) is ollama.ChatResponse
stream = ollama.chat(model="llama3.2", messages=m, stream=True)
assert isinstance(stream, types.GeneratorType)
assert all(type(c) is ollama.ChatResponse for c in stream)
assert type(ollama.generate(model="llama3.2", prompt="hi")) is ollama.GenerateResponse
assert type(ollama.embed(model="llama3.2", input="hi")) is ollama.EmbedResponse
assert type(ollama.embeddings(model="llama3.2", prompt="hi")) is ollama.EmbeddingsResponse
assert type(ollama.systemone(model="llama3.2", state="s", questions=q)) is ollama.SystemOneResponse
assert type(ollama.list()) is ollama.ListResponse

engine.load_payload(rules["model"])
blocked(lambda: chat(model="llama3.2", messages=m))
blocked(lambda: ollama.chat(model="llama3.2", messages=m, stream=True))
blocked(lambda: ollama.generate(model="llama3.2", prompt="hi", stream=True))
blocked(lambda: ollama.embed(model="llama3.2", input="hi"))
blocked(lambda: ollama.embeddings(model="llama3.2", prompt="hi"))
blocked(lambda: ollama.systemone(model="llama3.2", state="s", questions=q))
assert type(ollama.generate(model="other", prompt="hi")) is ollama.GenerateResponse

engine.load_payload(rules["acme"])
acme = {"organizationName": "acme"}
blocked(lambda: ollama.chat(model="llama3.2", messages=m, usage_metadata=acme))
with enforcement.usage_metadata(organizationName="acme"):
    blocked(lambda: ollama.embed(model="llama3.2", input="hi"))
meta = {"organizationName": "beta"}
assert type(ollama.chat(model="llama3.2", messages=m, usage_metadata=meta)) is ollama.ChatResponse
print(engine.status().counters["blocked"])
"""


def test_module_functions_are_checked(api: FakeOllama) -> None:
    # The default client reads OLLAMA_HOST when ``ollama`` is imported: a fresh process.
    rules = {"model": [breached_rule(model=MODEL)], "acme": ACME}
    env = {"PATH": os.environ.get("PATH", ""), "OLLAMA_HOST": api.base_url}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", _MODULE_FUNCTIONS_SCRIPT, json.dumps(rules)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["8"]
    assert api.paths == [
        "/api/chat",
        "/api/chat",
        "/api/generate",
        "/api/embed",
        "/api/embeddings",
        "/v1/systemone",
        "/api/tags",
        "/api/generate",
        "/api/chat",
    ]
    assert all(b"usage_metadata" not in request["raw"] for request in api.requests)


def test_free_endpoints_are_not_checked(engine: Engine, client: Client, api: FakeOllama) -> None:
    enforcement.instrument("ollama", engine=engine)
    engine.load_payload([breached_rule()])
    client.list()
    client.show(MODEL)
    client.ps()
    assert api.paths == ["/api/tags", "/api/show", "/api/ps"]
    assert engine.status().counters["blocked"] == 0


async def test_async_free_endpoints_are_not_checked(
    engine: Engine, aclient: AsyncClient, api: FakeOllama
) -> None:
    enforcement.instrument("ollama", engine=engine)
    engine.load_payload([breached_rule()])
    await aclient.list()
    await aclient.show(MODEL)
    assert api.paths == ["/api/tags", "/api/show"]


def test_the_model_is_passed_as_the_caller_spelled_it(engine: Engine, client: Client) -> None:
    enforcement.instrument("ollama", engine=engine)
    engine.load_payload([breached_rule(model="qwen3:8b")])
    with pytest.raises(BudgetExceededError):
        client.chat(model="qwen3:8b", messages=MESSAGES)
    assert type(client.chat(model="qwen3:4b", messages=MESSAGES)) is ChatResponse


async def test_sdk_errors_pass_through_unchanged(
    engine: Engine, client: Client, aclient: AsyncClient, api: FakeOllama
) -> None:
    enforcement.instrument("ollama", engine=engine)
    with pytest.raises(ResponseError) as caught:
        client.chat(model=MISSING, messages=MESSAGES)
    assert caught.value.status_code == 404
    with pytest.raises(ResponseError):
        read(client.generate(model=MISSING, prompt="hi", stream=True))
    with pytest.raises(ResponseError):
        await aclient.embed(model=MISSING, input="hi")
    with pytest.raises(ResponseError):
        await aread(await aclient.chat(model=MISSING, messages=MESSAGES, stream=True))
    with pytest.raises(TypeError):
        client.chat(model=MODEL, messages=MESSAGES, **UNKNOWN)
    assert api.count == 4


class _Explosive(dict[str, Any]):
    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((ChatResponse, "POST", "/api/chat"), {"json": {"model": MODEL}}, (True, MODEL)),
        ((ChatResponse, "post", "/api/generate/"), {"json": {"model": 3}}, (True, None)),
        ((ChatResponse,), {"method": "POST", "url": "/api/embed", "json": None}, (True, None)),
        ((ChatResponse, "POST", "http://h:1/x/api/chat"), {"json": {}}, (False, None)),
        ((ChatResponse, "POST", "https://ollama.com/api/chat"), {}, (True, None)),
        ((ChatResponse, "POST", "/api/chat"), {"json": _Explosive()}, (True, None)),
        ((ChatResponse, "GET", "/api/tags"), {}, (False, None)),
        ((ChatResponse, "POST", "/api/pull"), {"json": {"model": MODEL}}, (False, None)),
        ((ChatResponse, "POST", "https://ollama.com/api/web_search"), {}, (False, None)),
        ((), {}, (False, None)),
        ((ChatResponse, None, object()), {}, (False, None)),
    ],
)
def test_reading_the_request_never_raises(
    args: tuple[Any, ...], kwargs: dict[str, Any], expected: tuple[bool, Any]
) -> None:
    costly, model = expected
    assert read_call(describe, "OLLAMA", None, args, kwargs) == (
        Call("OLLAMA", model) if costly else None
    )
