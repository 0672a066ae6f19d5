"""The anthropic SDK, hooked, against a local fake Anthropic API (and Bedrock and Vertex).

What conformance does not cover: the checks every provider shares (blocked calls
send nothing, ``usage_metadata=`` stripped, bypass, stacked layers, restore by
identity) run from ``tables/anthropic.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic import (
    Anthropic,
    AnthropicBedrock,
    AnthropicFoundry,
    AnthropicVertex,
    AsyncAnthropic,
    AsyncAnthropicBedrock,
    AsyncAnthropicVertex,
    Stream,
)
from anthropic.lib.bedrock._mantle import AnthropicBedrockMantle
from anthropic.lib.streaming import (
    AsyncMessageStreamManager,
    MessageStreamManager,
)
from anthropic.types import Message

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.hooks.anthropic import cap_model, provider_label

from .conftest import breached_rule
from .fake_anthropic import FakeAnthropic
from .tables import anthropic as table
from .tables.anthropic import MESSAGES, batch

MODEL = table.TABLE.model
ACME = [breached_rule(filters=[{"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}])]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as running:
        yield running


@pytest.fixture
def api(server: FakeAnthropic) -> FakeAnthropic:
    """The module's fake API, its request count back at zero."""
    server.reset()
    return server


@pytest.fixture(scope="module")
def shared_client(server: FakeAnthropic) -> Iterator[Anthropic]:
    with table.client(server) as built:
        yield built


@pytest.fixture
def client(api: FakeAnthropic, shared_client: Anthropic) -> Anthropic:
    return shared_client


@pytest.fixture
async def aclient(api: FakeAnthropic) -> AsyncIterator[AsyncAnthropic]:
    async with table.aclient(api) as built:
        yield built


def assert_clean(api: FakeAnthropic) -> None:
    """No request carried our keyword or our private header to the vendor."""
    for request in api.requests:
        assert "usage_metadata" not in request["body"]
        assert "x-enforcement-call-metadata" not in request["headers"]


# -- streams: the check runs when the request is sent, on entering the manager -----------


def test_stream_manager_is_checked_on_enter_before_the_request(
    engine: Engine, client: Anthropic, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    engine.load_payload([breached_rule(model=MODEL)])
    manager = client.messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert type(manager) is MessageStreamManager  # the SDK's own object, unwrapped
    with pytest.raises(BudgetExceededError), manager:
        pytest.fail("the stream opened")
    streaming = client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=8, messages=MESSAGES
    )
    with pytest.raises(BudgetExceededError), streaming:
        pytest.fail("the response opened")
    assert api.count == 0


async def test_async_stream_manager_is_checked_on_enter_before_the_request(
    engine: Engine, aclient: AsyncAnthropic, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    manager = aclient.messages.stream(  # type: ignore[call-arg]
        model=MODEL, max_tokens=8, messages=MESSAGES, usage_metadata={"organizationName": "acme"}
    )
    assert isinstance(manager, AsyncMessageStreamManager)  # proxied: it carries the metadata
    engine.load_payload(ACME)  # loaded after the manager was made: judged when it is entered
    with pytest.raises(BudgetExceededError):
        async with manager:
            pytest.fail("the stream opened")
    assert api.count == 0


@pytest.mark.parametrize("label", ["AWS", "Foundry"])
async def test_a_rule_on_bedrock_or_foundry_lets_a_first_party_call_through(
    label: str, engine: Engine, client: Anthropic, aclient: AsyncAnthropic, api: FakeAnthropic
) -> None:
    """Foundry's calls count toward ANTHROPIC caps, not the other way round."""
    enforcement.instrument("anthropic", engine=engine)
    engine.load_payload([breached_rule(provider=label)])
    assert isinstance(client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES), Message)
    with client.messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES) as stream:
        assert stream.get_final_text() == "hi"
    assert isinstance(
        await aclient.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES), Message
    )
    assert api.count == 3


# -- batches: one check per distinct model ------------------------------------------------


