"""The kit's per-request path: the plain relay, the leaf funnel, the per-client answers.

What a hooked request costs when no rule covers it was cut (issue 13) by
doing less per call: these tests hold the shortcuts to the same answers and
the same restores as the general path.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import sys
import types
from collections.abc import Iterator
from typing import Any, Optional

import openai
import pytest

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.hooks._base import Call, set_hooked_engine
from enforcement.hooks._instrumentor import Instrumentor
from enforcement.hooks._reentry import already_checked
from enforcement.hooks._relay import relayed_metadata
from enforcement.hooks._stainless import PerClient
from enforcement.hooks.openai import COSTLY_PATHS, INSTRUMENTOR, provider_label

from .conftest import RecordingEngine, breached_rule

MODULE = "enforcement_hot_path_sdk"


class Client:
    """A stand-in SDK: ``send`` and ``asend`` are funnels, the rest public methods above."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, model: str) -> str:
        self.sent.append((relayed_metadata(), already_checked()))
        return "sent"

    async def asend(self, model: str) -> str:
        self.sent.append((relayed_metadata(), already_checked()))
        return "sent"

    def create(self, model: str, *, temperature: float = 1.0) -> str:
        """Create one."""
        return self.send(model)

    async def acreate(self, model: str) -> str:
        return await self.asend(model)


def describe(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Call]:
    return Call("TESTSDK", args[0] if args else kwargs["model"])


class HotPathInstrumentor(Instrumentor):
    name = "hotpath"
    module = MODULE
    distribution = "enforcement-hot-path-sdk"
    provider = "TESTSDK"
    leaf = False

    def version(self) -> Optional[str]:
        return "1.0"

    def patch(self, module: types.ModuleType) -> None:
        for funnel in ("send", "asend"):
            self.hook(module.Client, funnel, describe, required=True, leaf=self.leaf)
        for public in ("create", "acreate"):
            self.relay(module.Client, public)
        self.relay(module, "create")


@pytest.fixture
def sdk() -> Iterator[types.ModuleType]:
    module = types.ModuleType(MODULE)
    module.Client = type("Client", (Client,), {"__module__": MODULE})  # type: ignore[attr-defined]
    module.default = module.Client()  # type: ignore[attr-defined]
    module.create = module.default.create  # type: ignore[attr-defined]  # a bound method
    sys.modules[MODULE] = module
    yield module
    del sys.modules[MODULE]


@pytest.fixture
def kit(engine: Engine) -> Iterator[HotPathInstrumentor]:
    instrumentor = HotPathInstrumentor()
    set_hooked_engine(engine)
    yield instrumentor
    instrumentor.uninstrument()
    set_hooked_engine(None)


def test_a_plain_method_is_relayed_by_a_plain_function(
    sdk: types.ModuleType, kit: HotPathInstrumentor
) -> None:
    originals = {name: Client.__dict__[name] for name in ("create", "acreate")}
    bound = sdk.create
    kit.instrument()
    create: Any = sdk.Client.__dict__["create"]
    assert type(create) is types.FunctionType  # not a wrapt proxy
    assert vars(create)["__wrapped__"] is originals["create"]
    assert create.__name__ == "create" and create.__doc__ == "Create one."
    assert inspect.signature(create) == inspect.signature(originals["create"])
    assert inspect.iscoroutinefunction(sdk.Client.__dict__["acreate"])
    # What is not a plain function (a bound method) keeps a wrapt layer, which binds as it did.
    assert type(sdk.create) is not types.MethodType and sdk.create.__wrapped__ is bound
    kit.uninstrument()
    assert "create" not in sdk.Client.__dict__  # inherited before, inherited again
    assert sdk.create is bound


def test_the_plain_relay_carries_metadata_only_when_given(
    sdk: types.ModuleType, kit: HotPathInstrumentor
) -> None:
    kit.instrument()
    client = sdk.Client()
    assert client.create("m") == "sent"
    assert client.create("m", usage_metadata={"organizationName": "acme"}) == "sent"
    assert client.create("m", usage_metadata=None, temperature=0.5) == "sent"
    assert sdk.create("m", usage_metadata={"organizationName": "beta"}) == "sent"
    assert asyncio.run(client.acreate("m", usage_metadata={"organizationName": "acme"})) == "sent"
    assert asyncio.run(client.acreate(model="m")) == "sent"
    acme = {"organizationName": "acme"}
    assert [relayed for relayed, _ in client.sent] == [None, acme, None, acme, None]
    assert [relayed for relayed, _ in sdk.default.sent] == [{"organizationName": "beta"}]
    assert relayed_metadata() is None  # nothing leaks past the call