def test_a_batch_is_checked_for_every_model_in_it(
    engine: Engine, client: Anthropic, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    decisions: list[Any] = []
    engine.add_listener(decisions.append)
    engine.load_payload([breached_rule(model="claude-haiku-5-5")])
    client.messages.batches.create(requests=batch(MODEL, MODEL, "claude-opus-5"))
    assert api.count == 1
    with pytest.raises(BudgetExceededError):
        client.messages.batches.create(requests=batch(MODEL, "claude-haiku-5-5", "claude-opus-5"))
    assert api.count == 1
    assert engine.flush_listeners()
    assert len(decisions) == 1


async def test_an_async_batch_is_checked_for_every_model_in_it(
    engine: Engine, aclient: AsyncAnthropic, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    engine.load_payload([breached_rule(model="claude-haiku-5-5")])
    with pytest.raises(BudgetExceededError):
        await aclient.beta.messages.batches.create(requests=batch(MODEL, "claude-haiku-5-5"))
    assert api.count == 0


def test_a_batch_given_as_an_iterator_is_not_consumed_and_checked_without_a_model(
    engine: Engine, client: Anthropic, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    client.messages.batches.create(requests=iter(batch(MODEL)))
    assert len(api.requests[0]["body"]["requests"]) == 1
    engine.load_payload([breached_rule(model="claude-other")])  # a model filter covers "unknown"
    with pytest.raises(BudgetExceededError):
        client.messages.batches.create(requests=iter(batch(MODEL)))
    assert api.count == 1


# -- routing: what is free, what costs, where the model comes from -----------------------


def test_free_endpoints_are_not_checked(
    engine: Engine, client: Anthropic, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    engine.load_payload([breached_rule()])
    assert client.messages.count_tokens(model=MODEL, messages=MESSAGES).input_tokens == 3
    assert client.beta.messages.count_tokens(model=MODEL, messages=MESSAGES).input_tokens == 3
    assert [m.id for m in client.models.list()] == ["claude-sonnet-4-5"]
    assert api.count == 3


async def test_async_free_endpoints_are_not_checked(
    engine: Engine, aclient: AsyncAnthropic, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    engine.load_payload([breached_rule()])
    counted = await aclient.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert counted.input_tokens == 3
    assert [m.id async for m in aclient.models.list()] == ["claude-sonnet-4-5"]
    assert api.count == 2


def test_managed_agent_work_is_checked_but_an_interrupt_is_not(
    engine: Engine, client: Anthropic, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    events: Any = [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]
    client.beta.sessions.events.send("sesn_1", events=events, usage_metadata={"agent": "x"})  # type: ignore[call-arg]
    assert api.count == 1
    engine.load_payload([breached_rule(provider="anthropic")])
    with pytest.raises(BudgetExceededError):
        client.beta.sessions.events.send("sesn_1", events=events)
    with pytest.raises(BudgetExceededError):
        client.beta.dreams.create(inputs=[], model="claude-opus-5")
    assert api.count == 1
    client.beta.sessions.events.send("sesn_1", events=[{"type": "user.interrupt"}])
    assert api.count == 2  # an interrupt stops spending: never blocked
    assert_clean(api)


def test_the_methods_model_is_the_model_checked(
    engine: Engine, client: Anthropic, api: FakeAnthropic
) -> None:
    """As the reference checks ``kwargs["model"]``: an ``extra_body`` model is not read."""
    enforcement.instrument("anthropic", engine=engine)
    engine.load_payload([breached_rule(model="claude-opus-5")])
    client.messages.create(
        model=MODEL, max_tokens=8, messages=MESSAGES, extra_body={"model": "claude-opus-5"}
    )
    engine.load_payload([breached_rule(model=MODEL)])
    with pytest.raises(BudgetExceededError):
        client.messages.create(
            model=MODEL, max_tokens=8, messages=MESSAGES, extra_body={"model": "claude-opus-5"}
        )
    assert api.count == 1


def test_an_odd_body_never_raises_anything_of_ours(
    engine: Engine, client: Anthropic, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    engine.load_payload([breached_rule(model="claude-other")])
    with pytest.raises(BudgetExceededError):  # no model found: every model filter covers it
        client.post("/v1/messages", cast_to=Message, body=["not", "a", "mapping"])
    engine.load_payload([])
    assert isinstance(client.post("/v1/messages", cast_to=Message, body=["x"]), Message)
    assert api.count == 1


# -- Bedrock, Vertex, Foundry: the reference's labels, the body's model, the check first ----


class _ToFake(httpx2.HTTPTransport):
    """Sends every request to the fake, whatever host the client names (a Bedrock endpoint)."""

    def __init__(self, api: FakeAnthropic) -> None:
        super().__init__()
        self._origin = httpx2.URL(api.origin)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(
            scheme=self._origin.scheme, host=self._origin.host, port=self._origin.port
        )
        return super().handle_request(request)


class _AsyncToFake(httpx2.AsyncHTTPTransport):
    def __init__(self, api: FakeAnthropic) -> None:
        super().__init__()
        self._origin = httpx2.URL(api.origin)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(
            scheme=self._origin.scheme, host=self._origin.host, port=self._origin.port
        )
        return await super().handle_async_request(request)


AWS_KEYS: dict[str, Any] = {
    "aws_access_key": "AKIDEXAMPLE",
    "aws_secret_key": "secret",
    "aws_region": "us-east-1",
}


@pytest.fixture
def bedrock(api: FakeAnthropic) -> Iterator[AnthropicBedrock]:
    """AnthropicBedrock on its default endpoint, bedrock-runtime.<region>.amazonaws.com."""
    transport = httpx2.Client(transport=_ToFake(api))
    with AnthropicBedrock(**AWS_KEYS, http_client=transport, max_retries=0) as built:
        assert str(built.base_url) == "https://bedrock-runtime.us-east-1.amazonaws.com"
        yield built


BEDROCK_MODEL = "anthropic.claude-sonnet-5-v1:0"


def test_bedrock_is_checked_as_aws(
    engine: Engine, bedrock: AnthropicBedrock, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    assert provider_label(bedrock) == "AWS"
    engine.load_payload([breached_rule(provider="ANTHROPIC")])
    message = bedrock.messages.create(model=BEDROCK_MODEL, max_tokens=8, messages=MESSAGES)
    assert isinstance(message, Message)
    stream = bedrock.messages.create(
        model=BEDROCK_MODEL, max_tokens=8, messages=MESSAGES, stream=True
    )
    assert isinstance(stream, Stream)
    with stream:
        assert [e.type for e in stream][-1] == "message_stop"
    assert [r["path"] for r in api.requests] == [
        "/model/anthropic.claude-sonnet-5-v1:0/invoke",
        "/model/anthropic.claude-sonnet-5-v1:0/invoke-with-response-stream",
    ]
    for rules in (
        [breached_rule(provider="AWS")],
        [breached_rule(provider="aws")],
        [breached_rule(model=BEDROCK_MODEL)],
    ):
        engine.load_payload(rules)
        with pytest.raises(BudgetExceededError):
            bedrock.messages.create(model=BEDROCK_MODEL, max_tokens=8, messages=MESSAGES)
        with (
            pytest.raises(BudgetExceededError),
            bedrock.messages.stream(model=BEDROCK_MODEL, max_tokens=8, messages=MESSAGES),
        ):
            pytest.fail("the stream opened")
    engine.load_payload(ACME)
    with pytest.raises(BudgetExceededError):
        bedrock.messages.create(  # type: ignore[call-overload]
            model=BEDROCK_MODEL,
            max_tokens=8,
            messages=MESSAGES,
            usage_metadata={"organizationName": "acme"},
        )
    assert api.count == 2
    assert_clean(api)


async def test_async_bedrock_is_checked_as_aws(engine: Engine, api: FakeAnthropic) -> None:
    enforcement.instrument("anthropic", engine=engine)
    transport = httpx2.AsyncClient(transport=_AsyncToFake(api))
    async with AsyncAnthropicBedrock(**AWS_KEYS, http_client=transport, max_retries=0) as abedrock:
        assert provider_label(abedrock) == "AWS"
        engine.load_payload([breached_rule(provider="ANTHROPIC")])
        message = await abedrock.messages.create(
            model=BEDROCK_MODEL, max_tokens=8, messages=MESSAGES
        )
        assert isinstance(message, Message)
        engine.load_payload([breached_rule(provider="AWS")])
        with pytest.raises(BudgetExceededError):
            await abedrock.messages.create(model=BEDROCK_MODEL, max_tokens=8, messages=MESSAGES)
        with pytest.raises(BudgetExceededError):
            async with abedrock.messages.stream(
                model=BEDROCK_MODEL, max_tokens=8, messages=MESSAGES
            ):
                pytest.fail("the stream opened")
    assert api.count == 1


def test_the_base_url_not_the_class_says_aws(engine: Engine, api: FakeAnthropic) -> None:
    """As the reference decides: amazonaws.com in the base URL, whatever the client's class."""
    enforcement.instrument("anthropic", engine=engine)
    gateway = "https://abc123.execute-api.us-east-1.amazonaws.com"
    transport = httpx2.Client(transport=_ToFake(api))
    with (
        Anthropic(base_url=gateway, api_key="k", http_client=transport, max_retries=0) as plain,
        AnthropicBedrock(**AWS_KEYS, base_url=api.base_url, max_retries=0) as proxied,
    ):
        assert (provider_label(plain), provider_label(proxied)) == ("AWS", "ANTHROPIC")
        engine.load_payload([breached_rule(provider="AWS")])
        with pytest.raises(BudgetExceededError):
            plain.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        assert api.count == 0
        proxied.messages.create(model=BEDROCK_MODEL, max_tokens=8, messages=MESSAGES)
        engine.load_payload([breached_rule(provider="ANTHROPIC")])
        plain.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        with pytest.raises(BudgetExceededError):
            proxied.messages.create(model=BEDROCK_MODEL, max_tokens=8, messages=MESSAGES)
    assert api.count == 2


def test_a_bedrock_model_is_known_by_its_claude_name(
    engine: Engine, bedrock: AnthropicBedrock, api: FakeAnthropic
) -> None:
    enforcement.instrument("anthropic", engine=engine)
    profile = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    for name in (profile, "anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5-20251001"):
        engine.load_payload([breached_rule(model=name, provider="AWS")])
        with pytest.raises(BudgetExceededError):
            bedrock.messages.create(model=profile, max_tokens=8, messages=MESSAGES)
    engine.load_payload([breached_rule(model="claude-haiku-4-5-20250101")])
    bedrock.messages.create(model=profile, max_tokens=8, messages=MESSAGES)
    assert api.count == 1


@pytest.mark.parametrize(
    ("model", "provider", "names"),
    [
        ("claude-sonnet-5", "ANTHROPIC", ["claude-sonnet-5"]),
        (None, "AWS", [None]),
        ("anthropic.claude-v2:1", "AWS", ["anthropic.claude-v2:1"]),
        (
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "AWS",
            [
                "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "anthropic.claude-haiku-4-5-20251001-v1:0",
                "claude-haiku-4-5-20251001",
            ],
        ),
        (
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "ANTHROPIC",
            ["anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5-20251001"],
        ),
        (
            "arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "AWS",
            [
                "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "anthropic.claude-haiku-4-5-20251001-v1:0",
                "claude-haiku-4-5-20251001",
            ],
        ),
    ],
)
def test_cap_model_names_a_bedrock_id_as_the_reference_does(
    model: Any, provider: str, names: list[Any]
) -> None:
    named = cap_model(model, provider)
    assert [named, *sorted(set(getattr(named, "aliases", ())) - {named})] == names


VERTEX_MODEL = "claude-sonnet-5@20260101"


def test_vertex_is_checked_as_anthropic(engine: Engine, api: FakeAnthropic) -> None:
    """The reference labels Claude on Vertex AI ``ANTHROPIC``: no host of its list names it."""
    enforcement.instrument("anthropic", engine=engine)
    default = AnthropicVertex(access_token="ya29.test", region="us-east5", project_id="proj")
    with default:
        assert provider_label(default) == "ANTHROPIC"
    with AnthropicVertex(
        base_url=f"{api.base_url}/v1",
        access_token="ya29.test",
        region="us-east5",
        project_id="proj",
        max_retries=0,
    ) as vertex:
        assert provider_label(vertex) == "ANTHROPIC"
        engine.load_payload([breached_rule(provider="AWS")])
        message = vertex.messages.create(model=VERTEX_MODEL, max_tokens=8, messages=MESSAGES)
        assert isinstance(message, Message)
        with vertex.messages.stream(model=VERTEX_MODEL, max_tokens=8, messages=MESSAGES) as s:
            assert s.get_final_text() == "hi"
        assert api.requests[0]["path"].endswith(f"/models/{VERTEX_MODEL}:rawPredict")
        assert api.requests[1]["path"].endswith(f"/models/{VERTEX_MODEL}:streamRawPredict")
        for rules in (
            [breached_rule(provider="ANTHROPIC")],
            [breached_rule(provider="anthropic")],
            [breached_rule(model=VERTEX_MODEL)],
        ):
            engine.load_payload(rules)
            with pytest.raises(BudgetExceededError):
                vertex.messages.create(model=VERTEX_MODEL, max_tokens=8, messages=MESSAGES)
    assert api.count == 2


async def test_async_vertex_is_checked_as_anthropic(engine: Engine, api: FakeAnthropic) -> None:
    enforcement.instrument("anthropic", engine=engine)
    async with AsyncAnthropicVertex(
        base_url=f"{api.base_url}/v1",
        access_token="ya29.test",
        region="us-east5",
        project_id="proj",
        max_retries=0,
    ) as avertex:
        engine.load_payload([breached_rule(provider="ANTHROPIC")])
        with pytest.raises(BudgetExceededError):
            async with avertex.messages.stream(model=VERTEX_MODEL, max_tokens=8, messages=MESSAGES):
                pytest.fail("the stream opened")
        with pytest.raises(BudgetExceededError):
            await avertex.messages.create(model=VERTEX_MODEL, max_tokens=8, messages=MESSAGES)
        assert api.count == 0
        engine.load_payload([breached_rule(provider="AWS")])
        message = await avertex.messages.create(model=VERTEX_MODEL, max_tokens=8, messages=MESSAGES)
        assert isinstance(message, Message)
    assert api.count == 1


def test_bedrock_mantle_is_checked_as_anthropic(engine: Engine, api: FakeAnthropic) -> None:
    """Its endpoint, bedrock-mantle.<region>.api.aws, is not on amazonaws.com."""
    enforcement.instrument("anthropic", engine=engine)
    with AnthropicBedrockMantle(api_key="k", aws_region="us-east-1") as default:
        assert "api.aws" in str(default.base_url)
        assert provider_label(default) == "ANTHROPIC"
    with AnthropicBedrockMantle(api_key="k", base_url=api.base_url, max_retries=0) as mantle:
        engine.load_payload([breached_rule(provider="ANTHROPIC")])
        with pytest.raises(BudgetExceededError):
            mantle.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        assert api.count == 0
        engine.load_payload([breached_rule(provider="AWS")])
        assert isinstance(
            mantle.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES), Message
        )
    assert api.count == 1


def test_other_clients_labels() -> None:
    """Foundry by its class or host (it counts toward ANTHROPIC caps); gateways are first-party."""
    assert provider_label(object.__new__(AnthropicFoundry)) == "Foundry"
    with AnthropicFoundry(api_key="k", base_url="https://gateway.example.com/anthropic/") as f:
        assert provider_label(f) == "Foundry"
    foundry_host = "https://res.services.ai.azure.com/anthropic/"
    with Anthropic(api_key="k", base_url=foundry_host) as plain:
        assert provider_label(plain) == "Foundry"
    with AnthropicFoundry(api_key="k", base_url="https://x.amazonaws.com/") as f:
        assert provider_label(f) == "AWS"  # the Bedrock signals come first
    assert provider_label(object.__new__(anthropic.AnthropicAWS)) == "ANTHROPIC"
    assert provider_label(object.__new__(anthropic.AnthropicGoogleCloud)) == "ANTHROPIC"
    assert provider_label(object.__new__(AsyncAnthropic)) == "ANTHROPIC"

    class FoundryProxy(Anthropic):  # not the SDK's class: its name says nothing
        pass

    with FoundryProxy(api_key="k") as proxy:
        assert provider_label(proxy) == "ANTHROPIC"


def test_a_label_follows_a_changed_base_url(api: FakeAnthropic) -> None:
    with Anthropic(api_key="k", base_url=api.base_url) as client:
        assert provider_label(client) == "ANTHROPIC"
        client.base_url = "https://gw.amazonaws.com"  # type: ignore[assignment, unused-ignore]
        assert provider_label(client) == "AWS"


def test_sdk_errors_pass_through_unchanged(engine: Engine) -> None:
    enforcement.instrument("anthropic", engine=engine)
    with (
        Anthropic(base_url="http://127.0.0.1:9", api_key="k", max_retries=0) as dead,
        pytest.raises(anthropic.APIConnectionError),
    ):
        dead.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