def test_the_relayed_metadata_still_decides_the_verdict(
    sdk: types.ModuleType, kit: HotPathInstrumentor, engine: Engine
) -> None:
    kit.instrument()
    org = [{"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}]
    engine.load_payload([{**breached_rule(), "filters": org}])
    client = sdk.Client()
    assert client.create("m") == "sent"
    with pytest.raises(BudgetExceededError):
        client.create("m", usage_metadata={"organizationName": "acme"})
    with pytest.raises(BudgetExceededError):
        asyncio.run(client.acreate("m", usage_metadata={"organizationName": "acme"}))
    assert len(client.sent) == 1


@pytest.mark.parametrize("leaf", [False, True])
def test_a_leaf_funnel_sets_no_guard_unless_it_holds(
    sdk: types.ModuleType, recording: RecordingEngine, leaf: bool
) -> None:
    """Only a funnel with no hooked method below may skip the guard, and only with no hold."""
    kit = HotPathInstrumentor()
    kit.leaf = leaf
    set_hooked_engine(recording)
    try:
        kit.instrument()
        client = sdk.Client()
        client.send("m")
        asyncio.run(client.asend("m"))
        recording.holding = True
        client.send("m")
        asyncio.run(client.asend("m"))
    finally:
        kit.uninstrument()
        set_hooked_engine(None)
    guarded = [inside for _, inside in client.sent]
    assert guarded == [not leaf, not leaf, True, True]
    assert len(recording.begun) == 4  # checked every time either way
    assert len(recording.settled) == 2


def test_a_leaf_funnel_still_blocks(sdk: types.ModuleType, engine: Engine) -> None:
    kit = HotPathInstrumentor()
    kit.leaf = True
    set_hooked_engine(engine)
    engine.load_payload([breached_rule(model="m")])
    try:
        kit.instrument()
        client = sdk.Client()
        with pytest.raises(BudgetExceededError):
            client.send("m")
        with pytest.raises(BudgetExceededError):
            asyncio.run(client.asend("m"))
        assert client.send("other") == "sent"
    finally:
        kit.uninstrument()
        set_hooked_engine(None)


class _Client:
    def __init__(self, base_url: str) -> None:
        self._base_url = base_url


def test_per_client_values_follow_the_client_and_its_base_url() -> None:
    made: list[str] = []

    def make(client: _Client) -> str:
        made.append(client._base_url)
        return client._base_url.upper()

    per_client: PerClient[str] = PerClient(make)
    client = _Client("a")
    assert per_client.of(client) == per_client.of(client) == "A"
    client._base_url = "b"
    assert per_client.of(client) == "B"
    assert made == ["a", "b"]
    del client
    gc.collect()
    assert per_client._known == {}  # gone with its client
    unkept: PerClient[str] = PerClient(make, keep=lambda value: False)
    other = _Client("c")
    assert unkept.of(other) == unkept.of(other) == "C"
    assert made[-2:] == ["c", "c"]
    slotted = (1, 2)  # cannot be weakly referenced: worked out each time
    assert PerClient(lambda c: len(c)).of(slotted) == 2


def _answer(client: Any, method: str, url: str, model: Any) -> Any:
    """What the funnel's describer said before its answers were remembered."""
    if method.lower() != "post" or COSTLY_PATHS.fullmatch(url) is None:
        return None
    chat = url in ("/chat/completions", "/responses") or url.startswith("/responses/")
    return Call(provider_label(client, chat=chat), model if isinstance(model, str) else None)


REQUESTS = [
    ("post", "/chat/completions", "gpt-4o"),
    ("post", "/chat/completions", None),
    ("POST", "/responses", "o3"),
    ("post", "/responses/compact", "o3"),
    ("post", "/embeddings", "text-embedding-3-small"),
    ("post", "/threads/t1/runs", "gpt-4o"),
    ("post", "/moderations", "omni"),
    ("post", "/files", None),
    ("get", "/chat/completions", "gpt-4o"),
    ("post", "/chat/completions", 5),
]


@pytest.mark.parametrize(
    "base_url", ["https://api.openai.com/v1", "https://api.perplexity.ai", "http://localhost:11434"]
)
def test_remembered_answers_are_the_fresh_answers(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="sk")
    for _ in range(2):  # the second round is answered from memory
        for method, url, model in REQUESTS:
            options = types.SimpleNamespace(method=method, url=url, json_data={"model": model})
            expected = _answer(client, method, url, model)
            assert INSTRUMENTOR.describe(client, (None, options), {}) == expected
            judged = INSTRUMENTOR.judge(client, options)
            assert judged == (None if expected is None else (expected[0], (expected[1],)))
    client.base_url = "https://api.x.ai/v1"
    options = types.SimpleNamespace(method="post", url="/embeddings", json_data={"model": "m"})
    assert INSTRUMENTOR.describe(client, (None, options), {}) == Call("XAI", "m")


def test_an_azure_label_that_reads_the_environment_is_never_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    azure_like = type("AzureProxyClient", (openai.OpenAI,), {})
    client = azure_like(base_url="https://proxy.example/v1", api_key="sk")
    options = types.SimpleNamespace(method="post", url="/embeddings", json_data={"model": "m"})
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    assert INSTRUMENTOR.describe(client, (None, options), {}) == Call("Azure", "m")
    plain_azure = type("Proxy", (openai.OpenAI,), {"__module__": "my.Azure.proxy"})
    client = plain_azure(base_url="https://proxy.example/v1", api_key="sk")
    assert INSTRUMENTOR.describe(client, (None, options), {}) == Call("OPENAI", "m")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://x.openai.azure.com")
    assert INSTRUMENTOR.describe(client, (None, options), {}) == Call("Azure", "m")


def test_a_hooked_openai_call_is_checked_through_the_plain_relay(engine: Engine) -> None:
    enforcement.instrument("openai", engine=engine)
    from openai.resources.chat.completions.completions import Completions

    assert type(Completions.__dict__["create"]) is types.FunctionType
    engine.load_payload([breached_rule(model="gpt-4o")])
    client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk", max_retries=0)
    with pytest.raises(BudgetExceededError):
        client.chat.completions.create(model="gpt-4o", messages=[])
